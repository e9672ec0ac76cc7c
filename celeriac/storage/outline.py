"""A workflow's graph without its values: what drawing it needs, and no more.

``Store.list_nodes`` builds a full ``Node`` (results, attempts, progress) for
each node; a drawing of a group of 100,000 needs only ids, task names, states
and edges, read as plain tuples in two queries.
"""

from __future__ import annotations

from typing import NamedTuple

import sqlalchemy as sa

from celeriac.states import NodeKind
from celeriac.storage import integrity
from celeriac.storage.schema import edges, nodes

#: The kinds drawn: END, after every other node, would only add clutter.
DRAWN_KINDS = (NodeKind.TASK, NodeKind.ERRBACK, NodeKind.JOIN)


class OutlineNode(NamedTuple):
    """One node as a drawing shows it."""

    id: str
    task: str | None
    kind: str
    state: str
    label: str | None


class Outline(NamedTuple):
    """The nodes in canvas order, and the edges between them (parent, child)."""

    nodes: list[OutlineNode]
    edges: list[tuple[str, str]]


def read_outline(conn: sa.Connection, workflow_id: str) -> Outline:
    """The drawn nodes of ``workflow_id`` and the edges between them."""
    node_rows = conn.execute(
        sa.select(nodes.c.id, nodes.c.task, nodes.c.kind, nodes.c.state, nodes.c.label)
        .where(nodes.c.workflow_id == workflow_id, nodes.c.kind.in_(DRAWN_KINDS))
        .order_by(nodes.c.position)
    ).all()
    drawn = [
        OutlineNode(
            row.id,
            row.task,
            row.kind,
            integrity.node_state(workflow_id, row.id, row.state),
            row.label,
        )
        for row in node_rows
    ]
    ids = {node.id for node in drawn}
    edge_rows = conn.execute(
        sa.select(edges.c.parent_id, edges.c.child_id)
        .where(edges.c.workflow_id == workflow_id)
        .order_by(edges.c.position)
    ).all()
    kept = [(p, c) for p, c in edge_rows if p in ids and c in ids]
    return Outline(drawn, kept)
