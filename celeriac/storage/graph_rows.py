"""A compiled graph's edge and node rows, written into a workflow.

Shared by a submit, which writes a whole workflow, and a replacement
(``Task.replace``), which adds nodes and edges to a running one. Takes the
open connection of the caller's transaction and never commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

import sqlalchemy as sa

from celeriac.records import EdgeSink, NewEdge, NewNode
from celeriac.states import NodeKind, NodeState
from celeriac.storage import bulk
from celeriac.storage.releases import Ready
from celeriac.storage.schema import edges, nodes


def insert_graph(
    conn: sa.Connection,
    workflow_id: str,
    new_nodes: Sequence[NewNode],
    new_edges: Iterable[NewEdge],
    at: datetime,
    offset: int = 0,
    replaces: str | None = None,
    queue_roots: bool = False,
) -> list[Ready]:
    """Insert the edges and the nodes (PENDING, positions after ``offset``).

    As ``insert_nodes``, which says what is returned.
    """
    with edge_writer(conn, workflow_id) as write:
        for edge in new_edges:
            write(edge)
    return insert_nodes(conn, workflow_id, new_nodes, at, offset, replaces, queue_roots)


@contextmanager
def edge_writer(conn: sa.Connection, workflow_id: str) -> Iterator[EdgeSink]:
    """A function that stores one edge of the workflow, for the block's length.

    A submit hands it to the canvas walk, so that the database stores the
    edges while the walk makes the nodes (``bulk.row_writer``).
    """
    with bulk.row_writer(
        conn,
        edges,
        ("parent_id", "child_id", "position", "on_error"),
        {"workflow_id": workflow_id},
    ) as write:
        yield lambda e: write((e.parent_id, e.child_id, e.position, e.on_error))


def insert_nodes(
    conn: sa.Connection,
    workflow_id: str,
    new_nodes: Sequence[NewNode],
    at: datetime,
    offset: int = 0,
    replaces: str | None = None,
    queue_roots: bool = False,
) -> list[Ready]:
    """Insert the nodes (PENDING, positions after ``offset``).

    ``replaces``: the node whose task replaced itself with these.
    ``queue_roots``: the tasks that wait for nothing are written QUEUED
    (the workflow runs), saving an update of each (``releases.release_roots``
    goes on from there). Returns the
    nodes that wait for nothing (errbacks aside): the graph's roots, in
    the state they were written in.
    """

    def state(node: NewNode) -> tuple[str, datetime | None]:
        if queue_roots and node.waiting == 0 and node.kind == NodeKind.TASK:
            return NodeState.QUEUED, at
        return NodeState.PENDING, None

    bulk.insert_rows(
        conn,
        nodes,
        (
            "id",
            "position",
            "kind",
            "task",
            "label",
            "signature",
            "waiting",
            "state",
            "queued_at",
        ),
        (
            (
                n.id,
                offset + n.position,
                n.kind,
                n.task,
                n.label,
                n.signature,
                n.waiting,
                *state(n),
            )
            for n in new_nodes
        ),
        {"workflow_id": workflow_id, "created_at": at, "replaces": replaces},
    )
    return [
        Ready(n.id, n.kind, n.signature, 0, offset + n.position, state(n)[0])
        for n in new_nodes
        if n.waiting == 0 and n.kind != NodeKind.ERRBACK
    ]
