"""An errback whose worker died after recording the failure still runs, once.

A real ``celery worker`` (prefork) records a task's failure, then its pool
process SIGKILLs itself (``CELERIAC_TEST_DIE_AFTER=record_failure``): the
errback was queued in the same transaction but never sent, nor run. The
recovery pass of the surviving worker process runs it: an errback of the old
form as a message with the failed task's id, one taking ``(request, exc,
traceback)`` in the recovering process, with the three rebuilt from the
stored failure. Either way exactly once, and recorded.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from celeriac import WorkflowFailed
from tests.waiting import wait_for
from tests.workers import QUICK_RECOVERY, Workers

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


@pytest.mark.parametrize("proc_env", [{"engine": QUICK_RECOVERY}], indirect=True)
@pytest.mark.parametrize("errback", ["p.on_error", "p.on_error_request"])
def test_an_errback_runs_once_when_its_worker_died_after_the_failure(
    proc: ModuleType, workers: Workers, errback: str
) -> None:
    workers.start(1, CELERIAC_TEST_DIE_AFTER="record_failure")
    handler = proc.app.tasks[errback]
    workflow = proc.engine.submit(proc.fail.s(7).on_error(handler.s()))
    wait_for(proc.died_after, timeout=20, what="the pool process to die")

    with pytest.raises(WorkflowFailed) as caught:
        workflow.get(timeout=30)
    assert (caught.value.exc_type, caught.value.exc_message) == ("ValueError", "fail 7")
    failed, errback_node = workflow.nodes()
    wait_for(
        lambda: workflow.nodes()[1].state == "SUCCEEDED",
        timeout=30,
        what="the errback to be recorded",
    )

    (call,) = proc.errback_calls()
    if errback == "p.on_error":
        assert call == ["p.on_error", failed.id]
    else:
        name, request_id, task, args, kwargs, exc_type, message, traceback = call
        assert (name, request_id, task, args, kwargs) == (
            "p.on_error_request",
            failed.id,
            "p.fail",
            [7],
            {},
        )
        assert (exc_type, message) == ("ValueError", "fail 7")
        (attempt,) = failed.attempts
        assert traceback == attempt.traceback
        assert "ValueError: fail 7" in traceback
    assert proc.runs(errback) == 1
    (done,) = workflow.nodes()[1].attempts
    assert (done.state, errback_node.id) == ("SUCCEEDED", workflow.nodes()[1].id)
    assert proc.runs("p.fail") == 1
