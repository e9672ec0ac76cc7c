"""A heavy computation split into child tasks, followed from the caller.

Counting the primes below LIMIT is split into CHUNKS child tasks (a Celery
group). Each child reports how far it got with ``celeriac.report_progress``;
the caller follows the whole computation with ``Workflow.progress()``, whose
``fraction`` counts finished chunks plus the reported share of running ones.
No parent task sits in a worker slot polling its children.
"""

from __future__ import annotations

import math
import os
import sys
import time
from itertools import pairwise

from celery import Celery, group

from celeriac import Engine, Workflow, report_progress

DATABASE_URL = os.environ.get("CELERIAC_DATABASE_URL", "sqlite:///children.db")
LIMIT = 120_000
CHUNKS = 6
#: Each chunk works in this many steps, and sleeps a little in each, so that
#: its progress can be watched.
STEPS = 20
STEP_SECONDS = 0.05

app = Celery("children", set_as_current=False)
engine = Engine(app, DATABASE_URL)


def is_prime(number: int) -> bool:
    if number < 2:
        return False
    return all(number % d for d in range(2, math.isqrt(number) + 1))


@app.task(name="children.count_primes", shared=False)
def count_primes(start: int, stop: int) -> int:
    """Count the primes in [start, stop), reporting progress at every step."""
    found = 0
    bounds = [start + (stop - start) * step // STEPS for step in range(STEPS + 1)]
    for step, (low, high) in enumerate(pairwise(bounds), 1):
        found += sum(1 for number in range(low, high) if is_prime(number))
        time.sleep(STEP_SECONDS)
        report_progress(step, STEPS, f"{high - start} of {stop - start} numbers")
    return found


def computation() -> group:
    size = LIMIT // CHUNKS
    return group(
        count_primes.s(chunk * size, (chunk + 1) * size) for chunk in range(CHUNKS)
    )


def bar(fraction: float, width: int = 30) -> str:
    filled = round(fraction * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def follow(workflow: Workflow) -> bool:
    """Print the progress whenever it moves; return whether a partial was seen."""
    shown, saw_partial = None, False
    deadline = time.monotonic() + 30
    while workflow.state == "IN_PROGRESS" and time.monotonic() < deadline:
        progress = workflow.progress()
        # fraction above done/total: running chunks reported part of their work
        saw_partial |= progress.fraction > progress.done / progress.total + 0.01
        line = (
            f"{bar(progress.fraction)} {progress.fraction:4.0%}  "
            f"chunks done {progress.done}/{progress.total}, "
            f"running {progress.running}"
        )
        if line != shown:
            print(line)
            shown = line
        time.sleep(0.1)
    return saw_partial


def main() -> int:
    print(f"counting primes below {LIMIT} in {CHUNKS} child tasks")
    print(f"database {DATABASE_URL}, embedded worker with 3 threads")
    with engine.embedded_worker(concurrency=3):
        workflow = engine.submit(computation(), name="count-primes")
        saw_partial = follow(workflow)
        per_chunk = workflow.get(timeout=30)
    progress = workflow.progress()
    print(f"{bar(progress.fraction)} {progress.fraction:4.0%}  {workflow.state}")
    expected = sum(1 for number in range(LIMIT) if is_prime(number))
    print(f"primes per chunk: {per_chunk}")
    print(f"primes below {LIMIT}: {sum(per_chunk)} (checked here: {expected})")
    print(f"progress inside running chunks was visible: {saw_partial}")
    return 0 if sum(per_chunk) == expected and saw_partial else 1


if __name__ == "__main__":
    sys.exit(main())
