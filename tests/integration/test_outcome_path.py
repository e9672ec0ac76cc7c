"""No exception on the worker's outcome path leaves a node RUNNING.

A fault injector wraps one method of the engine's real Store (on a real
SQLite or PostgreSQL database, under a real embedded worker) and makes its
first calls raise: a bug, or ``StorageError`` as after the retry budget.
Each workflow must still end: FAILED with the cause recorded on the node, or
given to recovery and COMPLETED.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery import chain

from celeriac import Engine, StorageError, WorkflowFailed, WorkflowState
from tests.tasks import make_app
from tests.waiting import wait_for

TIMEOUT = 20.0
#: liveness and recovery in fractions of a second: a released attempt runs
#: again at once
QUICK = {
    "heartbeat_interval": 0.2,
    "worker_timeout": 5,
    "recovery_interval": 0.3,
    "recovery_delay": 0.5,
}


@pytest.fixture
def quick(database_url: str) -> Iterator[Engine]:
    engine = Engine(make_app(), database_url, **QUICK)
    engine.migrate()
    yield engine
    engine.close()


def fail_first(
    engine: Engine, method: str, times: int, error: Callable[[], Exception]
) -> list[tuple[Any, ...]]:
    """Make the first ``times`` calls of ``engine._store.<method>`` raise ``error()``.

    The call does not reach the database. Returns the arguments of every
    call, faulty or not.
    """
    real = getattr(engine._store, method)
    calls: list[tuple[Any, ...]] = []

    def faulty(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        if len(calls) <= times:
            raise error()
        return real(*args, **kwargs)

    setattr(engine._store, method, faulty)
    return calls


def a_bug() -> Exception:
    return RuntimeError("injected bug")


def database_gone() -> Exception:
    return StorageError("Store.injected", 30, 60.0, "connection refused")


def test_a_result_that_cannot_be_recorded_fails_the_node_with_the_cause(quick):
    tasks = quick.app.test_tasks
    calls = fail_first(quick, "record_success", 1, a_bug)
    with quick.embedded_worker():
        workflow = quick.submit(chain(tasks.add.s(1, 2), tasks.add.s(3)))
        with pytest.raises(WorkflowFailed) as caught:
            workflow.get(timeout=TIMEOUT)
    assert len(calls) == 1
    assert (caught.value.exc_type, caught.value.exc_message) == (
        "RuntimeError",
        "the outcome could not be recorded: injected bug",
    )
    first, second = workflow.nodes()
    assert (first.state, second.state) == ("FAILED", "SKIPPED")
    (attempt,) = first.attempts
    assert attempt.state == "FAILED"
    assert attempt.traceback is not None
    assert "RuntimeError: injected bug" in attempt.traceback


def test_a_result_the_database_would_not_take_goes_to_recovery_and_completes(quick):
    tasks = quick.app.test_tasks
    calls = fail_first(quick, "record_success", 1, database_gone)
    with quick.embedded_worker():
        workflow = quick.submit(chain(tasks.add.s(1, 2), tasks.add.s(3)))
        assert workflow.get(timeout=TIMEOUT) == 6
    assert len(calls) == 3  # the first node twice, then its successor
    # the attempt given up is lost: the node ran again
    first = workflow.nodes()[0]
    assert [a.state for a in first.attempts] == ["LOST", "SUCCEEDED"]
    assert [args for _, args in tasks.ran] == [(1, 2), (1, 2), (3, 3)]


@pytest.mark.parametrize("error", [a_bug, database_gone], ids=["bug", "storage"])
def test_a_failure_that_cannot_be_recorded_still_fails_the_workflow(quick, error):
    tasks = quick.app.test_tasks
    calls = fail_first(quick, "record_failure", 1, error)
    with quick.embedded_worker():
        workflow = quick.submit(tasks.boom.s(7))
        with pytest.raises(WorkflowFailed) as caught:
            workflow.get(timeout=TIMEOUT)
    (node,) = workflow.nodes()
    assert node.state == "FAILED"
    if error is a_bug:
        # failed with the cause, at once, by the fallback record
        assert len(calls) == 2
        assert caught.value.exc_type == "RuntimeError"
        assert [a.state for a in node.attempts] == ["FAILED"]
    else:
        # released: the body ran again and its failure was recorded then
        assert len(calls) == 2
        assert (caught.value.exc_type, caught.value.exc_message) == (
            "ValueError",
            "boom [7]",
        )
        assert [a.state for a in node.attempts] == ["LOST", "FAILED"]


def test_a_completion_that_cannot_be_recorded_is_made_by_recovery(quick):
    tasks = quick.app.test_tasks
    real = quick._store.transition_workflow
    refused: list[str] = []

    def faulty(workflow_id: str, trigger: str, *args: Any) -> Any:
        if trigger == "complete" and not refused:
            refused.append(trigger)
            raise database_gone()
        return real(workflow_id, trigger, *args)

    quick._store.transition_workflow = faulty  # type: ignore[method-assign]
    with quick.embedded_worker():
        workflow = quick.submit(chain(tasks.add.s(1, 2), tasks.add.s(3)))
        assert workflow.get(timeout=TIMEOUT) == 6
    assert refused == ["complete"]
    assert workflow.state == WorkflowState.COMPLETED
    assert all(len(node.attempts) == 1 for node in workflow.nodes())


def test_a_successor_whose_publish_raised_is_published_by_recovery(quick):
    tasks = quick.app.test_tasks
    real = quick._send
    raised: list[int] = []

    def faulty(dispatch: Any) -> Any:
        if dispatch and not raised and dispatch[0].signature["task"] == "t.mul":
            raised.append(len(dispatch))
            raise RuntimeError("injected publish bug")
        return real(dispatch)

    quick._send = faulty  # type: ignore[method-assign]
    quick.inline_successor_seconds = 0  # t.mul is published, not run in place
    with quick.embedded_worker():
        workflow = quick.submit(chain(tasks.add.s(1, 2), tasks.mul.s(5)))
        assert workflow.get(timeout=TIMEOUT) == 15
    assert raised == [1]
    assert all(len(node.attempts) == 1 for node in workflow.nodes())


@pytest.mark.parametrize("method", ["record_success", "record_failure"])
def test_an_inline_errback_whose_outcome_cannot_be_recorded_is_failed(quick, method):
    tasks = quick.app.test_tasks
    errback = (
        tasks.on_error_request
        if method == "record_success"
        else tasks.on_error_request_raises
    )
    real = getattr(quick._store, method)
    refused: list[str] = []

    def faulty(workflow_id: str, node_id: str, *args: Any) -> Any:
        node = next(n for n in quick._store.list_nodes(workflow_id) if n.id == node_id)
        if node.kind == "ERRBACK" and not refused:
            refused.append(node_id)
            raise a_bug()
        return real(workflow_id, node_id, *args)

    setattr(quick._store, method, faulty)
    with quick.embedded_worker():
        workflow = quick.submit(tasks.boom.s(1).on_error(errback.s()))
        with pytest.raises(WorkflowFailed) as caught:
            workflow.get(timeout=TIMEOUT)
    assert (caught.value.exc_type, caught.value.exc_message) == (
        "ValueError",
        "boom [1]",
    )
    _, handler = workflow.nodes()
    assert handler.id == refused[0]
    assert (handler.state, handler.exc_type) == ("FAILED", "RuntimeError")
    assert handler.error == (
        "RuntimeError: the outcome could not be recorded: injected bug"
    )
    assert [a.state for a in handler.attempts] == ["FAILED"]


def test_a_failure_whose_fallback_record_raises_too_goes_to_recovery(quick):
    tasks = quick.app.test_tasks
    calls = fail_first(quick, "record_failure", 2, a_bug)
    with quick.embedded_worker():
        workflow = quick.submit(tasks.boom.s(7))
        with pytest.raises(WorkflowFailed) as caught:
            workflow.get(timeout=TIMEOUT)
    # the failure, then the fallback: both refused; released, run again
    assert len(calls) == 3
    assert (caught.value.exc_type, caught.value.exc_message) == (
        "ValueError",
        "boom [7]",
    )
    (node,) = workflow.nodes()
    assert [a.state for a in node.attempts] == ["LOST", "FAILED"]


def test_an_attempt_is_released_once_the_database_takes_it(quick):
    tasks = quick.app.test_tasks
    fail_first(quick, "record_success", 1, database_gone)
    releases = fail_first(quick, "release_attempt", 3, database_gone)
    with quick.embedded_worker():
        workflow = quick.submit(chain(tasks.add.s(1, 2), tasks.add.s(3)))
        assert workflow.get(timeout=TIMEOUT) == 6
    # the heartbeat thread tried again before each beat until it went through
    assert len(releases) == 4
    first = workflow.nodes()[0]
    assert [a.state for a in first.attempts] == ["LOST", "SUCCEEDED"]


def test_a_workflow_whose_failed_state_cannot_be_recorded_is_failed_by_recovery(
    quick,
):
    tasks = quick.app.test_tasks
    real = quick._store.transition_workflow
    refused: list[str] = []

    def faulty(workflow_id: str, trigger: str, *args: Any) -> Any:
        if trigger == "fail" and not refused:
            refused.append(trigger)
            raise database_gone()
        return real(workflow_id, trigger, *args)

    quick._store.transition_workflow = faulty  # type: ignore[method-assign]
    with quick.embedded_worker():
        workflow = quick.submit(chain(tasks.boom.s(7), tasks.add.s(3)))
        with pytest.raises(WorkflowFailed) as caught:
            workflow.get(timeout=TIMEOUT)
    assert refused == ["fail"]
    assert (caught.value.exc_type, caught.value.exc_message) == (
        "ValueError",
        "boom [7]",
    )
    assert [node.state for node in workflow.nodes()] == ["FAILED", "SKIPPED"]


def test_a_recovery_pass_leaves_a_fresh_failure_to_its_worker(database_url):
    """The worker fails the workflow with the task's own exception, not recovery.

    Recovery passes run every 0.1 s while the worker's own ``fail`` comes
    1 s after the failure was recorded; recovery would fail the workflow
    from the node's row alone, without the exception's class.
    """
    engine = Engine(make_app(), database_url, recovery_interval=0.1, recovery_delay=5.0)
    engine.migrate()
    real = engine._store.transition_workflow
    delayed: list[str] = []

    def slow_fail(workflow_id: str, trigger: str, *args: Any) -> Any:
        error = args[1]  # (decide, error, token, by)
        if trigger == "fail" and error is not None and error.exc_class is not None:
            # the worker's own fail: only it knows the exception's class
            delayed.append(workflow_id)
            time.sleep(1.0)
        return real(workflow_id, trigger, *args)

    engine._store.transition_workflow = slow_fail  # type: ignore[method-assign]
    tasks = engine.app.test_tasks
    try:
        with engine.embedded_worker():
            workflow = engine.submit(chain(tasks.boom.s(7), tasks.add.s(3)))
            with pytest.raises(ValueError, match=r"boom \[7\]") as caught:
                workflow.get(timeout=TIMEOUT)
    finally:
        engine.close()
    assert delayed == [workflow.id]
    assert isinstance(caught.value, WorkflowFailed)


def test_an_errback_taking_the_request_runs_after_its_claim_hit_storage_error(quick):
    """The failure is recorded, the errback's claim is not: recovery runs it."""
    tasks = quick.app.test_tasks
    real = quick._store.claim_node
    refused: list[str] = []

    def faulty(workflow_id: str, node_id: str, *args: Any) -> Any:
        node = next(n for n in quick._store.list_nodes(workflow_id) if n.id == node_id)
        if node.kind == "ERRBACK" and not refused:
            refused.append(node_id)
            raise database_gone()
        return real(workflow_id, node_id, *args)

    quick._store.claim_node = faulty  # type: ignore[method-assign]
    with quick.embedded_worker():
        workflow = quick.submit(tasks.boom.s(7).on_error(tasks.on_error_report.s()))
        with pytest.raises(WorkflowFailed):
            workflow.get(timeout=TIMEOUT)
        failed, handler = workflow.nodes()
        wait_for(
            lambda: workflow.nodes()[1].state == "SUCCEEDED",
            timeout=TIMEOUT,
            what="the errback, run by recovery",
        )
    assert refused == [handler.id]
    # the request, exception and traceback rebuilt from the stored failure
    reports = [args for name, args in tasks.ran if name == "t.on_error_report"]
    assert reports == [(failed.id, "ValueError", "boom [7]")]
    assert workflow.nodes()[1].result == [failed.id, "ValueError", "boom [7]"]
