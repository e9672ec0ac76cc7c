"""Errbacks and link callbacks run as Celery documents them; each run is recorded.

Every errback test runs with both styles of errback (the ``style`` fixture):
an old-style one is sent the failed task's id, as a task of its own; a
new-style one, whose task takes ``(request, exc, traceback)``, is called in
the worker that saw the failure.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from celery import chain, chord, group
from celery.worker import state as worker_state

from celeriac import WorkflowFailed, WorkflowState
from celeriac.engine.worker import embedded_worker
from celeriac.storage.schema import attempts, nodes
from tests.tasks import make_app
from tests.waiting import wait_for

if TYPE_CHECKING:
    from celery import Celery

    from celeriac import Engine, Workflow

TIMEOUT = 15.0
#: how many members fail at one moment: as many as the worker runs at once
TOGETHER = 4
#: how many such workflows the race test runs on PostgreSQL
ROUNDS = 60

#: a failure as an errback may learn of it: (node id, exception type, message)
Failure = tuple[str, str | None, str | None]


@dataclass(frozen=True)
class Style:
    """One style of errback, as the test tasks implement it."""

    #: the test task that records each call (its attribute on ``tasks``)
    errback: str
    #: one that raises after recording its call
    raising: str
    #: what the errback records for a failure it is called for
    receives: Callable[[Failure], tuple[Any, ...]]
    #: what its node's result is, for what it received
    returns: Callable[[tuple[Any, ...]], Any]


OLD_STYLE = Style(
    "on_error", "on_error_raises", lambda f: f[:1], lambda received: received[0]
)
NEW_STYLE = Style("on_error_report", "on_error_request_raises", lambda f: f, list)


@pytest.fixture(
    params=[
        pytest.param(OLD_STYLE, id="old-style"),
        pytest.param(NEW_STYLE, id="new-style"),
    ]
)
def style(request: pytest.FixtureRequest) -> Style:
    chosen: Style = request.param
    return chosen


@pytest.fixture
def slow_boom(app: Celery, tasks: SimpleNamespace) -> Any:
    """Members that fail one after the other, 0.3 s apart.

    Every member has started before the first fails. (Failures at one
    moment have a test of their own: ``together``.)
    """

    @app.task(name="e.slow_boom", shared=False)
    def slow_boom(x: int) -> None:
        tasks.ran.append(("e.slow_boom", (x,)))
        time.sleep(0.3 * x)
        raise KeyError(f"member {x}")

    return slow_boom


@pytest.fixture
def together(app: Celery, tasks: SimpleNamespace) -> Any:
    """Members that fail at one moment: a barrier holds each until all run."""
    barrier = threading.Barrier(TOGETHER)

    @app.task(name="e.together", shared=False)
    def together(x: int) -> None:
        tasks.ran.append(("e.together", (x,)))
        barrier.wait(timeout=TIMEOUT)
        raise KeyError(f"member {x}")

    return together


def _errback(tasks: SimpleNamespace, style: Style, raising: bool = False) -> Any:
    return getattr(tasks, style.raising if raising else style.errback)


def _link_error(canvas: Any, errback: Any) -> Any:
    # chord.link_error() warns of a future default; a started worker has set
    # Celery's pending deprecations to "always" warn, over pytest's filters
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        canvas.link_error(errback.s())
    return canvas


def _failed(workflow: Workflow) -> WorkflowFailed:
    with pytest.raises(WorkflowFailed) as raised:
        workflow.get(timeout=TIMEOUT)
    return raised.value


def _failure(failed: WorkflowFailed) -> Failure:
    assert failed.node_id is not None
    return failed.node_id, failed.exc_type, failed.exc_message


def _node_failures(workflow: Workflow, task_name: str) -> list[Failure]:
    """The recorded failure of every failed node of ``task_name``."""
    return [
        (node.id, node.exc_type, node.attempts[-1].exc_message)
        for node in workflow.nodes()
        if node.task == task_name and node.state == "FAILED"
    ]


def _ran(tasks: SimpleNamespace, name: str) -> list[tuple[Any, ...]]:
    return [args for task, args in tasks.ran if task == name]


def _settle(workflow: Workflow) -> None:
    """Wait until no node is queued or running and the worker is idle.

    Idle also means that no worker thread still formats a traceback while a
    failing assertion's is formatted here: Python 3.11's ``ast.parse``, which
    both use, is not thread-safe ("AST constructor recursion depth mismatch").
    """

    def unsettled() -> list[tuple[str | None, str, str]]:
        return [
            (n.task, n.kind, n.state)
            for n in workflow.nodes()
            if n.state in ("QUEUED", "RUNNING", "RETRYING")
        ]

    def idle() -> bool:
        busy = worker_state.active_requests or worker_state.reserved_requests
        return not busy and not unsettled()

    try:
        wait_for(idle, timeout=TIMEOUT, what="every node recorded")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; still unfinished: {unsettled()}") from None


def _runs(
    engine: Engine, workflow: Workflow, task_name: str
) -> list[tuple[str, str, tuple[str, ...]]]:
    """(kind, state, attempt states) of each node of ``task_name`` that ran, in SQL."""
    with engine._db.connect() as conn:
        rows = conn.execute(
            sa.select(nodes.c.id, nodes.c.kind, nodes.c.state, attempts.c.state)
            .select_from(nodes.join(attempts, attempts.c.node_id == nodes.c.id))
            .where(nodes.c.workflow_id == workflow.id, nodes.c.task == task_name)
            .order_by(nodes.c.position, attempts.c.number)
        ).all()
    runs: dict[str, tuple[str, str, list[str]]] = {}
    for node_id, kind, state, attempt in rows:
        runs.setdefault(node_id, (kind, state, []))[2].append(attempt)
    return [(kind, state, tuple(states)) for kind, state, states in runs.values()]


def _assert_errback_ran(
    engine: Engine,
    workflow: Workflow,
    tasks: SimpleNamespace,
    style: Style,
    failures: list[Failure],
    times: int | None = None,
) -> None:
    """The errback ran ``times`` (default: once per failure) and was recorded.

    Each run was handed one of ``failures``, a different one each time, and
    is an ERRBACK node that SUCCEEDED in one attempt, with the errback's value.
    """
    times = len(failures) if times is None else times
    _settle(workflow)
    name = _errback(tasks, style).name
    received = _ran(tasks, name)
    assert len(received) == times
    assert len(set(received)) == times
    assert set(received) <= {style.receives(failure) for failure in failures}
    assert (
        _runs(engine, workflow, name)
        == [("ERRBACK", "SUCCEEDED", ("SUCCEEDED",))] * times
    )
    results = [n.result for n in workflow.nodes() if n.attempts and n.task == name]
    assert sorted(results) == sorted(style.returns(each) for each in received)


def test_errback_on_a_signature_is_given_the_failure(
    engine: Engine, tasks: SimpleNamespace, style: Style, worker: Any
) -> None:
    workflow = engine.submit(tasks.boom.s(1).on_error(_errback(tasks, style).s()))
    failure = _failed(workflow)
    assert (failure.exc_type, failure.exc_message) == ("ValueError", "boom [1]")
    assert _node_failures(workflow, "t.boom") == [_failure(failure)]
    _assert_errback_ran(engine, workflow, tasks, style, [_failure(failure)])


def test_errback_on_a_chain_runs_once_for_the_failing_step(
    engine: Engine, tasks: SimpleNamespace, style: Style, worker: Any
) -> None:
    canvas = chain(tasks.add.s(1, 1), tasks.boom.s(), tasks.add.s(5))
    workflow = engine.submit(_link_error(canvas, _errback(tasks, style)))
    failure = _failed(workflow)
    assert _node_failures(workflow, "t.boom") == [_failure(failure)]
    _assert_errback_ran(engine, workflow, tasks, style, [_failure(failure)])
    assert [n.state for n in workflow.nodes() if n.kind == "TASK"] == [
        "SUCCEEDED",
        "FAILED",
        "SKIPPED",
    ]


def test_errback_on_a_group_runs_once_per_failing_member_by_default(
    engine: Engine,
    tasks: SimpleNamespace,
    style: Style,
    slow_boom: Any,
    worker: Any,
) -> None:
    canvas = group(slow_boom.s(1), slow_boom.s(2), tasks.add.s(1, 1))
    workflow = engine.submit(_link_error(canvas, _errback(tasks, style)))
    _failed(workflow)
    _settle(workflow)
    failures = _node_failures(workflow, "e.slow_boom")
    assert len(failures) == 2
    _assert_errback_ran(engine, workflow, tasks, style, failures)


def test_errback_on_a_group_runs_once_for_the_group_with_the_option(
    engine: Engine,
    tasks: SimpleNamespace,
    style: Style,
    slow_boom: Any,
    worker: Any,
) -> None:
    canvas = group(slow_boom.s(1), slow_boom.s(2), tasks.add.s(1, 1))
    canvas = _link_error(canvas, _errback(tasks, style))
    workflow = engine.submit(canvas.set(celeriac_errback_once=True))
    _failed(workflow)
    _settle(workflow)
    failures = _node_failures(workflow, "e.slow_boom")
    assert len(failures) == 2
    _assert_errback_ran(engine, workflow, tasks, style, failures, times=1)


def test_chord_header_failure_runs_the_errback_once_and_never_the_body(
    engine: Engine,
    tasks: SimpleNamespace,
    style: Style,
    slow_boom: Any,
    worker: Any,
) -> None:
    canvas = chord([slow_boom.s(1), slow_boom.s(2), tasks.add.s(1, 1)], tasks.tsum.s())
    workflow = engine.submit(_link_error(canvas, _errback(tasks, style)))
    failure = _failed(workflow)
    _settle(workflow)
    failures = _node_failures(workflow, "e.slow_boom")
    assert _failure(failure) in failures
    assert failure.exc_type == "KeyError"
    assert workflow.state == WorkflowState.FAILED
    _assert_errback_ran(engine, workflow, tasks, style, failures, times=1)
    assert _ran(tasks, "t.tsum") == []
    body = next(n for n in workflow.nodes() if n.task == "t.tsum")
    assert (body.state, body.attempts) == ("SKIPPED", [])


def test_an_errback_that_raises_is_failed_and_the_workflow_keeps_its_error(
    engine: Engine, tasks: SimpleNamespace, style: Style, worker: Any
) -> None:
    errback = _errback(tasks, style, raising=True)
    workflow = engine.submit(tasks.boom.s(1).on_error(errback.s()))
    failure = _failure(_failed(workflow))
    _settle(workflow)
    assert _ran(tasks, errback.name) == [(failure[0],)]
    assert _runs(engine, workflow, errback.name) == [("ERRBACK", "FAILED", ("FAILED",))]
    (node,) = (n for n in workflow.nodes() if n.task == errback.name)
    (attempt,) = node.attempts
    broke = f"errback for {failure[0]} broke"
    assert (node.exc_type, attempt.exc_type, attempt.exc_message) == (
        "RuntimeError",
        "RuntimeError",
        broke,
    )
    # the workflow still names the task that failed, not its errback
    assert workflow.state == WorkflowState.FAILED
    assert _failure(_failed(workflow)) == failure
    assert _node_failures(workflow, "t.boom") == [failure]
    # and its attempt keeps the errback's own traceback
    assert attempt.traceback is not None
    assert f"in {errback.run.__name__}\n" in attempt.traceback
    assert attempt.traceback.rstrip().endswith(f"RuntimeError: {broke}")


def test_chord_errback_runs_once_when_the_header_fails_at_one_moment(
    engine: Engine, tasks: SimpleNamespace, together: Any, worker: Any
) -> None:
    # about one round in four meets the race on PostgreSQL; SQLite serializes
    # its writers, so a few rounds show the behaviour there
    rounds = ROUNDS if engine._db.dialect.name == "postgresql" else 5
    for _ in range(rounds):
        tasks.ran.clear()
        header = [together.s(x) for x in range(TOGETHER)]
        canvas = chord(header, tasks.tsum.s())
        workflow = engine.submit(_link_error(canvas, tasks.on_error_report))
        _failed(workflow)
        _settle(workflow)
        failures = _node_failures(workflow, "e.together")
        assert len(failures) == TOGETHER
        _assert_errback_ran(engine, workflow, tasks, NEW_STYLE, failures, times=1)


# -- link callbacks -------------------------------------------------------


def _link(canvas: Any, callback: Any) -> tuple[Any, Any]:
    canvas.link(callback)
    return canvas, callback


#: each builds (canvas, its link callback) from an app's test tasks
LINKED: dict[str, Callable[[SimpleNamespace], tuple[Any, Any]]] = {
    "signature": lambda t: _link(t.add.s(1, 1), t.mul.s(10)),
    "chain": lambda t: _link(t.add.s(1, 1) | t.add.s(3), t.mul.s(10)),
}


def _native(build: Callable[[SimpleNamespace], tuple[Any, Any]]) -> tuple[Any, ...]:
    """Native Celery's result, its callback's result and the callback's args.

    Run before the test's own worker starts: two in-process workers at once
    run each other's tasks.
    """
    app = make_app("native", result_backend="cache+memory://")
    canvas, callback = build(app.test_tasks)  # type: ignore[attr-defined]
    callback.freeze()  # its id, to ask for its result
    with embedded_worker(app, concurrency=2):
        result = canvas.apply_async().get(timeout=TIMEOUT, interval=0.005)
        called = app.AsyncResult(callback.id).get(timeout=TIMEOUT, interval=0.005)
    return result, called, _ran(app.test_tasks, callback.task)  # type: ignore[attr-defined]


@pytest.mark.parametrize("build", LINKED.values(), ids=LINKED.keys())
def test_link_callback_is_a_recorded_node_given_its_parents_result(
    engine: Engine,
    tasks: SimpleNamespace,
    build: Callable[[SimpleNamespace], tuple[Any, Any]],
    request: pytest.FixtureRequest,
) -> None:
    result, called, native_args = _native(build)
    request.getfixturevalue("worker")
    canvas, callback = build(tasks)
    workflow = engine.submit(canvas)
    assert workflow.get(timeout=TIMEOUT) == result
    assert _ran(tasks, callback.task) == native_args
    assert _runs(engine, workflow, callback.task) == [
        ("TASK", "SUCCEEDED", ("SUCCEEDED",))
    ]
    by_id = {n.id: n for n in workflow.nodes()}
    (node,) = (n for n in by_id.values() if n.task == callback.task)
    assert node.result == called
    (parent,) = node.parents
    assert by_id[parent].result == result
