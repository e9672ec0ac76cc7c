"""What runs after a failure: the same every time, and as native Celery by default.

``on_failure="continue"`` (the default): every task whose parents all
succeeded runs, whatever the timing, exactly as Celery runs the same canvas
on the same app and worker (with a Redis result backend); the workflow ends
FAILED once nothing more can run. ``on_failure="stop"``: a task claimed
before the failure was recorded runs, none claimed after it, and nothing that
depends on the failure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from celery import Celery, chord, group
from celery.exceptions import ChordError

from celeriac import Engine, WorkflowFailed
from celeriac.engine.handle import Workflow
from celeriac.states import NodeState, WorkflowState
from tests.integration.test_canvas_differential import inflight
from tests.tasks import close_app, make_app
from tests.waiting import wait_for

TIMEOUT = 30.0
RUNS = 20

Build = Callable[[SimpleNamespace], Any]


def failing_chord(t: SimpleNamespace) -> Any:
    return chord([t.add.si(1, 1), t.add.si(2, 2), t.boom.si()], t.tsum.s())


def group_of_100_with_one_failing(t: SimpleNamespace) -> Any:
    members = [t.add.si(i, i) for i in range(99)]
    members.insert(37, t.boom.si())
    return group(members)


CANVASES = [
    pytest.param(failing_chord, id="chord"),
    pytest.param(
        group_of_100_with_one_failing, id="group-of-100", marks=pytest.mark.slow
    ),
]


@pytest.fixture
def app(redis_url: str) -> Iterator[Celery]:
    """The app runs the canvases both ways: natively with Redis results, and here."""
    app = make_app(result_backend=redis_url, result_backend_thread_safe=True)
    yield app
    close_app(app)


def ran(tasks: SimpleNamespace) -> Counter[str]:
    """The multiset of tasks that ran, with their arguments."""
    return Counter(f"{name}{args}" for name, args in tasks.ran)


def run_native(app: Celery, build: Build) -> Counter[str]:
    tasks = app.test_tasks  # type: ignore[attr-defined]
    tasks.ran.clear()
    with inflight(app) as tracker:
        # natively a chord's header failure is a ChordError naming it
        with pytest.raises((ValueError, ChordError), match="boom"):
            build(tasks).apply_async().get(timeout=TIMEOUT, interval=0.005)
        wait_for(tracker.idle, TIMEOUT, what="native run to settle")
    return ran(tasks)


def run_celeriac(engine: Engine, build: Build, **options: Any) -> Workflow:
    tasks = engine.app.test_tasks  # type: ignore[attr-defined]
    tasks.ran.clear()
    workflow = engine.submit(build(tasks), **options)
    with pytest.raises(ValueError, match="boom") as raised:
        workflow.get(timeout=TIMEOUT)
    assert isinstance(raised.value, WorkflowFailed)
    assert workflow.state == WorkflowState.FAILED
    return workflow


@pytest.mark.parametrize("build", CANVASES)
def test_after_a_failure_the_same_tasks_run_every_time_as_natively(
    engine: Engine, worker: Any, build: Build
) -> None:
    native = run_native(engine.app, build)
    assert native  # the native run did run the canvas's tasks
    for _ in range(RUNS):
        workflow = run_celeriac(engine, build)
        assert ran(engine.app.test_tasks) == native  # type: ignore[attr-defined]
        record = workflow.record()
        assert (record.exc_type, record.exc_message) == ("ValueError", "boom []")


@pytest.mark.parametrize("build", CANVASES)
def test_with_on_failure_stop_only_tasks_claimed_before_the_failure_run(
    engine: Engine, worker: Any, build: Build
) -> None:
    for _ in range(RUNS):
        workflow = run_celeriac(engine, build, on_failure="stop")
        # the workflow is FAILED at once; what was claimed before still runs
        wait_for(
            lambda w=workflow: w.progress().running == 0,
            TIMEOUT,
            what="the nodes claimed before the failure to finish",
        )
        claimed = claimed_before_failed(engine, workflow.id)
        nodes = workflow.nodes()
        started = [node for node in nodes if node.attempts]
        assert {node.id for node in started} == claimed
        tasks = engine.app.test_tasks  # type: ignore[attr-defined]
        assert Counter(node.task for node in started) == Counter(
            name for name, _ in tasks.ran
        )
        assert {node.state for node in nodes if not node.attempts} <= {
            NodeState.SKIPPED
        }
        assert "t.tsum" not in {node.task for node in started}


def claimed_before_failed(engine: Engine, workflow_id: str) -> set[str]:
    """Nodes whose claim (their event to RUNNING) came before the workflow FAILED.

    Events are numbered in commit order of the transactions that wrote them.
    """
    with engine._db.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT id, node_id, to_state FROM celeriac_events "
                "WHERE workflow_id = :wf ORDER BY id"
            ),
            {"wf": workflow_id},
        ).all()
    failed_at = next(
        row.id for row in rows if row.node_id is None and row.to_state == "FAILED"
    )
    claimed = {row.node_id for row in rows if row.to_state == "RUNNING"}
    late = {
        row.node_id for row in rows if row.to_state == "RUNNING" and row.id > failed_at
    }
    assert not late, f"claimed after the workflow FAILED: {late}"
    return claimed
