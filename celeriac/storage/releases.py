"""Releases: what a finished node lets go on, along the edges to its children.

Joins and END complete in the database, the tasks that may start are marked
QUEUED, the errbacks of a failure are queued. Every function takes the open
connection of the caller's transaction and never commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from celeriac.records import Dispatch
from celeriac.states import (
    EMPTY_GROUP_KEY,
    NodeKind,
    NodeState,
    held_back_as,
    may_start,
)
from celeriac.storage import integrity
from celeriac.storage.dispatches import DISPATCH_COLUMNS, load_dispatches
from celeriac.storage.event_log import add_event
from celeriac.storage.moves import mark_queued, set_node_state
from celeriac.storage.rows import now
from celeriac.storage.schema import edges, nodes

_N = NodeState
#: The states of a node that waits for its parents: a REPLACED one waits for
#: its replacement.
_WAITING = (_N.PENDING, _N.REPLACED)


#: What release() needs of a node whose parents all finished.
READY_COLUMNS = (
    nodes.c.id,
    nodes.c.kind,
    nodes.c.signature,
    nodes.c.current_attempt,
    nodes.c.position,
)


#: The edges from ``b_parent`` to the children it counts for.
CHILD_EDGES = (
    edges.c.workflow_id == sa.bindparam("b_wf"),
    edges.c.parent_id == sa.bindparam("b_parent"),
    edges.c.on_error.is_(False),
)


def _decrement_children(dialect: str) -> sa.Update:
    """One more finished parent for each child of ``b_parent``, in ``b_wf``."""
    if dialect == "postgresql":
        # the children's ids first (an InitPlan), then each node by its key:
        # as a join, a planner without statistics of a new workflow's nodes
        # scanned them all for each edge
        ids = sa.select(sa.func.array_agg(edges.c.child_id)).where(*CHILD_EDGES)
        array = sa.cast(ids.scalar_subquery(), postgresql.ARRAY(nodes.c.id.type))
        children = nodes.c.id == sa.any_(array)
    else:
        children = nodes.c.id.in_(sa.select(edges.c.child_id).where(*CHILD_EDGES))
    return (
        sa.update(nodes)
        .where(nodes.c.workflow_id == sa.bindparam("b_wf"), children)
        .values(waiting=nodes.c.waiting - 1)
        .returning(*READY_COLUMNS, nodes.c.waiting, nodes.c.state)
    )


#: ``_decrement_children`` for each dialect.
DECREMENT_CHILDREN = {
    dialect: _decrement_children(dialect) for dialect in ("postgresql", "sqlite")
}


def decrement_children(
    conn: sa.Connection, workflow_id: str, parent_id: str
) -> list[Any]:
    """Count one more finished parent for each child; return those now ready."""
    rows = conn.execute(
        DECREMENT_CHILDREN[conn.dialect.name],
        {"b_wf": workflow_id, "b_parent": parent_id},
    ).all()
    return now_ready(rows)


def now_ready(rows: Iterable[Any]) -> list[Any]:
    """The children in ``rows`` (as ``DECREMENT_CHILDREN`` returns them) now ready."""
    return [row for row in rows if row.waiting == 0 and row.state in _WAITING]


def release_time(ready: Sequence[Any], at: datetime) -> datetime:
    """When a success that read the time ``at`` releases the nodes ``ready``.

    A join has several parents. The success of its last one may have waited
    for the transaction of another, which read its time after ``at`` and
    committed first: a join released, and what follows it, take the time
    now, after that wait, so that nothing ends or starts before a parent
    ended. A task has one parent: its start, run in place, is the instant
    its parent ended.
    """
    return now() if any(row.kind != NodeKind.TASK for row in ready) else at


class Ready(NamedTuple):
    """A node release() acts on, known to be ready without reading it."""

    id: str
    kind: str
    signature: dict[str, Any] | None
    current_attempt: int
    position: int
    state: str = _N.PENDING


def release(
    conn: sa.Connection,
    workflow_id: str,
    state: str,
    ready: Sequence[Any],
    inputs: tuple[Any, ...],
    at: datetime,
) -> tuple[list[Dispatch], bool]:
    """Act on nodes whose parents all finished (``READY_COLUMNS`` or ``Ready``).

    Joins and END complete here, in the database, and so does a REPLACED
    task, with its replacement's result; task nodes are marked QUEUED for
    dispatch while a task may start (``states.may_start``), put aside
    otherwise, but left PENDING while the workflow pauses. ``inputs`` is
    what the finished parent hands its children: ``(result,)``, or ``()``
    for the roots of a workflow.
    """
    if not ready:
        return [], False
    rows = sorted(ready, key=lambda row: row.position)
    dispatch: list[Dispatch] = []
    finished = False
    tasks = []
    for row in rows:
        replaced = row.state == _N.REPLACED
        if row.kind == NodeKind.TASK and not replaced:
            tasks.append(row)
            continue
        joined = inputs[0] if replaced else None
        if row.kind == NodeKind.JOIN:
            empty = (row.signature or {}).get(EMPTY_GROUP_KEY)
            joined = [] if empty else join_value(conn, workflow_id, row.id)
        if replaced:
            add_event(conn, workflow_id, row.id, _N.REPLACED, _N.SUCCEEDED, at)
        conn.execute(
            sa.update(nodes)
            .where(nodes.c.workflow_id == workflow_id, nodes.c.id == row.id)
            .values(state=_N.SUCCEEDED, result=joined, finished_at=at)
        )
        if row.kind == NodeKind.END:
            finished = True
            continue
        children = decrement_children(conn, workflow_id, row.id)
        more, done = release(conn, workflow_id, state, children, (joined,), at)
        dispatch.extend(more)
        finished = finished or done
    if tasks and may_start(NodeKind.TASK, state):
        dispatch.extend(_queue(conn, workflow_id, tasks, inputs, at))
    elif tasks and held_back_as(state) != _N.PENDING:
        ids = [row.id for row in tasks]
        set_node_state(conn, workflow_id, ids, (_N.PENDING,), held_back_as(state), at)
    return dispatch, finished


def release_roots(
    conn: sa.Connection,
    workflow_id: str,
    state: str,
    roots: Sequence[Any],
    at: datetime,
) -> tuple[list[Dispatch], bool]:
    """``release`` for a new graph's roots (``graph_rows.insert_nodes``).

    Those written QUEUED are dispatched as they are; the others (joins, END,
    tasks written PENDING) released.
    """
    queued = [root for root in roots if root.state == _N.QUEUED]
    others = [root for root in roots if root.state != _N.QUEUED]
    dispatch, finished = release(conn, workflow_id, state, others, (), at)
    return dispatch + queued_already(conn, workflow_id, queued, (), at), finished


def _queue(
    conn: sa.Connection,
    workflow_id: str,
    rows: Sequence[Any],
    inputs: tuple[Any, ...],
    at: datetime,
) -> list[Dispatch]:
    """Mark PENDING ``rows`` QUEUED; the dispatches of those this moved."""
    moved = mark_queued(conn, workflow_id, [row.id for row in rows], _N.PENDING, at)
    return _dispatches(workflow_id, [row for row in rows if row.id in moved], inputs)


def queued_already(
    conn: sa.Connection,
    workflow_id: str,
    rows: Sequence[Any],
    inputs: tuple[Any, ...],
    at: datetime,
    logged: bool = False,
) -> list[Dispatch]:
    """The dispatches of nodes written QUEUED as they became ready.

    Roots a submit wrote QUEUED (``graph_rows.insert_nodes``), or children
    a success queued (``successes``). Their events are added unless
    ``logged`` (written already).
    """
    if not logged:
        for row in rows:
            add_event(conn, workflow_id, row.id, _N.PENDING, _N.QUEUED, at)
    return _dispatches(workflow_id, rows, inputs)


def _dispatches(
    workflow_id: str, rows: Sequence[Any], inputs: tuple[Any, ...]
) -> list[Dispatch]:
    return [
        Dispatch(
            row.id,
            workflow_id,
            integrity.signature(workflow_id, row.id, row.signature),
            inputs,
            row.current_attempt,
            row.kind,
        )
        for row in rows
    ]


def children_of() -> sa.Join:
    """The edges joined to the nodes they lead to, by the nodes' key."""
    return edges.join(
        nodes,
        sa.and_(
            nodes.c.workflow_id == edges.c.workflow_id, nodes.c.id == edges.c.child_id
        ),
    )


