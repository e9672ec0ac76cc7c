"""The state machine's guarantees, on a real database and a real worker."""

from __future__ import annotations

import itertools
import random
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from celery import chain, group

from celeriac import (
    InvalidTransition,
    WorkflowCancelled,
    WorkflowFailed,
    WorkflowNotFound,
    WorkflowState,
)
from celeriac.engine.machine import next_state
from celeriac.storage.schema import attempts, events
from tests.waiting import wait_for

W = WorkflowState


def _state_is(workflow, *states):
    return lambda: workflow.state in states


def test_pause_waits_for_running_nodes_and_nothing_starts_after_it(
    engine, tasks, worker
):
    workflow = engine.submit(
        chain(
            tasks.stamp.si("a", 0.4), tasks.stamp.si("b", 0.0), tasks.stamp.si("c", 0.0)
        )
    )
    wait_for(lambda: "a" in tasks.started, what="first node to start")
    workflow.pause()
    paused_at = time.monotonic()
    assert workflow.state == W.REQUESTING_PAUSE  # "a" is still running
    wait_for(_state_is(workflow, W.PAUSED), what="PAUSED")
    # the running node finished and was recorded; its successor was held back
    assert [n.state for n in workflow.nodes()] == ["SUCCEEDED", "PENDING", "PENDING"]
    assert set(tasks.started) == {"a"}
    assert tasks.started["a"] < paused_at

    workflow.resume()
    assert workflow.get(timeout=10) == "c"
    assert [name for name, _ in tasks.ran] == ["t.stamp"] * 3


def test_pause_with_nothing_running_is_paused_at_once(engine, tasks):
    workflow = engine.submit(tasks.add.s(1, 2))  # no worker: nothing runs
    workflow.pause()
    assert workflow.state == W.PAUSED


def test_a_node_sent_but_not_started_is_held_back_and_runs_after_resume(engine, tasks):
    with engine.embedded_worker(concurrency=2):
        workflow = engine.submit(group(tasks.stamp.si(f"n{i}", 0.3) for i in range(8)))
        wait_for(lambda: len(tasks.started) >= 2, what="two nodes running")
        workflow.pause()
        paused_at = time.monotonic()
        wait_for(_state_is(workflow, W.PAUSED), what="PAUSED")
        started_after = [tag for tag, at in tasks.started.items() if at > paused_at]
        assert started_after == []
        nodes = workflow.nodes()
        done = [n for n in nodes if n.state == "SUCCEEDED"]
        assert 2 <= len(done) < 8
        # held back (PENDING), or still in the broker until the worker takes
        # the message and holds it back (QUEUED); none runs
        assert {n.state for n in nodes} <= {"SUCCEEDED", "PENDING", "QUEUED"}
        progress = workflow.progress()
        assert (progress.done, progress.total, progress.running) == (len(done), 8, 0)

        workflow.resume()
        assert workflow.get(timeout=20) == [f"n{i}" for i in range(8)]
    ran = sorted(args[0] for _, args in tasks.ran)
    assert ran == sorted(f"n{i}" for i in range(8))  # each exactly once
    assert all(len(n.attempts) == 1 for n in workflow.nodes())


def test_cancel_cancels_pending_nodes_and_nothing_starts_after_it(
    engine, tasks, worker
):
    workflow = engine.submit(
        chain(tasks.stamp.si("a", 0.3), tasks.stamp.si("b"), tasks.stamp.si("c"))
    )
    wait_for(lambda: "a" in tasks.started, what="first node to start")
    workflow.cancel()
    assert workflow.state == W.CANCELLED
    with pytest.raises(WorkflowCancelled):
        workflow.get(timeout=5)
    wait_for(lambda: workflow.nodes()[0].state != "RUNNING", what="a to finish")
    time.sleep(0.3)  # give a wrongly dispatched successor the time to start
    assert set(tasks.started) == {"a"}
    assert [n.state for n in workflow.nodes()][1:] == ["CANCELLED", "CANCELLED"]


def test_cancel_of_a_paused_workflow(engine, tasks):
    workflow = engine.submit(tasks.add.s(1, 2))
    workflow.pause()
    engine.cancel(workflow.id)
    assert workflow.state == W.CANCELLED
    assert [n.state for n in workflow.nodes()] == ["CANCELLED"]


def test_leaving_the_embedded_worker_lets_running_nodes_finish(engine, tasks):
    workflow = engine.submit(chain(tasks.stamp.si("a", 0.5), tasks.stamp.si("b")))
    with engine.embedded_worker():
        wait_for(lambda: "a" in tasks.started, what="the first node to start")
    # a warm shutdown: "a" finished and was recorded before the context left,
    # and the worker took nothing new ("b" waits for the next worker)
    assert [n.state for n in workflow.nodes()] == ["SUCCEEDED", "QUEUED"]
    assert "b" not in tasks.started
    ran = list(tasks.ran)
    time.sleep(0.3)  # nothing goes on behind our back
    assert tasks.ran == ran


