"""Production mode: real ``celery worker`` processes on real servers.

Each test starts ``celery -A tests.proc_app worker`` OS processes (prefork
pool, two children each) against the test's own PostgreSQL database and
Redis, submits from this process through the same module, and acts on the
workflow from a third process (the ``celeriac`` CLI), as in a deployment.
The workers' logs are in ``tmp_path`` and are shown when a test fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from celery import chain, chord, group

from celeriac import Workflow, WorkflowCancelled, WorkflowState
from tests.servers import Server
from tests.waiting import wait_for
from tests.workers import Workers

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
W = WorkflowState


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``celeriac --app tests.proc_app:app ARGS`` in a process of its own."""
    command = [sys.executable, "-m", "celeriac.cli", "--app", "tests.proc_app:app"]
    return subprocess.run(
        [*command, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def attempted(workflow: Workflow) -> set[str]:
    """Ids of the nodes a worker was allowed to start."""
    return {node.id for node in workflow.nodes() if node.attempts}


# -- tests ----------------------------------------------------------------------


def test_a_chord_of_1000_runs_its_body_once_with_the_header_results_in_order(
    proc: ModuleType, workers: Workers
) -> None:
    names = workers.start(2)
    workflow = proc.engine.submit(
        chord((proc.add.s(i, i) for i in range(1000)), proc.echo.s())
    )
    assert workflow.get(timeout=100) == [2 * i for i in range(1000)]

    *header, body = workflow.nodes()
    assert (len(header), body.task) == (1000, "p.echo")
    assert [(a.number, a.state) for a in body.attempts] == [(1, "SUCCEEDED")]
    assert proc.runs("p.echo") == 1
    assert proc.runs("p.add") == 1000
    assert all(len(node.attempts) == 1 for node in header)
    # both worker processes took part
    assert {node.attempts[0].worker for node in header} == set(names)


def _canvas(proc: ModuleType, i: int) -> tuple[Any, tuple[int, ...], Any]:
    """Workflow ``i`` of five shapes: (canvas, submit args, what Celery returns)."""
    add, tsum = proc.add, proc.tsum
    shape = i % 5
    if shape == 0:
        return chain(add.s(1), add.s(2), add.s(3)), (i,), i + 6
    if shape == 1:
        return group(add.s(i, j) for j in range(3)), (), [i, i + 1, i + 2]
    if shape == 2:
        return chord([add.s(i, i), add.s(1, 1)], tsum.s()), (), 2 * i + 2
    if shape == 3:
        # a group inside a chain: its results go to the next task as a list
        fan_in = chain(add.s(i, 0), group(add.s(1), add.s(2)), tsum.s(5))
        return fan_in, (), (i + 1) + (i + 2) + 5
    nested = group(
        chain(add.s(i, 1), add.s(1)),
        chord([add.s(i, 2), add.s(0, 0)], tsum.s(10)),
    )
    return nested, (), [i + 2, (i + 2) + 0 + 10]


def test_fifty_workflows_submitted_from_four_threads_all_complete(
    proc: ModuleType, workers: Workers
) -> None:
    workers.start(2)
    cases = [_canvas(proc, i) for i in range(50)]

    def submit(case: tuple[Any, tuple[int, ...], Any]) -> Workflow:
        canvas, args, _ = case
        workflow: Workflow = proc.engine.submit(canvas, args=args)
        return workflow

    with ThreadPoolExecutor(max_workers=4) as pool:
        submitted = list(pool.map(submit, cases))

    results = [workflow.get(timeout=60) for workflow in submitted]
    assert results == [expected for _, _, expected in cases]
    assert {workflow.state for workflow in submitted} == {W.COMPLETED}
    # every task ran once: per five workflows, 15 additions and 3 sums
    assert (proc.runs("p.add"), proc.runs("p.tsum")) == (150, 30)
    for workflow in submitted:
        assert all(len(node.attempts) == 1 for node in workflow.nodes())


def _stamps_group(proc: ModuleType, count: int, seconds: float) -> Any:
    return group(proc.stamp.si(f"n{i:02d}", seconds) for i in range(count))


def _busy(proc: ModuleType, names: list[str]) -> None:
    wait_for(
        lambda: proc.stamp_workers() == set(names),
        timeout=20,
        what="both workers running a node",
    )


def test_pause_and_resume_from_another_process_while_two_workers_are_busy(
    proc: ModuleType, proc_env: dict[str, str], workers: Workers
) -> None:
    names = workers.start(2)
    workflow = proc.engine.submit(_stamps_group(proc, 24, 0.8))
    tags = {node.id: f"n{i:02d}" for i, node in enumerate(workflow.nodes())}
    _busy(proc, names)

    paused = cli(proc_env, "pause", workflow.id)
    returned, returned_at = time.time(), datetime.now(UTC)
    admitted = {tags[node_id] for node_id in attempted(workflow)}
    assert paused.returncode == 0, paused.stderr
    assert workflow.state in (W.REQUESTING_PAUSE, W.PAUSED)

    wait_for(lambda: workflow.state == W.PAUSED, timeout=20, what="PAUSED")
    wait_for(lambda: proc.backlog() == 0, timeout=20, what="messages worked off")
    nodes = workflow.nodes()
    # no node started after pause returned: every body that ran, and every
    # attempt, was admitted before
    late = [tag for tag, at in proc.stamps() if at > returned and tag not in admitted]
    assert late == []
    assert {tag for tag, _ in proc.stamps()} == admitted
    assert {tags[node_id] for node_id in attempted(workflow)} == admitted
    assert all(a.started_at < returned_at for n in nodes for a in n.attempts)
    assert {n.state for n in nodes} == {"SUCCEEDED", "PENDING"}
    assert workflow.progress().running == 0

    resumed = cli(proc_env, "resume", workflow.id)
    assert resumed.returncode == 0, resumed.stderr
    assert workflow.get(timeout=30) == [f"n{i:02d}" for i in range(24)]
    started = sorted(tag for tag, _ in proc.stamps())
    assert started == [f"n{i:02d}" for i in range(24)]  # each exactly once
    assert all(len(node.attempts) == 1 for node in workflow.nodes())


def test_cancel_from_another_process_while_two_workers_are_busy(
    proc: ModuleType, proc_env: dict[str, str], workers: Workers
) -> None:
    names = workers.start(2)
    workflow = proc.engine.submit(_stamps_group(proc, 24, 0.8))
    tags = {node.id: f"n{i:02d}" for i, node in enumerate(workflow.nodes())}
    _busy(proc, names)

    cancelled = cli(proc_env, "cancel", workflow.id)
    returned_at = datetime.now(UTC)
    admitted = attempted(workflow)
    assert cancelled.returncode == 0, cancelled.stderr
    assert workflow.state == W.CANCELLED
    with pytest.raises(WorkflowCancelled):
        workflow.get(timeout=5)

    wait_for(lambda: workflow.progress().running == 0, timeout=20, what="idle")
    wait_for(lambda: proc.backlog() == 0, timeout=20, what="messages worked off")
    nodes = workflow.nodes()
    assert attempted(workflow) == admitted  # nothing started after cancel
    assert {tag for tag, _ in proc.stamps()} == {tags[i] for i in admitted}
    assert all(a.started_at < returned_at for n in nodes for a in n.attempts)
    # the admitted nodes ran to their end (no --terminate); the rest never ran
    assert {n.id for n in nodes if n.state == "SUCCEEDED"} == admitted
    assert {n.state for n in nodes if n.id not in admitted} == {"CANCELLED"}
    assert workflow.state == W.CANCELLED


def test_cancel_with_terminate_kills_the_running_tasks(
    proc: ModuleType, proc_env: dict[str, str], workers: Workers
) -> None:
    names = workers.start(2)
    workflow = proc.engine.submit(_stamps_group(proc, 8, 60))
    _busy(proc, names)

    cancelled = cli(proc_env, "cancel", "--terminate", workflow.id)
    assert cancelled.returncode == 0, cancelled.stderr
    admitted = attempted(workflow)
    # bodies that sleep a minute end within seconds: their processes were killed
    wait_for(
        lambda: workflow.progress().running == 0, timeout=15, what="tasks terminated"
    )

    nodes = workflow.nodes()
    assert len(admitted) >= 2
    assert proc.runs("p.stamp") == len(admitted)
    for node in nodes:
        assert node.state == "CANCELLED"
        expected = ["REVOKED"] if node.id in admitted else []
        assert [a.state for a in node.attempts] == expected
    assert workflow.state == W.CANCELLED


@pytest.mark.parametrize("immediate", [False, True], ids=["fast", "immediate"])
def test_a_postgres_restart_in_the_middle_of_a_200_node_workflow(
    proc: ModuleType, postgres_server: Server, workers: Workers, immediate: bool
) -> None:
    """Fast: connections are closed; immediate: as a crash, then crash recovery."""
    workers.start(2)
    # a chain of 20 groups of 10: each node gets the list of the 10 before
    levels = [group(proc.step.s([], j) for j in range(10))]
    levels += [group(proc.step.s(j) for j in range(10)) for _ in range(19)]
    workflow = proc.engine.submit(chain(*levels))
    expected = list(range(10))
    for _ in range(19):
        expected = [(sum(expected) + j) % 1009 for j in range(10)]

    wait_for(lambda: workflow.progress().done >= 40, timeout=30, what="40 nodes")
    postgres_server.restart(immediate=immediate)
    done_after_restart = workflow.progress().done
    assert done_after_restart < 200, "the restart came too late to test anything"

    assert workflow.get(timeout=60) == expected
    nodes = workflow.nodes()
    assert len(nodes) == 200
    assert proc.runs("p.step") == 200
    assert all(len(node.attempts) == 1 for node in nodes)


# -- a COMMIT whose reply is lost -------------------------------------------------
#
# The transaction committed, but the connection broke before the client heard
# so (a database crash or a network fault at that moment). The engine retries
# the transaction, which replays a write that already happened.


def test_a_claim_whose_commit_reply_was_lost_still_runs_the_node(
    proc: ModuleType, workers: Workers
) -> None:
    workers.start(1, CELERIAC_TEST_LOSE_COMMIT_REPLY="claim_node")
    workflow = proc.engine.submit(chain(proc.add.s(1, 2), proc.add.s(3)))
    wait_for(proc.reply_lost, timeout=20, what="the injected fault")
    assert workflow.get(timeout=8) == 6
    assert all(len(node.attempts) == 1 for node in workflow.nodes())


def test_an_outcome_whose_commit_reply_was_lost_still_releases_its_successors(
    proc: ModuleType, workers: Workers
) -> None:
    workers.start(1, CELERIAC_TEST_LOSE_COMMIT_REPLY="record_success")
    workflow = proc.engine.submit(chain(proc.add.s(1, 2), proc.add.s(3), proc.add.s(4)))
    wait_for(proc.reply_lost, timeout=20, what="the injected fault")
    # the replay finds the node SUCCEEDED by this very attempt, and rebuilds
    # what its first commit released: no recovery pass is needed. The first
    # commit claimed the next node to run in place: the replay finds that
    # claim by its token, and the worker runs it
    assert workflow.get(timeout=20) == 10
    first, second, _ = nodes = workflow.nodes()
    assert all(len(node.attempts) == 1 for node in nodes)
    assert second.attempts[0].started_at == first.attempts[0].finished_at
    assert proc.runs("p.add") == 3


# -- a worker that dies while it runs a node --------------------------------------

#: Quick liveness, for the engine versions that heartbeat (ignored by others).
FAST_LIVENESS = {"recovery_delay": 1, "heartbeat_interval": 0.5, "worker_timeout": 3}


def _recover_until_done(proc: ModuleType, workflow: Workflow, timeout: float) -> Any:
    """Run recovery passes, as a scheduled ``celeriac recover`` would."""
    deadline = time.monotonic() + timeout
    while True:
        proc.engine.recover()
        try:
            return workflow.get(timeout=0.5)
        except TimeoutError:
            if time.monotonic() > deadline:
                raise


@pytest.mark.parametrize(
    "proc_env",
    [pytest.param({"engine": FAST_LIVENESS}, id="fast-liveness")],
    indirect=True,
)
@pytest.mark.parametrize("death", ["pool-process", "whole-worker"])
@pytest.mark.parametrize("place", ["published", "in-place"])
def test_a_node_whose_worker_died_while_running_it_runs_again(
    proc: ModuleType, workers: Workers, death: str, place: str
) -> None:
    """pool-process: the OOM killer took one child; whole-worker: the machine died.

    in-place: the victim was claimed in its parent's success and runs in the
    parent's process, without a message of its own (``engine.handoff``).
    """
    (name,) = workers.start(1)
    steps = [proc.stamp.si("victim", 3), proc.add.si(1, 2)]
    if place == "in-place":
        steps.insert(0, proc.add.si(0, 0))
    workflow = proc.engine.submit(chain(*steps))
    wait_for(lambda: proc.stamps(), timeout=20, what="the node to start")
    if death == "pool-process":
        os.kill(proc.stamped_by("victim")[1], signal.SIGKILL)
    else:
        workers.kill(name)
        workers.start(1)

    assert _recover_until_done(proc, workflow, timeout=12) == 3
    nodes = workflow.nodes()
    victim = nodes[1] if place == "in-place" else nodes[0]
    if place == "in-place":  # its attempt started as its parent's ended
        assert victim.attempts[0].started_at == nodes[0].attempts[0].finished_at
    assert len(victim.attempts) == 2
    assert victim.attempts[0].state != "SUCCEEDED"
    assert [tag for tag, _ in proc.stamps()] == ["victim", "victim"]
