"""Dispatches: node rows made into the messages to publish, with their inputs.

Every function takes the open connection of the caller's transaction and
never commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from celeriac.records import Dispatch
from celeriac.states import NodeState
from celeriac.storage import integrity
from celeriac.storage.batches import chunks
from celeriac.storage.schema import edges, nodes

_N = NodeState

#: The node columns ``load_dispatches`` reads; its rows add ``base``, the
#: node's attempt count when dispatched (``Dispatch.attempt_base``).
DISPATCH_COLUMNS = (
    nodes.c.id,
    nodes.c.workflow_id,
    nodes.c.signature,
    nodes.c.kind,
)


def queued_page(
    conn: sa.Connection, workflow_id: str, queued_at: datetime, after: int, limit: int
) -> tuple[list[Dispatch], int | None]:
    """Nodes queued at ``queued_at`` and still QUEUED, a page at a time.

    Up to ``limit`` of them past canvas position ``after``, in canvas order:
    their dispatches, and the position the next page starts after (None
    when this page was the last).
    """
    rows = conn.execute(
        sa.select(
            *DISPATCH_COLUMNS, nodes.c.attempt_base.label("base"), nodes.c.position
        )
        .where(
            nodes.c.workflow_id == workflow_id,
            nodes.c.position > after,
            nodes.c.state == _N.QUEUED,
            nodes.c.queued_at == queued_at,
        )
        .order_by(nodes.c.position)
        .limit(limit)
    ).all()
    last = rows[-1].position if len(rows) == limit else None
    return load_dispatches(conn, rows), last


class _Link(NamedTuple):
    """An edge into a node being dispatched, with what its parent holds."""

    child_id: str
    on_error: bool
    id: str
    state: str
    result: Any


def load_dispatches(conn: sa.Connection, rows: Sequence[Any]) -> list[Dispatch]:
    """Dispatches for node rows, with what their parents hand them.

    A task gets its parent's stored result; an errback the id of the parent
    that failed (Celery's old-style errback argument).
    """
    by_workflow: dict[str, list[str]] = {}
    for row in rows:  # recovery's rows come from several workflows
        by_workflow.setdefault(row.workflow_id, []).append(row.id)
    inputs: dict[str, tuple[Any, ...]] = {}
    for workflow_id, ids in by_workflow.items():
        for chunk in chunks(ids):
            _collect_inputs(_links(conn, workflow_id, chunk), inputs)
    return [
        Dispatch(
            row.id,
            row.workflow_id,
            integrity.signature(row.workflow_id, row.id, row.signature),
            inputs.get(row.id, ()),
            row.base,
            row.kind,
        )
        for row in rows
    ]


def _links(conn: sa.Connection, workflow_id: str, ids: Sequence[str]) -> list[_Link]:
    """The edges into nodes ``ids``, then their parents, each by its key.

    Two look-ups rather than a join: a planner without statistics of a new
    workflow's nodes joined them by scanning all of them.
    """
    found = conn.execute(
        sa.select(edges.c.child_id, edges.c.on_error, edges.c.parent_id).where(
            edges.c.workflow_id == workflow_id, edges.c.child_id.in_(ids)
        )
    ).all()
    parents: dict[str, Any] = {}
    for chunk in chunks(sorted({edge.parent_id for edge in found})):
        parents.update(
            (row.id, row)
            for row in conn.execute(
                sa.select(nodes.c.id, nodes.c.state, nodes.c.result).where(
                    nodes.c.workflow_id == workflow_id, nodes.c.id.in_(chunk)
                )
            )
        )
    return [
        _Link(
            edge.child_id,
            edge.on_error,
            edge.parent_id,
            parents[edge.parent_id].state,
            parents[edge.parent_id].result,
        )
        for edge in found
        if edge.parent_id in parents
    ]


def _collect_inputs(links: Sequence[Any], inputs: dict[str, tuple[Any, ...]]) -> None:
    """What each child gets from its parents' edges, into ``inputs``."""
    for link in links:
        if not link.on_error:
            inputs[link.child_id] = (link.result,)
        elif link.state == _N.FAILED:
            inputs.setdefault(link.child_id, (link.id,))
