"""Recovery: what a crash between a commit and a publish leaves behind."""

from __future__ import annotations

from datetime import UTC, datetime

from celery import chain, group

from celeriac import WorkflowState
from celeriac.engine.compiler import compile_canvas
from celeriac.engine.handle import Workflow
from celeriac.records import Claim, Lease


def _stored_but_never_published(engine, canvas) -> Workflow:
    """What a producer that died right after the submit's commit leaves."""
    new = compile_canvas(engine.app, canvas)
    assert engine._store.insert_workflow(new).dispatch
    return engine.workflow(new.id)


def test_recovery_starts_a_workflow_whose_producer_died_before_publishing(
    engine, tasks, worker
):
    workflow = _stored_but_never_published(
        engine, chain(tasks.add.s(1, 2), group(tasks.add.s(1), tasks.mul.s(2)))
    )
    engine.recovery_delay = 0
    assert engine.recover().sent == 1
    assert workflow.get(timeout=10) == [4, 6]
    assert [len(n.attempts) for n in workflow.nodes()] == [1, 1, 1]


def test_recovery_publishing_a_node_twice_runs_it_once(engine, tasks):
    workflow = engine.submit(group(tasks.add.s(i, i) for i in range(5)))
    engine.recovery_delay = 0
    assert engine.recover().sent == 5  # every message is now in the queue twice
    with engine.embedded_worker():
        assert workflow.get(timeout=10) == [0, 2, 4, 6, 8]
    assert sorted(args for _, args in tasks.ran) == [(i, i) for i in range(5)]
    assert all(len(n.attempts) == 1 for n in workflow.nodes())


def test_recovery_leaves_young_queued_nodes_alone(engine, tasks):
    engine.submit(tasks.add.s(1, 2))
    engine.recovery_delay = 3600
    assert engine.recover().sent == 0


def test_recovery_settles_a_pause_whose_last_node_finished_unseen(engine, tasks):
    workflow = engine.submit(chain(tasks.add.s(1, 2), tasks.add.s(10)))
    node_id = workflow.nodes()[0].id
    lease = engine._liveness.lease("w")
    _, number = engine._store.claim_node(workflow.id, node_id, "0.0", lease, "t")
    workflow.pause()
    assert workflow.state == WorkflowState.REQUESTING_PAUSE
    # the worker recorded the result, then died before settling the pause
    engine._store.record_success(workflow.id, node_id, number, 3)
    assert workflow.state == WorkflowState.REQUESTING_PAUSE
    engine.recover()
    assert workflow.state == WorkflowState.PAUSED
    with engine.embedded_worker():
        workflow.resume()
        assert workflow.get(timeout=10) == 13


def test_workers_recover_the_nodes_of_a_worker_that_died_mid_attempt(
    app, tasks, database_url
):
    from celeriac import Engine

    engine = Engine(
        app,
        database_url,
        worker_timeout=0.3,
        heartbeat_interval=0.05,
        recovery_interval=0.1,
    )
    engine.migrate()
    try:
        workflow = engine.submit(chain(tasks.add.s(1, 2), tasks.add.s(10)))
        first = workflow.nodes()[0].id
        # a worker claims the first node, then dies: it never heartbeats again
        dead = Lease("dead-worker", "dead", 1, datetime.now(UTC))
        engine._store.heartbeat(dead.worker_id, dead.hostname, dead.pid)
        claim, _ = engine._store.claim_node(workflow.id, first, "0.0", dead, "t")
        assert claim is Claim.RUN
        with engine.embedded_worker():  # its recovery loop starts with it
            assert workflow.get(timeout=15) == 13
        attempts_of_first = workflow.nodes()[0].attempts
        assert [a.state for a in attempts_of_first] == ["LOST", "SUCCEEDED"]
        assert tasks.ran == [("t.add", (1, 2)), ("t.add", (3, 10))]
    finally:
        engine.close()
