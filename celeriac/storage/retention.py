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

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

from celeriac.states import NodeState, WorkflowState
from celeriac.storage.database import retry_transient
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

_W = WorkflowState
#: The states a workflow can be purged in.
FINISHED = (_W.COMPLETED, _W.FAILED, _W.CANCELLED)
#: Nodes (with their edges, attempts and events) one transaction deletes.
NODES_PER_CHUNK = 10_000
#: Workflows one transaction deletes, at most.
WORKFLOWS_PER_CHUNK = 200
#: Event rows one transaction deletes.
EVENTS_PER_CHUNK = 30_000
#: Worker rows are kept at least this long after their last heartbeat.
WORKER_RETENTION = timedelta(days=1)


@dataclass(frozen=True)
class Retention:
    """What a purge deletes; :meth:`of` checks what a caller asked for.

    Workflows in one of ``states`` that finished before ``workflows_before``
    (and are named ``name``, if given), with everything that belongs to them;
    event rows older than ``events_before``; worker rows whose last heartbeat
    is older than ``workers_before``.
    """

    workflows_before: datetime
    states: tuple[str, ...]
    name: str | None
    events_before: datetime
    workers_before: datetime

    @classmethod
    def of(
        cls,
        at: datetime,
        older_than: timedelta,
        states: Collection[str] | None = None,
        name: str | None = None,
        events_older_than: timedelta | None = None,
        workers_older_than: timedelta | None = None,
        worker_timeout: timedelta = timedelta(0),
    ) -> Retention:
        """The retention ``older_than`` before ``at``; ValueError if it makes no sense.

        Events keep ``older_than`` unless given their own; worker rows too,
        but at least :data:`WORKER_RETENTION`. A worker row must outlive
        ``worker_timeout``: while it exists, the worker's running nodes are
        its own.
        """
        chosen = _finished_states(states)
        events_older_than = _or(events_older_than, older_than)
        for what, age in (
            ("older_than", older_than),
            ("events_older_than", events_older_than),
            ("workers_older_than", workers_older_than or timedelta(0)),
        ):
            _check_age(what, age)
        if workers_older_than is None:
            workers_older_than = max(older_than, WORKER_RETENTION)
        if workers_older_than <= worker_timeout:
            raise ValueError(
                f"workers_older_than must be longer than the worker timeout "
                f"({worker_timeout.total_seconds():g} s): a worker row younger "
                "than that may belong to a live worker"
            )
        return cls(
            workflows_before=_before(at, older_than),
            states=chosen,
            name=name,
            events_before=_before(at, events_older_than),
            workers_before=_before(at, workers_older_than),
        )


def _before(at: datetime, age: timedelta) -> datetime:
    """``age`` before ``at``; the earliest time there is if that is earlier."""
    try:
        return at - age
    except OverflowError:
        return datetime.min.replace(tzinfo=at.tzinfo)


def _or(age: timedelta | None, default: timedelta) -> timedelta:
    return default if age is None else age


def _check_age(what: str, age: object) -> None:
    if not isinstance(age, timedelta):
        raise TypeError(f"{what} must be a timedelta, not {type(age).__name__}")
    if age < timedelta(0):
        raise ValueError(f"{what} must not be negative (got {age})")


def _finished_states(states: Collection[str] | None) -> tuple[str, ...]:
    """``states`` checked: finished states only, at least one."""
    if states is None:
        return tuple(str(state) for state in FINISHED)
    if isinstance(states, str):
        states = [states]
    chosen = tuple(str(state).upper() for state in states)
    if not chosen:
        raise ValueError("states is empty: name at least one finished state")
    refused = [state for state in chosen if state not in FINISHED]
    if refused:
        finished = ", ".join(FINISHED)
        raise ValueError(
            f"cannot purge workflows in state {', '.join(refused)}: "
            f"only finished workflows ({finished}) are purged"
        )
    return tuple(dict.fromkeys(chosen))


@dataclass
class Purged:
    """What a purge deleted (or, in a dry run, would delete)."""

    workflows: int = 0
    nodes: int = 0
    events: int = 0
    workers: int = 0


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