def join_value(conn: sa.Connection, workflow_id: str, node_id: str) -> list[Any]:
    """The results of the node's parents along its success edges, in order.

    Each parent's result is looked up by its key, one edge at a time. As a
    join of the two tables, PostgreSQL planned a scan of all the workflow's
    nodes for each parent while its tables had no statistics (a new
    database, or autovacuum off): a chord of 4,000 took 1.6 s, not 7 ms.
    """
    parent = nodes.alias("parent")
    result = (
        sa.select(parent.c.result)
        .where(
            parent.c.workflow_id == edges.c.workflow_id,
            parent.c.id == edges.c.parent_id,
        )
        .scalar_subquery()
    )
    query = (
        sa.select(result.label("result"))
        .where(
            edges.c.workflow_id == workflow_id,
            edges.c.child_id == node_id,
            edges.c.on_error.is_(False),
        )
        .order_by(edges.c.position)
    )
    return [row.result for row in conn.execute(query)]


def queue_errbacks(
    conn: sa.Connection, workflow_id: str, failed_id: str, at: datetime
) -> list[Dispatch]:
    """Queue the errbacks guarding ``failed_id`` that have not run yet."""
    rows = conn.execute(
        sa.select(nodes.c.id, nodes.c.signature, nodes.c.current_attempt, nodes.c.kind)
        .select_from(children_of())
        .where(
            edges.c.workflow_id == workflow_id,
            edges.c.parent_id == failed_id,
            edges.c.on_error.is_(True),
            nodes.c.state == _N.PENDING,
        )
        .order_by(nodes.c.position)
    ).all()
    return _queue(conn, workflow_id, rows, (failed_id,), at)


