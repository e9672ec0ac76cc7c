"""What a user of native Celery expects back: exceptions, ids, call options, stamps.

- ``get()`` on a failed workflow raises the task's own exception class (and
  ``WorkflowFailed``); ``get(propagate=False)`` returns it;
- a signature frozen before submit runs under its frozen id;
- ``submit()`` takes ``apply_async``'s call options;
- stamps reach each task's request;
- after a failure the workflow still pauses, cancels and retries.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from celery import Celery, chain, chord, group
from celery.canvas import StampingVisitor
from celery.utils.serialization import UnpickleableExceptionWrapper

from celeriac import Engine, InvalidCanvas, WorkflowCancelled, WorkflowFailed
from celeriac.states import NodeState, WorkflowState
from tests.waiting import wait_for

TIMEOUT = 15.0


class ExpectedError(Exception):
    """A task's own exception, importable as Celery needs it to rebuild it."""


class CustomInit(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code}: {text}")
        self.code = code


@pytest.fixture
def extra(app: Celery) -> Iterator[SimpleNamespace]:
    """More tasks on the test's app: raising, blocking, flaky, reporting."""
    gate = threading.Event()
    broken = {"flaky": True}

    @app.task(name="t.expected", shared=False)
    def expected(text: str) -> None:
        raise ExpectedError(text)

    @app.task(name="t.custom", shared=False)
    def custom() -> None:
        raise CustomInit(7, "seven")

    @app.task(name="t.wait", shared=False)
    def wait(value: Any = None) -> Any:
        assert gate.wait(TIMEOUT)
        return value

    @app.task(name="t.flaky", shared=False)
    def flaky(value: Any) -> Any:
        if broken["flaky"]:
            raise ExpectedError("flaky")
        return value

    @app.task(name="t.request", bind=True, shared=False)
    def request(self: Any, value: Any = None) -> dict[str, Any]:
        return {
            "id": self.request.id,
            "stamps": self.request.stamps,
            "stamped_headers": sorted(self.request.stamped_headers or []),
            "expires": self.request.expires is not None,
            "delayed": self.request.eta is not None,
            "header": (self.request.headers or {}).get("custom")
            or getattr(self.request, "custom", None),
        }

    yield SimpleNamespace(
        expected=expected,
        custom=custom,
        wait=wait,
        flaky=flaky,
        request=request,
        gate=gate,
        broken=broken,
    )
    gate.set()


# -- exceptions ---------------------------------------------------------------


def test_get_raises_the_tasks_own_exception_class(
    engine: Engine, tasks: SimpleNamespace, extra: SimpleNamespace, worker: Any
) -> None:
    workflow = engine.submit(tasks.add.s(1, 1) | extra.expected.si("it broke"))

    with pytest.raises(ExpectedError) as raised:
        workflow.get(timeout=TIMEOUT)

    assert str(raised.value) == "it broke"
    assert raised.value.args == ("it broke",)
    assert isinstance(raised.value, WorkflowFailed)
    assert raised.value.workflow_id == workflow.id
    assert raised.value.exc_type == "ExpectedError"
    failed = [node for node in workflow.nodes() if node.state == NodeState.FAILED]
    assert raised.value.node_id == failed[0].id
    with pytest.raises(WorkflowFailed):  # the old way still works
        workflow.get(timeout=TIMEOUT)


def test_an_unpicklable_exception_is_raised_as_celery_raises_it(
    engine: Engine, extra: SimpleNamespace, worker: Any
) -> None:
    workflow = engine.submit(extra.custom.si())

    # Celery stores an exception it cannot pickle as this wrapper
    with pytest.raises(UnpickleableExceptionWrapper) as raised:
        workflow.get(timeout=TIMEOUT)

    assert isinstance(raised.value, WorkflowFailed)
    assert raised.value.exc_cls_name == "CustomInit"
    assert raised.value.exc_args == ("7: seven",)


