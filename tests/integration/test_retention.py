"""Retention: ``engine.purge`` deletes finished workflows with all their rows.

On SQLite and PostgreSQL, with real workflows run on an embedded worker, and
finished history inserted in SQL, purged while a chain runs on the same
database (a million nodes of it in ``test_query_plans.py``, which shares the
history its EXPLAIN test needs).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from celery import chain

from celeriac import Engine, WorkflowFailed, WorkflowNotFound
from celeriac.storage.schema import (
    attempts,
    edges,
    events,
    nodes,
    transitions,
    workers,
    workflows,
)
from tests.history import insert_history

#: Every table with rows of a workflow, and the column that names it.
PER_WORKFLOW = (
    (workflows, workflows.c.id),
    (nodes, nodes.c.workflow_id),
    (edges, edges.c.workflow_id),
    (attempts, attempts.c.workflow_id),
    (events, events.c.workflow_id),
    (transitions, transitions.c.workflow_id),
)


def rows_of(db: sa.Engine, workflow_id: str) -> dict[str, int]:
    """How many rows each table holds for the workflow."""
    with db.connect() as conn:
        return {
            table.name: conn.execute(
                sa.select(sa.func.count()).where(column == workflow_id)
            ).scalar_one()
            for table, column in PER_WORKFLOW
        }


def age(db: sa.Engine, workflow_id: str, by: timedelta) -> None:
    """Date a workflow (and its events) ``by`` back: created, finished then."""
    then = datetime.now(UTC) - by
    with db.begin() as conn:
        conn.execute(
            sa.update(workflows)
            .where(workflows.c.id == workflow_id)
            .values(created_at=then)
        )
        conn.execute(
            sa.update(workflows)
            .where(workflows.c.id == workflow_id, workflows.c.finished_at.is_not(None))
            .values(finished_at=then)
        )
        conn.execute(
            sa.update(events).where(events.c.workflow_id == workflow_id).values(at=then)
        )


@pytest.fixture
def stocked(engine, tasks):
    """A COMPLETED, a FAILED, a CANCELLED, a PAUSED and an unstarted workflow."""
    with engine.embedded_worker():
        completed = engine.submit(chain(tasks.add.s(1, 2), tasks.add.s(3)), name="a")
        assert completed.get(timeout=30) == 6
        failed = engine.submit(chain(tasks.add.s(1, 1), tasks.boom.s()), name="b")
        with pytest.raises(WorkflowFailed):
            failed.get(timeout=30)
    cancelled = engine.submit(chain(tasks.add.s(1, 1), tasks.add.s(2)), name="a")
    cancelled.cancel()
    paused = engine.submit(chain(tasks.add.s(1, 1), tasks.add.s(2)), name="a")
    paused.pause()
    waiting = engine.submit(chain(tasks.add.s(1, 1), tasks.add.s(2)), name="a")
    found = {
        "COMPLETED": completed,
        "FAILED": failed,
        "CANCELLED": cancelled,
        "PAUSED": paused,
        "IN_PROGRESS": waiting,
    }
    assert {state: w.state for state, w in found.items()} == {
        state: state for state in found
    }
    for workflow in found.values():
        age(engine._db, workflow.id, timedelta(days=40))
    return found


def test_purge_deletes_finished_workflows_and_all_their_rows(engine, stocked):
    unfinished = {
        s: rows_of(engine._db, stocked[s].id) for s in ("PAUSED", "IN_PROGRESS")
    }
    assert rows_of(engine._db, stocked["COMPLETED"].id)["celeriac_attempts"] == 2

    # events keep their own retention: here longer than the workflows'
    assert engine.purge(timedelta(days=30), events_older_than=timedelta(days=50)) == 3

    for state in ("COMPLETED", "FAILED", "CANCELLED"):
        workflow_id = stocked[state].id
        assert set(rows_of(engine._db, workflow_id).values()) == {0}, state
        with pytest.raises(WorkflowNotFound):
            engine.workflow(workflow_id)
    for state, before in unfinished.items():
        assert stocked[state].state == state
        assert rows_of(engine._db, stocked[state].id) == before
    assert engine.purge(timedelta(days=30)) == 0


def test_purge_keeps_workflows_finished_more_recently(engine, stocked):
    assert engine.purge(timedelta(days=41)) == 0
    assert engine.purge(timedelta(days=39), states=["FAILED"]) == 1
    assert stocked["COMPLETED"].state == "COMPLETED"
    assert stocked["CANCELLED"].state == "CANCELLED"
    with pytest.raises(WorkflowNotFound):
        engine.workflow(stocked["FAILED"].id)


def test_a_finished_workflow_with_a_node_still_running_waits(engine, stocked):
    cancelled = stocked["CANCELLED"].id
    with engine._db.begin() as conn:  # its revoked task has not stopped yet
        conn.execute(
            sa.update(nodes)
            .where(nodes.c.workflow_id == cancelled, nodes.c.kind == "TASK")
            .values(state="RUNNING")
        )

    assert engine.purge(timedelta(days=30), dry_run=True) == 2
    assert engine.purge(timedelta(days=30)) == 2
    assert rows_of(engine._db, cancelled)["celeriac_nodes"] > 0

    with engine._db.begin() as conn:
        conn.execute(
            sa.update(nodes)
            .where(nodes.c.workflow_id == cancelled, nodes.c.state == "RUNNING")
            .values(state="CANCELLED")
        )
    assert engine.purge(timedelta(days=30)) == 1
    assert set(rows_of(engine._db, cancelled).values()) == {0}


def test_purge_by_state_and_name(engine, stocked):
    assert engine.purge(timedelta(days=1), states=["COMPLETED"], name="b") == 0
    assert engine.purge(timedelta(days=1), states=["completed", "CANCELLED"]) == 2
    assert stocked["FAILED"].state == "FAILED"
    assert engine.purge(timedelta(days=1), name="b") == 1


def test_dry_run_counts_and_deletes_nothing(engine, stocked):
    before = {state: rows_of(engine._db, w.id) for state, w in stocked.items()}
    counted = engine.purge_counts(timedelta(days=30), dry_run=True)
    finished = ("COMPLETED", "FAILED", "CANCELLED")

    assert counted.workflows == 3
    assert counted.nodes == sum(before[s]["celeriac_nodes"] for s in finished)
    assert engine.purge(timedelta(days=30), dry_run=True) == 3
    assert {state: rows_of(engine._db, w.id) for state, w in stocked.items()} == before

    done = engine.purge_counts(timedelta(days=30))
    assert (done.workflows, done.nodes) == (counted.workflows, counted.nodes)


@pytest.mark.parametrize(
    "states",
    [["IN_PROGRESS"], ["COMPLETED", "PAUSED"], ["REQUESTING_PAUSE"], ["DONE"], []],
)
def test_purge_refuses_states_other_than_finished_ones(engine, stocked, states):
    before = {state: rows_of(engine._db, w.id) for state, w in stocked.items()}

    named = [state for state in states if state != "COMPLETED"]
    with pytest.raises(ValueError, match="|".join(named) or "empty") as refused:
        engine.purge(timedelta(0), states=states)

    assert all(state in str(refused.value) for state in named)
    assert {state: rows_of(engine._db, w.id) for state, w in stocked.items()} == before


def test_purge_refuses_a_negative_age_and_a_worker_retention_below_the_timeout(
    engine,
):
    with pytest.raises(ValueError, match="older_than must not be negative"):
        engine.purge(timedelta(days=-1))
    with pytest.raises(ValueError, match="worker timeout"):
        engine.purge(timedelta(days=30), workers_older_than=timedelta(seconds=10))
    with pytest.raises(TypeError, match="timedelta"):
        engine.purge(30)


def test_an_age_beyond_the_calendar_purges_nothing(engine, stocked):
    assert engine.purge(timedelta(days=999_999_999)) == 0


def test_purge_prunes_old_events_and_silent_workers(engine, stocked):
    now = datetime.now(UTC)
    with engine._db.begin() as conn:
        for name, silent in (("gone", timedelta(days=9)), ("alive", timedelta(0))):
            conn.execute(
                workers.insert(),
                {
                    "id": name,
                    "pid": 1,
                    "started_at": now - silent,
                    "heartbeat_at": now - silent,
                },
            )
    paused = stocked["PAUSED"].id
    before = rows_of(engine._db, paused)
    assert before["celeriac_events"] > 0
    waiting = stocked["IN_PROGRESS"].id
    engine.pause(waiting)  # new events, of an old workflow
    with engine._db.connect() as conn:
        new_events = conn.execute(
            sa.select(sa.func.count()).where(
                events.c.workflow_id == waiting, events.c.at > now - timedelta(days=1)
            )
        ).scalar_one()

    purged = engine.purge_counts(
        timedelta(days=100),
        events_older_than=timedelta(days=30),
        workers_older_than=timedelta(days=7),
    )

    assert purged.workflows == 0
    assert purged.workers == 1
    with engine._db.connect() as conn:
        left = set(conn.execute(sa.select(workers.c.id)).scalars())
    assert "gone" not in left
    assert "alive" in left
    assert rows_of(engine._db, waiting)["celeriac_events"] == new_events > 0
    assert stocked["PAUSED"].state == "PAUSED"
    assert rows_of(engine._db, paused) == {**before, "celeriac_events": 0}


def test_a_large_workflow_is_purged_in_slices(engine, monkeypatch):
    from celeriac.storage import retention

    monkeypatch.setattr(retention, "NODES_PER_CHUNK", 7)
    monkeypatch.setattr(retention, "EVENTS_PER_CHUNK", 5)
    with engine._db.begin() as conn:
        big, _ = insert_history(conn, 50, 25, prefix="big")
    transactions = []
    sa.event.listen(engine._db, "commit", lambda conn: transactions.append(1))

    purged = engine.purge_counts(timedelta(days=1))

    assert (purged.workflows, purged.nodes, purged.events) == (2, 50, 50)
    # 25 nodes in slices of 7, their 25 events in slices of 5, then the row
    assert len(transactions) > 2 * (4 + 5)
    assert set(rows_of(engine._db, big).values()) == {0}


#: One finished workflow too large for a transaction: purged in slices.
HUGE = 30_000


def purge_while_a_chain_runs(
    engine: Engine, tasks: Any, history_workflows: int, history_nodes: int
) -> None:
    """Purge the database's finished history while a chain runs on it.

    The database holds ``history_workflows`` workflows finished long ago
    with ``history_nodes`` nodes in all; one more of ``HUGE`` nodes is
    added. A paused workflow as old as they are must stay, and the chain
    must finish with every attempt recorded.
    """
    with engine._db.connect() as conn:
        others = conn.execute(sa.select(sa.func.count()).select_from(nodes))
        others_count = others.scalar_one() - history_nodes
        recent = conn.execute(
            sa.select(sa.func.count()).where(
                events.c.at > datetime.now(UTC) - timedelta(days=30)
            )
        ).scalar_one()
    with engine._db.begin() as conn:
        insert_history(conn, HUGE, HUGE, prefix="huge")
    paused = engine.submit(chain(tasks.add.s(1, 1), tasks.add.s(2)))
    paused.pause()
    age(engine._db, paused.id, timedelta(days=400))
    kept = rows_of(engine._db, paused.id)
    steps = 40
    with engine.embedded_worker():
        running = engine.submit(
            chain(tasks.add.s(0, 1), *(tasks.add.s(1) for _ in range(steps - 1)))
        )
        assert running.state == "IN_PROGRESS"

        purged = engine.purge_counts(timedelta(days=30))

        assert running.get(timeout=60) == steps
    assert (purged.workflows, purged.nodes) == (
        history_workflows + 1,
        history_nodes + HUGE,
    )
    # the paused workflow's events are older than their retention too, but
    # old events are pruned in the order they were written, up to the first
    # recent one: any the database held stops the pruning before them
    pruned = 0 if recent else kept["celeriac_events"]
    assert purged.events == history_nodes + HUGE + pruned
    with engine._db.connect() as conn:
        left = conn.execute(sa.select(sa.func.count()).select_from(nodes)).scalar_one()
    running_nodes = rows_of(engine._db, running.id)["celeriac_nodes"]
    assert left == others_count + kept["celeriac_nodes"] + running_nodes
    # (its held-back message, delivered to the worker, adds an event)
    assert rows_of(engine._db, paused.id) | {"celeriac_events": 0} == kept | {
        "celeriac_events": 0
    }
    assert paused.state == "PAUSED"
    assert rows_of(engine._db, running.id)["celeriac_attempts"] == steps


def test_finished_history_is_purged_while_a_chain_runs(engine, tasks):
    """Small, on both databases; a million nodes: ``test_query_plans.py``."""
    with engine._db.begin() as conn:
        insert_history(conn, 20_000, 1_000)
    purge_while_a_chain_runs(engine, tasks, 20, 20_000)
