"""A workflow's graph without its values: what drawing it needs, and no more.

``Store.list_nodes`` builds a full ``Node`` (results, attempts, progress) for
each node. A drawing needs only ids, task names, states and edges
(:func:`read_outline`); and a drawing of a group of 100,000 needs not even
those: the database counts its nodes by first parent, task and state
(:func:`read_clusters`), so that Python sees a few rows, not 100,000.
"""

from __future__ import annotations

import sqlalchemy as sa

from celeriac.outlines import Cluster, Clustered, Outline, OutlineNode
from celeriac.states import NodeKind
from celeriac.storage import integrity
from celeriac.storage.schema import edges, nodes

#: The kinds drawn: END, after every other node, would only add clutter.
DRAWN_KINDS = (NodeKind.TASK, NodeKind.ERRBACK, NodeKind.JOIN)


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


def _with_first_parent(workflow_id: str) -> sa.Subquery:
    """Each drawn node with its first parent: one join on the edges' child index.

    Joined this way round, even a planner with no statistics yet (a table
    just filled) looks each node's edges up by index, never scans them all
    for each node.
    """
    return (
        sa.select(
            nodes.c.id,
            nodes.c.task,
            nodes.c.kind,
            nodes.c.state,
            nodes.c.position,
            sa.func.min(edges.c.parent_id).label("parent_id"),
        )
        .select_from(
            nodes.outerjoin(
                edges,
                sa.and_(
                    edges.c.child_id == nodes.c.id,
                    edges.c.workflow_id == workflow_id,
                ),
            )
        )
        .where(nodes.c.workflow_id == workflow_id, nodes.c.kind.in_(DRAWN_KINDS))
        .group_by(
            nodes.c.id, nodes.c.task, nodes.c.kind, nodes.c.state, nodes.c.position
        )
        .subquery()
    )


def read_clusters(
    conn: sa.Connection, workflow_id: str, limit: int
) -> list[Cluster] | None:
    """The drawn nodes counted by (first parent, task, kind, state), in SQL.

    A group of 100,000 under one parent is one cluster per state. None when
    there are more than ``limit`` clusters (a chain of 100,000 steps).
    """
    each = _with_first_parent(workflow_id)
    query = (
        sa.select(
            each.c.parent_id, each.c.task, each.c.kind, each.c.state, sa.func.count()
        )
        .group_by(each.c.parent_id, each.c.task, each.c.kind, each.c.state)
        .order_by(sa.func.min(each.c.position))
        .limit(limit + 1)
    )
    found = [Cluster(*row) for row in conn.execute(query)]
    return None if len(found) > limit else found


def read_cluster_keys(
    conn: sa.Connection, workflow_id: str, node_ids: list[str]
) -> dict[str, tuple[str | None, str | None, str]]:
    """For each of ``node_ids``: its cluster's (first parent, task, kind)."""
    query = (
        sa.select(
            nodes.c.id,
            sa.func.min(edges.c.parent_id).label("parent_id"),
            nodes.c.task,
            nodes.c.kind,
        )
        .select_from(
            nodes.outerjoin(
                edges,
                sa.and_(
                    edges.c.child_id == nodes.c.id,
                    edges.c.workflow_id == workflow_id,
                ),
            )
        )
        .where(nodes.c.workflow_id == workflow_id, nodes.c.id.in_(node_ids))
        .group_by(nodes.c.id, nodes.c.task, nodes.c.kind)
    )
    return {row.id: (row.parent_id, row.task, row.kind) for row in conn.execute(query)}


def count_by_task(conn: sa.Connection, workflow_id: str) -> list[Cluster]:
    """The drawn nodes counted by (task, kind, state) alone: no structure."""
    query = (
        sa.select(nodes.c.task, nodes.c.kind, nodes.c.state, sa.func.count())
        .where(nodes.c.workflow_id == workflow_id, nodes.c.kind.in_(DRAWN_KINDS))
        .group_by(nodes.c.task, nodes.c.kind, nodes.c.state)
        .order_by(sa.func.min(nodes.c.position))
    )
    return [Cluster(None, *row) for row in conn.execute(query)]


def read_drawing(
    conn: sa.Connection, workflow_id: str, most_nodes: int, most_clusters: int
) -> Outline | Clustered:
    """Every node up to ``most_nodes``; past that, clusters (or counts by task)."""
    total = conn.execute(
        sa.select(sa.func.count()).where(
            nodes.c.workflow_id == workflow_id, nodes.c.kind.in_(DRAWN_KINDS)
        )
    ).scalar_one()
    if total <= most_nodes:
        return read_outline(conn, workflow_id)
    clusters = read_clusters(conn, workflow_id, most_clusters)
    if clusters is None:
        return Clustered(count_by_task(conn, workflow_id), {}, False, total)
    parent_ids = sorted({c.parent_id for c in clusters if c.parent_id is not None})
    parents = read_cluster_keys(conn, workflow_id, parent_ids)
    return Clustered(clusters, parents, True, total)
