"""A worker that dies while its task replaces itself loses nothing, adds nothing twice.

A real ``celery worker`` (prefork) runs ``p.fan_out``, which replaces itself
with a chord; its pool process SIGKILLs itself (``CELERIAC_TEST_DIE_AFTER``)
either after reading what the replacement needs, before anything is stored
(the node stays RUNNING: its attempt is lost and it runs again), or right
after the replacement committed (its first nodes are QUEUED but never sent:
recovery sends them). Either way the workflow ends with the result native
Celery gives, and the replacement's nodes exist once. And a cancel with
``terminate`` kills the replacement's running tasks.
"""

from __future__ import annotations

from types import ModuleType

import pytest
from celery import chain

from tests.waiting import wait_for
from tests.workers import QUICK_RECOVERY, Workers

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


@pytest.mark.parametrize("proc_env", [{"engine": QUICK_RECOVERY}], indirect=True)
@pytest.mark.parametrize(
    ("dies_after", "runs"), [("replaced_node", 2), ("record_replacement", 1)]
)
def test_a_replacement_survives_its_worker_dying(
    proc: ModuleType, workers: Workers, dies_after: str, runs: int
) -> None:
    workers.start(1, CELERIAC_TEST_DIE_AFTER=dies_after)
    workflow = proc.engine.submit(chain(proc.fan_out.si(5), proc.add.s(1)))
    wait_for(proc.died_after, timeout=20, what="the pool process to die")

    assert workflow.get(timeout=40) == 21  # 0 + 2 + 4 + 6 + 8, then + 1
    replaced, after, *added = workflow.nodes()
    assert (replaced.task, after.task) == ("p.fan_out", "p.add")
    assert [a.state for a in replaced.attempts][-1] == "REPLACED"
    assert len(replaced.attempts) == runs
    assert sorted(n.task for n in added) == ["p.slow_add"] * 5 + ["p.tsum"]
    assert {n.replaces for n in added} == {replaced.id}
    assert proc.runs("p.fan_out") == runs
    assert proc.runs("p.slow_add") == 5
    assert proc.runs("p.add") == 1
    assert proc.runs("p.tsum") == 1


def test_a_cancel_terminates_the_running_tasks_of_a_replacement(
    proc: ModuleType, workers: Workers
) -> None:
    workers.start(1)
    workflow = proc.engine.submit(chain(proc.fan_out.si(2, 60), proc.add.s(1)))
    wait_for(lambda: workflow.progress().running == 2, timeout=20, what="2 running")

    workflow.cancel(terminate=True)

    # bodies that sleep a minute end within seconds: their processes were killed
    wait_for(
        lambda: workflow.progress().running == 0, timeout=15, what="tasks terminated"
    )
    nodes = workflow.nodes()
    assert [n.state for n in nodes] == ["CANCELLED"] * 5
    assert [a.state for a in nodes[0].attempts] == ["REPLACED"]
    slow = [n for n in nodes if n.task == "p.slow_add"]
    assert [[a.state for a in n.attempts] for n in slow] == [["REVOKED"]] * 2
