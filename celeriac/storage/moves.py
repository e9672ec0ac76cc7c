"""Node state moves, each with its event: by id, or set-based in SQL.

Every function takes the open connection of the caller's transaction and
never commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from celeriac.states import NodeState
from celeriac.storage.batches import chunks
from celeriac.storage.event_log import LAST_EVENT, add_event, flush_events
from celeriac.storage.schema import StateName, Timestamp, events, nodes

_N = NodeState
#: The states of a node that has not finished and is not running.
UNFINISHED = (_N.PENDING, _N.QUEUED, _N.RETRYING)


def unindexed(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """``column`` in a form no index serves.

    A condition on it then filters the rows a statement's key found: with
    ``state`` as it is, SQLite looked a chunk of node ids up through the
    index on (workflow_id, state), reading every node of the workflow in
    that state for each chunk.
    """
    return sa.func.coalesce(column, column)


def set_node_state(
    conn: sa.Connection,
    workflow_id: str,
    node_ids: Sequence[str] | None,
    sources: Sequence[str],
    dest: str,
    at: datetime,
    kind: str | None = None,
) -> list[str]:
    """Move nodes in one of ``sources`` to ``dest``, with an event each.

    Returns the ids moved. ``node_ids`` None moves every such node of the
    workflow in set-based SQL (``move_all``), and returns [] then.
    """
    if node_ids is None:
        move_all(conn, workflow_id, sources, dest, at, kind)
        return []
    finished = at if dest in (_N.CANCELLED, _N.SKIPPED) else None
    moved: list[str] = []
    for chunk in chunks(node_ids):
        query = sa.select(nodes.c.id, nodes.c.state).where(
            nodes.c.workflow_id == workflow_id,
            unindexed(nodes.c.state).in_(sources),
            nodes.c.id.in_(chunk),
        )
        if kind is not None:
            query = query.where(nodes.c.kind == kind)
        rows = conn.execute(query).all()
        if not rows:
            continue
        ids = [row.id for row in rows]
        conn.execute(
            sa.update(nodes)
            .where(nodes.c.workflow_id == workflow_id, nodes.c.id.in_(ids))
            .values(state=dest, finished_at=finished)
        )
        for row in rows:
            add_event(conn, workflow_id, row.id, row.state, dest, at)
        moved.extend(ids)
    return moved


def move_all(
    conn: sa.Connection,
    workflow_id: str,
    sources: Sequence[str],
    dest: str,
    at: datetime,
    kind: str | None = None,
) -> int:
    """Move every node of the workflow in one of ``sources`` to ``dest``.

    Set-based, for any number of nodes: no id goes through Python, and each
    node's event is written by the database. Returns how many moved.
    """
    finished = at if dest in (_N.CANCELLED, _N.SKIPPED) else None
    where = [] if kind is None else [nodes.c.kind == kind]
    return sum(
        move_where(
            conn, workflow_id, where, source, dest, at, {"finished_at": finished}
        )
        for source in sources
    )


_EVENT_COLUMNS = ("workflow_id", "node_id", "from_state", "to_state", "at")


def move_where(
    conn: sa.Connection,
    workflow_id: str,
    where: Sequence[sa.ColumnElement[bool]],
    source: str,
    dest: str,
    at: datetime,
    values: dict[str, Any],
) -> int:
    """Move the workflow's nodes in ``source`` that match ``where`` to ``dest``.

    ``values`` are more columns to set. One UPDATE and one INSERT of their
    events from a SELECT: on PostgreSQL the events come from the UPDATE's
    RETURNING, so they name exactly the rows it moved; SQLite serializes
    writers, so the SELECT before the UPDATE sees the same rows. Returns how
    many nodes moved.
    """
    flush_events(conn)  # the events stay in the order things happened
    condition = sa.and_(
        nodes.c.workflow_id == workflow_id, nodes.c.state == source, *where
    )
    update = sa.update(nodes).where(condition).values(state=dest, **values)
    constants = (
        sa.literal(source, StateName),
        sa.literal(dest, StateName),
        sa.literal(at, Timestamp),
    )
    if conn.dialect.name == "postgresql":
        moved = update.returning(nodes.c.workflow_id, nodes.c.id).cte("moved")
        rows = sa.select(moved.c.workflow_id, moved.c.id, *constants)
        return conn.execute(events.insert().from_select(_EVENT_COLUMNS, rows)).rowcount
    number = LAST_EVENT.scalar_subquery() + sa.func.row_number().over(
        order_by=nodes.c.position
    )
    rows = (
        sa.select(number, nodes.c.workflow_id, nodes.c.id, *constants)
        .where(condition)
        .order_by(nodes.c.position)
    )
    conn.execute(events.insert().from_select(("id", *_EVENT_COLUMNS), rows))
    return conn.execute(update).rowcount


def queued_values(at: Any) -> dict[str, Any]:
    """What marking a node QUEUED at ``at`` writes, by column."""
    return {
        "state": _N.QUEUED,
        "queued_at": at,
        "republished": 0,
        "attempt_base": nodes.c.current_attempt,
        "celery_task_id": nodes.c.id,
    }


def running_values(number: Any, at: Any) -> dict[str, Any]:
    """What a claim of attempt ``number`` at ``at`` writes, by column."""
    return {
        "state": _N.RUNNING,
        "current_attempt": number,
        "celery_task_id": nodes.c.id,
        "started_at": sa.func.coalesce(nodes.c.started_at, at),
    }


_MARK_QUEUED = (
    sa.update(nodes)
    .where(
        nodes.c.workflow_id == sa.bindparam("b_wf"),
        nodes.c.id.in_(sa.bindparam("b_ids", expanding=True)),
        unindexed(nodes.c.state) == sa.bindparam("b_source"),
    )
    .values(**queued_values(sa.bindparam("b_at", type_=Timestamp)))
    .returning(nodes.c.id)
)


def mark_queued(
    conn: sa.Connection, workflow_id: str, ids: list[str], source: str, at: datetime
) -> set[str]:
    """Mark the nodes among ``ids`` still in ``source`` QUEUED; return those.

    The state is checked in the UPDATE itself: of two transactions that both
    read a node as ``source`` (two failures queueing one shared errback),
    the second moves nothing and must not publish it.
    """
    moved: set[str] = set()
    for chunk in chunks(ids):
        found = conn.execute(
            _MARK_QUEUED,
            {"b_wf": workflow_id, "b_ids": list(chunk), "b_source": source, "b_at": at},
        )
        moved.update(found.scalars())
    for node_id in ids:
        if node_id in moved:
            add_event(conn, workflow_id, node_id, source, _N.QUEUED, at)
    return moved
