"""A batch as a chord: many parallel parts, one synchronisation task.

The batch is split into PARTS tasks that run in parallel (the chord's
header); ``synchronise`` runs once every part is done and merges their
results (the chord's body). ``view()`` is what a status page would call with
nothing but the batch's id: tasks completed out of the total, the status,
and the result once there is one.
"""

from __future__ import annotations

import os
import random
import sys
import time
from typing import Any

from celery import Celery, chord

from celeriac import Engine

DATABASE_URL = os.environ.get("CELERIAC_DATABASE_URL", "sqlite:///batch.db")
PARTS = 24
ROWS_PER_PART = 500

app = Celery("batch", set_as_current=False)
engine = Engine(app, DATABASE_URL)


@app.task(name="batch.process_part", shared=False)
def process_part(part: int) -> dict[str, int]:
    """Pretend to import one part of the batch; some parts are slower."""
    time.sleep(random.uniform(0.1, 0.4))
    rejected = part % 5
    return {"part": part, "imported": ROWS_PER_PART - rejected, "rejected": rejected}


@app.task(name="batch.synchronise", shared=False)
def synchronise(parts: list[dict[str, int]]) -> dict[str, int]:
    """Runs once, after every part: merge the parts' counts."""
    time.sleep(0.2)
    return {
        "parts": len(parts),
        "imported": sum(p["imported"] for p in parts),
        "rejected": sum(p["rejected"] for p in parts),
    }


def batch() -> Any:
    return chord((process_part.s(part) for part in range(PARTS)), synchronise.s())


def view(batch_id: str) -> dict[str, Any]:
    """The batch's status, as a web view would return it."""
    workflow = engine.workflow(batch_id)
    status = workflow.state
    progress = workflow.progress()
    page: dict[str, Any] = {
        "completed": progress.done,
        "total": progress.total,
        "running": progress.running,
        "status": status,
    }
    if status == "COMPLETED":
        page["result"] = workflow.get(timeout=0)
    return page


def show(page: dict[str, Any]) -> str:
    return (
        f"{page['completed']:>3}/{page['total']} tasks completed, "
        f"{page['running']} running, status {page['status']}"
    )


def main() -> int:
    print(f"a batch of {PARTS} parts and one synchronisation task")
    print(f"database {DATABASE_URL}, embedded worker with 4 threads")
    with engine.embedded_worker(concurrency=4):
        batch_id = engine.submit(batch(), name="nightly-import").id
        print(f"batch {batch_id}")
        shown = None
        deadline = time.monotonic() + 30
        while (page := view(batch_id))["status"] == "IN_PROGRESS":
            if show(page) != shown:
                shown = show(page)
                print(shown)
            if time.monotonic() > deadline:
                print("the batch did not finish in time")
                return 1
            time.sleep(0.1)
    print(show(page))
    print(f"final status: {page['status']}, result: {page.get('result')}")
    expected = {
        "parts": PARTS,
        "imported": sum(ROWS_PER_PART - part % 5 for part in range(PARTS)),
        "rejected": sum(part % 5 for part in range(PARTS)),
    }
    complete = page["completed"] == page["total"] == PARTS + 1
    return 0 if complete and page.get("result") == expected else 1


if __name__ == "__main__":
    sys.exit(main())
