"""A web service that runs long operations you can pause, resume and cancel.

Each operation is a five-step pipeline (a Celery chain of slow tasks) stored
and driven by celeriac; the service is a thin layer of HTTP over the
``Workflow`` handle. Run it with its own embedded worker::

    python service.py --port 8000
    curl -X POST localhost:8000/operations -H 'content-type: application/json' \\
         -d '{"size": 10}'
    curl -X POST localhost:8000/operations/<id>/pause
    curl localhost:8000/operations/<id>

``client.py`` does the same from Python, end to end.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from celery import Celery, chain
from flask import Flask, jsonify, request

from celeriac import (
    Engine,
    InvalidTransition,
    Workflow,
    WorkflowNotFound,
    report_progress,
)

DATABASE_URL = os.environ.get("CELERIAC_DATABASE_URL", "sqlite:///operations.db")
#: How long each step of the pipeline works, in seconds.
STEP_SECONDS = 0.6

# No broker configured: engine.embedded_worker() runs on the in-memory one.
celery_app = Celery("operations", set_as_current=False)
engine = Engine(celery_app, DATABASE_URL)
web = Flask(__name__)


# -- the pipeline: five slow steps -------------------------------------------


def _work(step: str, ticks: int = 4) -> None:
    """Pretend to work for STEP_SECONDS, reporting progress as it goes."""
    for tick in range(1, ticks + 1):
        time.sleep(STEP_SECONDS / ticks)
        report_progress(tick, ticks, f"{step}: {tick}/{ticks}")


@celery_app.task(name="operations.extract", shared=False)
def extract(size: int) -> list[int]:
    _work("extract")
    return list(range(size))


@celery_app.task(name="operations.validate", shared=False)
def validate(rows: list[int]) -> list[int]:
    _work("validate")
    return [row for row in rows if row % 7 != 3]


@celery_app.task(name="operations.transform", shared=False)
def transform(rows: list[int]) -> list[int]:
    _work("transform")
    return [row * row for row in rows]


@celery_app.task(name="operations.load", shared=False)
def load(rows: list[int]) -> dict[str, int]:
    _work("load")
    return {"loaded": len(rows), "checksum": sum(rows)}


@celery_app.task(name="operations.publish", shared=False)
def publish(summary: dict[str, int]) -> dict[str, Any]:
    _work("publish")
    return {**summary, "published": True}


def pipeline(size: int) -> Any:
    """T1 -> T5: the long operation, as a plain Celery chain."""
    return chain(extract.s(size), validate.s(), transform.s(), load.s(), publish.s())


# -- the HTTP API ------------------------------------------------------------


def describe(workflow: Workflow) -> dict[str, Any]:
    """An operation as the API shows it: state, progress counts and fraction."""
    state = workflow.state
    progress = workflow.progress()
    body: dict[str, Any] = {
        "id": workflow.id,
        "state": state,
        "done": progress.done,
        "total": progress.total,
        "running": progress.running,
        "failed": progress.failed,
        "fraction": round(progress.fraction, 3),
    }
    if state == "COMPLETED":
        body["result"] = workflow.get(timeout=0)
    return body


@web.post("/operations")
def start_operation() -> Any:
    size = int((request.get_json(silent=True) or {}).get("size", 10))
    workflow = engine.submit(pipeline(size), name="operation", metadata={"size": size})
    location = f"/operations/{workflow.id}"
    return jsonify(describe(workflow)), 202, {"Location": location}


@web.get("/operations/<operation_id>")
def show_operation(operation_id: str) -> Any:
    return jsonify(describe(engine.workflow(operation_id)))


@web.post("/operations/<operation_id>/pause")
def pause_operation(operation_id: str) -> Any:
    workflow = engine.workflow(operation_id)
    workflow.pause()
    return jsonify(describe(workflow))


@web.post("/operations/<operation_id>/resume")
def resume_operation(operation_id: str) -> Any:
    workflow = engine.workflow(operation_id)
    workflow.resume()
    return jsonify(describe(workflow))


@web.post("/operations/<operation_id>/cancel")
def cancel_operation(operation_id: str) -> Any:
    workflow = engine.workflow(operation_id)
    workflow.cancel()
    return jsonify(describe(workflow))


# The state machine refuses what makes no sense (resume a COMPLETED operation,
# pause one twice) and changes nothing: that is a conflict, not a server error.
@web.errorhandler(InvalidTransition)
def refused(exc: InvalidTransition) -> Any:
    return jsonify(error=str(exc)), 409


@web.errorhandler(WorkflowNotFound)
def not_found(exc: WorkflowNotFound) -> Any:
    return jsonify(error=str(exc)), 404


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    port = parser.parse_args().port
    print(f"operations service on http://127.0.0.1:{port}, database {DATABASE_URL}")
    with engine.embedded_worker(concurrency=2):
        web.run(host="127.0.0.1", port=port)


if __name__ == "__main__":
    main()
