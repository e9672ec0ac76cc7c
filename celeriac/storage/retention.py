"""Retention: delete finished workflows, old events and silent workers.

A purge runs as many short transactions: each deletes whole workflows up to
:data:`NODES_PER_CHUNK` nodes (at most :data:`WORKFLOWS_PER_CHUNK` of
them), or one slice of a workflow larger than that, so that no purge holds
its locks for long, and on SQLite other writers get the database between
two chunks. Each chunk locks the workflows it deletes (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL, the write lock on SQLite) and checks again that they
are finished: a workflow that has not finished is never touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from celeriac.states import NodeState
from celeriac.storage.database import retry_transient
from celeriac.storage.retention_policy import Purged, Retention
from celeriac.storage.rows import aware
from celeriac.storage.schema import (
    attempts,
    edges,
    events,
    nodes,
    transitions,
    workers,
    workflows,
)

#: Nodes (with their edges, attempts and events) one transaction deletes.
NODES_PER_CHUNK = 10_000
#: Workflows one transaction deletes, at most.
WORKFLOWS_PER_CHUNK = 200
#: Event rows one transaction deletes.
EVENTS_PER_CHUNK = 30_000


@dataclass
class _Slices:
    """How far the slicing of workflows too large for one chunk got."""

    #: per workflow id: the position of the last node deleted
    nodes_after: dict[str, int] = field(default_factory=dict)
    #: per workflow id: the id of the last event deleted
    events_after: dict[str, int] = field(default_factory=dict)

    def copy(self) -> _Slices:
        return _Slices(dict(self.nodes_after), dict(self.events_after))


def _chosen(retention: Retention) -> sa.ColumnElement[bool]:
    """The workflows ``retention`` deletes.

    Not one with a node still RUNNING (a cancelled workflow whose revoked
    task has not stopped yet): its worker will record the outcome.
    """
    running = sa.exists().where(
        nodes.c.workflow_id == workflows.c.id, nodes.c.state == NodeState.RUNNING
    )
    condition = sa.and_(
        workflows.c.state.in_(retention.states),
        workflows.c.finished_at < retention.workflows_before,
        ~running,
    )
    if retention.name is not None:
        condition = sa.and_(condition, workflows.c.name == retention.name)
    return condition


def count(conn: sa.Connection, retention: Retention) -> Purged:
    """What ``retention`` would delete now, deleting nothing (a dry run)."""
    chosen = sa.select(workflows.c.id).where(_chosen(retention)).subquery()
    return Purged(
        workflows=conn.execute(
            sa.select(sa.func.count()).select_from(chosen)
        ).scalar_one(),
        nodes=conn.execute(
            sa.select(sa.func.count()).where(
                nodes.c.workflow_id.in_(sa.select(chosen.c.id))
            )
        ).scalar_one(),
        events=conn.execute(
            sa.select(sa.func.count()).where(
                sa.or_(
                    events.c.workflow_id.in_(sa.select(chosen.c.id)),
                    events.c.at < retention.events_before,
                )
            )
        ).scalar_one(),
        workers=conn.execute(
            sa.select(sa.func.count()).where(
                workers.c.heartbeat_at < retention.workers_before
            )
        ).scalar_one(),
    )


class Purger:
    """Runs a purge, each chunk one transaction, retried alone on a transient fault."""

    def __init__(self, db: sa.Engine) -> None:
        self.db = db
        self.purged = Purged()
        self._slices = _Slices()

    @retry_transient
    def count(self, retention: Retention) -> Purged:
        """What ``run`` would delete now, deleting nothing (a dry run)."""
        read = self.db.connect().execution_options(celeriac_read_only=True)
        with read as conn, conn.begin():
            return count(conn, retention)

    def run(self, retention: Retention) -> Purged:
        """Delete what ``retention`` names, one short transaction after another."""
        while self._workflows_chunk(retention):
            pass
        after: int | None = 0
        while after is not None:
            after = self._events_chunk(retention.events_before, after)
        self._workers(retention.workers_before)
        return self.purged

    @retry_transient
    def _workflows_chunk(self, retention: Retention) -> bool:
        """One transaction of workflow deletes; False once none is left."""
        with self.db.begin() as conn:
            candidates = list(
                conn.execute(
                    sa.select(workflows.c.id)
                    .where(_chosen(retention))
                    .order_by(workflows.c.finished_at, workflows.c.id)
                    .limit(WORKFLOWS_PER_CHUNK)
                    .with_for_update(skip_locked=True)
                ).scalars()
            )
            if not candidates:
                return False
            whole: list[str] = []
            budget = NODES_PER_CHUNK
            for workflow_id in candidates:
                if workflow_id in self._slices.nodes_after:
                    break  # being sliced: its events are sliced too
                size = _size_up_to(conn, workflow_id, budget + 1)
                if size > budget:
                    break
                whole.append(workflow_id)
                budget -= size
            done = Purged()
            # advanced only once the chunk committed: a replay starts over
            slices = self._slices.copy()
            if whole:
                _delete_whole(conn, whole, done)
            else:
                _delete_slice(conn, candidates[0], slices, done)
        self._slices = slices
        self._add(done)
        return True

    @retry_transient
    def _events_chunk(self, before: datetime, after: int) -> int | None:
        done = Purged()
        with self.db.begin() as conn:
            following = _prune_events(conn, before, after, done)
        self._add(done)
        return following

    @retry_transient
    def _workers(self, before: datetime) -> None:
        with self.db.begin() as conn:
            self.purged.workers += conn.execute(
                sa.delete(workers).where(workers.c.heartbeat_at < before)
            ).rowcount

    def _add(self, done: Purged) -> None:
        """Count a committed chunk (a replayed one counts once)."""
        self.purged.workflows += done.workflows
        self.purged.nodes += done.nodes
        self.purged.events += done.events


def _size_up_to(conn: sa.Connection, workflow_id: str, cap: int) -> int:
    """How many nodes the workflow has, counting no further than ``cap``."""
    first = (
        sa.select(sa.literal(1))
        .where(nodes.c.workflow_id == workflow_id)
        .limit(cap)
        .subquery()
    )
    return int(conn.execute(sa.select(sa.func.count()).select_from(first)).scalar_one())


def _delete_whole(conn: sa.Connection, ids: Sequence[str], purged: Purged) -> None:
    """Delete workflows ``ids`` and all their rows, counted in ``purged``."""
    purged.events += conn.execute(
        sa.delete(events).where(events.c.workflow_id.in_(ids))
    ).rowcount
    conn.execute(sa.delete(attempts).where(attempts.c.workflow_id.in_(ids)))
    conn.execute(sa.delete(edges).where(edges.c.workflow_id.in_(ids)))
    conn.execute(sa.delete(transitions).where(transitions.c.workflow_id.in_(ids)))
    purged.nodes += conn.execute(
        sa.delete(nodes).where(nodes.c.workflow_id.in_(ids))
    ).rowcount
    purged.workflows += conn.execute(
        sa.delete(workflows).where(workflows.c.id.in_(ids))
    ).rowcount


def _delete_slice(
    conn: sa.Connection, workflow_id: str, slices: _Slices, purged: Purged
) -> None:
    """Delete the next slice of a workflow too large for one chunk.

    Its nodes go in canvas order, with their attempts and edges, then its
    events; the workflow row goes last, with whatever is left, so that until
    then the workflow is still listed, still finished, and purged further by
    the next purge if this one stops.
    """
    after = slices.nodes_after.get(workflow_id, -1)
    rows = conn.execute(
        sa.select(nodes.c.id, nodes.c.position)
        .where(nodes.c.workflow_id == workflow_id, nodes.c.position > after)
        .order_by(nodes.c.position)
        .limit(NODES_PER_CHUNK)
    ).all()
    if rows:
        ids = [row.id for row in rows]
        for table, column in (
            (attempts, attempts.c.node_id),
            (edges, edges.c.child_id),
            (nodes, nodes.c.id),
        ):
            conn.execute(
                sa.delete(table).where(
                    table.c.workflow_id == workflow_id, column.in_(ids)
                )
            )
        slices.nodes_after[workflow_id] = rows[-1].position
        purged.nodes += len(ids)
        return
    last_event = slices.events_after.get(workflow_id, 0)
    event_ids = (
        conn.execute(
            sa.select(events.c.id)
            .where(events.c.workflow_id == workflow_id, events.c.id > last_event)
            .order_by(events.c.id)
            .limit(EVENTS_PER_CHUNK)
        )
        .scalars()
        .all()
    )
    if len(event_ids) == EVENTS_PER_CHUNK:
        purged.events += conn.execute(
            sa.delete(events).where(
                events.c.workflow_id == workflow_id,
                events.c.id > last_event,
                events.c.id <= event_ids[-1],
            )
        ).rowcount
        slices.events_after[workflow_id] = event_ids[-1]
        return
    _delete_whole(conn, [workflow_id], purged)


def _prune_events(
    conn: sa.Connection, before: datetime, after: int, purged: Purged
) -> int | None:
    """Delete the next events older than ``before``, in id order, past ``after``.

    Events are numbered as they are written, so the old ones come first: the
    pruning stops at the first event that is not old enough. Returns where
    the next chunk starts, or None when done.
    """
    rows = conn.execute(
        sa.select(events.c.id, events.c.at)
        .where(events.c.id > after)
        .order_by(events.c.id)
        .limit(EVENTS_PER_CHUNK)
    ).all()
    old = []
    for row in rows:
        if (aware(row.at) or before) >= before:
            break
        old.append(row.id)
    if old:
        purged.events += conn.execute(
            sa.delete(events).where(
                events.c.id > after, events.c.id <= old[-1], events.c.at < before
            )
        ).rowcount
    if len(old) < EVENTS_PER_CHUNK:
        return None
    return int(old[-1])
