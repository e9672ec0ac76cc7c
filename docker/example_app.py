"""An example celeriac app: the module that workers, producers and the CLI import.

Configured only from the environment, as in a container:

- ``CELERY_BROKER_URL``: the broker (default ``redis://localhost:6379/0``);
- ``CELERIAC_DATABASE_URL``: celeriac's database (required: without it each
  container would quietly use a SQLite file of its own).

Workers: ``celery -A example_app worker``. Producer: ``python -m example_app``
submits a workflow and prints its id and result. CLI:
``celeriac --app example_app list``.
"""

from __future__ import annotations

import os
import time

from celery import Celery, chain, chord, group

from celeriac import Engine

app = Celery(
    "example", broker=os.environ.get("CELERY_BROKER_URL", "redis://localhost:6379/0")
)
app.conf.update(
    # crash-safe settings, explained in docs/operations.md, which also says why
    # task_reject_on_worker_lost stays at its default: celeriac gains nothing
    # from it (a dead pool process's node runs again after worker_timeout)
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    # longer than the longest task, countdown and ETA included (Redis only)
    broker_transport_options={"visibility_timeout": 6 * 3600},
)

engine = Engine(app, os.environ["CELERIAC_DATABASE_URL"])


@app.task(name="example.fetch")
def fetch(page: int) -> list[int]:
    """Pretend to download a page of numbers."""
    time.sleep(0.2)
    return list(range(page * 10, page * 10 + 10))


@app.task(name="example.total")
def total(values: list[int]) -> int:
    """Add up a list of numbers."""
    return sum(values)


@app.task(name="example.grand_total")
def grand_total(totals: list[int]) -> int:
    """Add up the totals of every page: the chord's body."""
    return sum(totals)


def pages(count: int = 8) -> chord:
    """One chain per page (fetch, then total it), joined by a chord body."""
    return chord(
        group(chain(fetch.s(page), total.s()) for page in range(count)),
        grand_total.s(),
    )


def expected(count: int = 8) -> int:
    """What ``pages(count)`` returns: the sum of 0 .. 10 * count - 1."""
    return sum(range(10 * count))


def main() -> None:
    """Submit the example workflow, wait for it, print its result."""
    workflow = engine.submit(pages(), name="pages")
    print(f"submitted workflow {workflow.id}", flush=True)
    result = workflow.get(timeout=600)
    print(f"workflow {workflow.id} {workflow.state}: {result}", flush=True)


if __name__ == "__main__":
    main()