def replay_release(
    conn: sa.Connection, workflow_id: str, node_id: str, on_error: bool
) -> tuple[list[Dispatch], bool]:
    """What a node's committed outcome released, for a replayed transaction.

    Follows the node's edges (``on_error``: its errbacks) through the joins
    and the replaced nodes it completed, to the nodes queued but not started
    and to a finished END. Publishing one of them a second time is harmless:
    the second delivery is dropped when it is claimed.
    """
    queued: list[Any] = []
    finished = False
    frontier = [node_id]
    parent = nodes.alias("parent")
    while frontier:
        children = conn.execute(
            sa.select(
                *DISPATCH_COLUMNS,
                nodes.c.state,
                nodes.c.current_attempt,
                nodes.c.attempt_base.label("base"),
                (parent.c.replaces == nodes.c.id).label("replaced"),
            )
            .select_from(
                children_of().join(
                    parent,
                    sa.and_(
                        parent.c.workflow_id == edges.c.workflow_id,
                        parent.c.id == edges.c.parent_id,
                    ),
                )
            )
            .where(
                edges.c.workflow_id == workflow_id,
                edges.c.parent_id.in_(frontier),
                edges.c.on_error.is_(on_error),
            )
            .order_by(nodes.c.position)
        ).all()
        frontier = []
        for child in children:
            completed = child.kind == NodeKind.JOIN or child.replaced
            if completed and child.state == _N.SUCCEEDED:
                frontier.append(child.id)
            elif child.kind == NodeKind.END and child.state == _N.SUCCEEDED:
                finished = True
            elif child.state == _N.QUEUED and child.current_attempt == child.base:
                queued.append(child)
        on_error = False  # past the errbacks, only success edges lead on
    return (load_dispatches(conn, queued) if queued else []), finished