def test_a_class_celery_cannot_rebuild_gives_plain_workflow_failed(
    engine: Engine,
    extra: SimpleNamespace,
    worker: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    workflow = engine.submit(extra.expected.si("gone"))
    wait_for(lambda: workflow.state == WorkflowState.FAILED, TIMEOUT, what="FAILED")
    # as when only the workers have the class
    monkeypatch.delattr(sys.modules[__name__], "ExpectedError")

    with pytest.raises(WorkflowFailed) as raised:
        workflow.get(timeout=TIMEOUT)

    assert type(raised.value) is WorkflowFailed
    assert (raised.value.exc_type, raised.value.exc_message) == (
        "ExpectedError",
        "gone",
    )


def test_get_without_propagate_returns_the_exception(
    engine: Engine, tasks: SimpleNamespace, worker: Any
) -> None:
    failed = engine.submit(tasks.boom.si(1))
    cancelled = engine.submit(tasks.add.s(1, 1).set(countdown=30))
    cancelled.cancel()

    returned = failed.get(timeout=TIMEOUT, propagate=False)

    assert isinstance(returned, ValueError)
    assert isinstance(returned, WorkflowFailed)
    assert str(returned) == "boom [1]"
    assert isinstance(
        cancelled.get(timeout=TIMEOUT, propagate=False), WorkflowCancelled
    )
    assert engine.submit(tasks.add.s(2, 2)).get(TIMEOUT, propagate=False) == 4


# -- a failing workflow still pauses, cancels and retries ---------------------


def failing_beside_a_waiting_task(t: SimpleNamespace, x: SimpleNamespace) -> Any:
    return group(t.boom.si(), x.wait.si(1) | t.add.s(1))


def wait_until_failed_node(workflow: Any) -> None:
    wait_for(
        lambda: any(n.state == NodeState.FAILED for n in workflow.nodes()),
        TIMEOUT,
        what="the failing node",
    )


def test_a_failing_workflow_runs_on_until_nothing_more_can_run(
    engine: Engine, tasks: SimpleNamespace, extra: SimpleNamespace, worker: Any
) -> None:
    workflow = engine.submit(failing_beside_a_waiting_task(tasks, extra))
    wait_until_failed_node(workflow)
    assert workflow.state == WorkflowState.IN_PROGRESS

    extra.gate.set()

    with pytest.raises(ValueError, match="boom"):
        workflow.get(timeout=TIMEOUT)
    assert [name for name, _ in tasks.ran].count("t.add") == 1


def test_a_failing_workflow_can_be_cancelled(
    engine: Engine, tasks: SimpleNamespace, extra: SimpleNamespace, worker: Any
) -> None:
    workflow = engine.submit(failing_beside_a_waiting_task(tasks, extra))
    wait_until_failed_node(workflow)

    workflow.cancel()
    extra.gate.set()

    with pytest.raises(WorkflowCancelled):
        workflow.get(timeout=TIMEOUT)
    assert "t.add" not in [name for name, _ in tasks.ran]


def test_a_failing_workflow_pauses_and_fails_after_resume(
    engine: Engine, tasks: SimpleNamespace, extra: SimpleNamespace, worker: Any
) -> None:
    workflow = engine.submit(failing_beside_a_waiting_task(tasks, extra))
    wait_until_failed_node(workflow)

    workflow.pause()
    extra.gate.set()
    wait_for(lambda: workflow.state == WorkflowState.PAUSED, TIMEOUT, what="PAUSED")
    assert "t.add" not in [name for name, _ in tasks.ran]  # held back
    workflow.resume()

    with pytest.raises(ValueError, match="boom"):
        workflow.get(timeout=TIMEOUT)
    assert [name for name, _ in tasks.ran].count("t.add") == 1


@pytest.mark.parametrize("on_failure", ["continue", "stop"])
def test_retry_after_a_failure_runs_what_did_not_succeed(
    engine: Engine,
    tasks: SimpleNamespace,
    extra: SimpleNamespace,
    worker: Any,
    on_failure: str,
) -> None:
    canvas = chord(
        [tasks.add.si(1, 1), extra.flaky.si(10), tasks.add.si(2, 2)], tasks.tsum.s()
    )
    workflow = engine.submit(canvas, on_failure=on_failure)
    with pytest.raises(ExpectedError):
        workflow.get(timeout=TIMEOUT)

    extra.broken["flaky"] = False
    workflow.retry()

    assert workflow.get(timeout=TIMEOUT) == 16
    assert [name for name, _ in tasks.ran].count("t.tsum") == 1


def test_on_failure_is_checked(engine: Engine, tasks: SimpleNamespace) -> None:
    with pytest.raises(ValueError, match="on_failure must be 'continue' or 'stop'"):
        engine.submit(tasks.add.s(1, 1), on_failure="later")


# -- frozen ids ---------------------------------------------------------------


def test_a_frozen_signature_runs_under_its_frozen_id(
    engine: Engine, tasks: SimpleNamespace, extra: SimpleNamespace, worker: Any
) -> None:
    first, second = extra.request.s(), extra.request.s()
    frozen = [first.freeze().id, second.freeze().id]
    canvas = chain(first, group(second, tasks.add.si(1, 1)))

    workflow = engine.submit(canvas)

    result = workflow.get(timeout=TIMEOUT)
    assert result[0]["id"] == frozen[1]
    task_nodes = [node.id for node in workflow.nodes()]
    assert task_nodes[:2] == frozen


def test_a_frozen_signature_is_submitted_once(
    engine: Engine, tasks: SimpleNamespace
) -> None:
    sig = tasks.add.s(1, 1)
    task_id = sig.freeze().id
    engine.submit(sig)

    with pytest.raises(InvalidCanvas, match=task_id):
        engine.submit(sig)
    with pytest.raises(InvalidCanvas, match="two tasks"):
        engine.submit(group(sig, sig))


# -- call options ---------------------------------------------------------------


def test_call_options_apply_to_the_tasks_that_start_the_canvas(
    engine: Engine, tasks: SimpleNamespace, extra: SimpleNamespace, worker: Any
) -> None:
    expires = datetime.now(UTC) + timedelta(minutes=5)
    workflow = engine.submit(
        chain(extra.request.s(1), extra.request.s()),
        countdown=0.1,
        expires=expires,
        headers={"custom": "yes"},
    )

    second = workflow.get(timeout=TIMEOUT)

    first = workflow.nodes()[0].result
    assert (first["delayed"], first["expires"], first["header"]) == (True, True, "yes")
    # as natively, the call's options reach the chain's first task only
    assert (second["delayed"], second["expires"], second["header"]) == (
        False,
        False,
        None,
    )


def test_call_link_and_link_error_replace_the_canvas_own(
    engine: Engine, tasks: SimpleNamespace, worker: Any
) -> None:
    ok = engine.submit(
        tasks.add.s(1, 1).set(link=tasks.mul.s(100)), link=tasks.mul.s(10)
    )
    failed = engine.submit(
        tasks.boom.s(1).on_error(tasks.identity.si("own")),
        link_error=tasks.identity.si("call"),
    )

    assert ok.get(timeout=TIMEOUT) == 2
    with pytest.raises(ValueError, match="boom"):
        failed.get(timeout=TIMEOUT)
    wait_for(lambda: ("t.identity", ("call",)) in tasks.ran, TIMEOUT, what="errback")
    wait_for(lambda: ("t.mul", (2, 10)) in tasks.ran, TIMEOUT, what="callback")
    assert ("t.mul", (2, 100)) not in tasks.ran
    assert ("t.identity", ("own",)) not in tasks.ran


def test_a_group_refuses_link_as_celery_does(
    engine: Engine, tasks: SimpleNamespace
) -> None:
    with pytest.raises(TypeError, match="use a chord"):
        engine.submit(group(tasks.add.s(1, 1)), link=tasks.mul.s(2))


# -- stamps -------------------------------------------------------------------


class Tagger(StampingVisitor):
    def on_signature(self, actual_sig: Any, **headers: Any) -> dict[str, Any]:
        return {"visited": "yes"}


def test_stamps_reach_each_tasks_request(
    engine: Engine, extra: SimpleNamespace, worker: Any
) -> None:
    canvas = group(extra.request.s(1), chain(extra.request.s(2), extra.request.s()))
    canvas.stamp(Tagger(), flavour="mint")

    results = engine.submit(canvas).get(timeout=TIMEOUT)

    assert len(results) == 2
    for result in results:
        assert result["stamps"]["flavour"] == "mint"
        assert result["stamps"]["visited"] == "yes"
        assert {"flavour", "visited"} <= set(result["stamped_headers"])