def test_a_node_whose_expires_runs_out_fails_the_workflow(engine, tasks, worker):
    """Native Celery never sends the rest of such a chain and its get() hangs."""
    expires = datetime.now(UTC) + timedelta(seconds=0.3)
    late = tasks.add.si(1, 2).set(expires=expires)
    workflow = engine.submit(chain(tasks.sleep.si(0.6), late, tasks.add.s(3)))

    with pytest.raises(WorkflowFailed) as raised:
        workflow.get(timeout=10)

    first, expired, after = workflow.nodes()
    assert (raised.value.node_id, raised.value.exc_type) == (
        expired.id,
        "TaskRevokedError",
    )
    assert raised.value.exc_message == "expired"
    assert workflow.state == W.FAILED
    assert [first.state, expired.state, after.state] == [
        "SUCCEEDED",
        "FAILED",
        "SKIPPED",
    ]
    assert expired.attempts == []  # its body never ran
    assert [name for name, _ in tasks.ran] == ["t.sleep"]


@pytest.mark.parametrize(
    ("action", "setup"),
    [
        ("resume", []),
        ("retry", []),
        ("pause", ["pause"]),
        ("resume", ["cancel"]),
        ("pause", ["cancel"]),
        ("cancel", ["cancel"]),
    ],
)
def test_a_transition_the_table_refuses_raises_and_changes_nothing(
    engine, tasks, action, setup
):
    workflow = engine.submit(tasks.add.s(1, 2))  # no worker: stays IN_PROGRESS
    for step in setup:
        getattr(workflow, step)()
    before_state = workflow.state
    with engine._db.connect() as conn:
        before_events = conn.execute(
            sa.select(sa.func.count()).select_from(events)
        ).scalar()
    with pytest.raises(InvalidTransition) as raised:
        getattr(workflow, action)()
    assert raised.value.trigger == action
    assert raised.value.state == before_state
    assert workflow.state == before_state
    with engine._db.connect() as conn:
        after_events = conn.execute(
            sa.select(sa.func.count()).select_from(events)
        ).scalar()
    assert after_events == before_events


def test_completed_workflow_refuses_every_action(engine, tasks, worker):
    workflow = engine.submit(tasks.add.s(1, 2))
    assert workflow.get(timeout=10) == 3
    for action in ("pause", "resume", "cancel", "retry"):
        with pytest.raises(InvalidTransition):
            getattr(workflow, action)()
    assert workflow.state == W.COMPLETED


def test_unknown_workflow_id_raises_not_found(engine):
    with pytest.raises(WorkflowNotFound) as raised:
        engine.workflow("no-such-id")
    assert raised.value.workflow_id == "no-such-id"
    with pytest.raises(LookupError):
        engine.pause("no-such-id")


def test_progress_and_nodes_of_a_finished_workflow(engine, tasks, worker):
    workflow = engine.submit(
        chain(tasks.add.s(1, 1), group(tasks.add.s(10), tasks.mul.s(3)), tasks.tsum.s())
    )
    assert workflow.get(timeout=10) == 12 + 6
    assert engine.workflow(workflow.id).state == W.COMPLETED
    nodes = workflow.nodes()
    assert [n.task for n in nodes] == ["t.add", "t.add", "t.mul", "t.tsum"]
    assert [n.result for n in nodes] == [2, 12, 6, 18]
    assert all(n.state == "SUCCEEDED" and n.error is None for n in nodes)
    assert all([a.number for a in n.attempts] == [1] for n in nodes)
    assert all(
        a.worker and a.started_at <= a.finished_at for n in nodes for a in n.attempts
    )
    progress = workflow.progress()
    assert (progress.done, progress.total, progress.failed, progress.running) == (
        4,
        4,
        0,
        0,
    )
    assert progress.fraction == 1.0


def test_many_threads_pausing_resuming_and_cancelling_never_corrupt_the_state(
    engine, tasks, worker
):
    workflows = [
        engine.submit(group(tasks.stamp.si(f"{w}-{i}", 0.01) for i in range(12)))
        for w in range(2)
    ]
    workflows.append(
        engine.submit(chain(tasks.stamp.si(f"long-{i}", 0.3) for i in range(10)))
    )
    stop = threading.Event()
    refused = []

    def hammer(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            workflow = rng.choice(workflows[:2])
            try:
                getattr(workflow, rng.choice(["pause", "resume", "pause", "resume"]))()
            except InvalidTransition:
                refused.append(1)

    threads = [threading.Thread(target=hammer, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.8)
    workflows[2].cancel()
    stop.set()
    for thread in threads:
        thread.join()
    for workflow in workflows[:2]:
        if workflow.state in (W.REQUESTING_PAUSE, W.PAUSED):
            workflow.resume()
        assert workflow.get(timeout=20) == [
            f"{workflows.index(workflow)}-{i}" for i in range(12)
        ]
    assert workflows[2].state == W.CANCELLED
    with engine._db.connect() as conn:
        history = conn.execute(
            sa.select(
                events.c.workflow_id,
                events.c.from_state,
                events.c.to_state,
                events.c.detail,
            )
            .where(events.c.node_id.is_(None))
            .order_by(events.c.id)
        ).all()
        succeeded = conn.execute(
            sa.select(attempts.c.node_id, sa.func.count())
            .where(attempts.c.state == "SUCCEEDED")
            .group_by(attempts.c.node_id)
        ).all()
    for workflow in workflows:
        steps = [row for row in history if row.workflow_id == workflow.id]
        assert steps[0].to_state == W.IN_PROGRESS
        for previous, step in itertools.pairwise(steps):
            assert step.from_state == previous.to_state
            assert (
                next_state(workflow.id, step.from_state, step.detail) == step.to_state
            )
    assert all(count == 1 for _, count in succeeded)
