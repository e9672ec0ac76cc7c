"""Reads: workflows, their nodes and attempts, counts; never the canvas."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from celeriac.errors import WorkflowNotFound
from celeriac.outlines import Clustered, Outline
from celeriac.records import (
    Attempt,
    Node,
    WorkflowCursor,
    WorkflowFilter,
    WorkflowRecord,
)
from celeriac.states import (
    NodeKind,
    NodeState,
    WorkflowState,
)
from celeriac.storage import (
    integrity,
    listing,
    progress,
    rows,
    workflow_steps,
)
from celeriac.storage.batches import PAGE
from celeriac.storage.database import retry_transient
from celeriac.storage.integrity import names_corruption
from celeriac.storage.outline import read_drawing
from celeriac.storage.schema import attempts, edges, nodes, workflows
from celeriac.storage.transactions import StoreBase

_N = NodeState
_W = WorkflowState


#: What a workflow's record holds: not its canvas and arguments, which grow
#: with the canvas, so that polling a workflow costs the same at any size.
_RECORD_COLUMNS = tuple(
    column for column in workflows.c if column.name not in ("canvas", "args", "kwargs")
)


#: What a ``Node`` shows: not the signature the node is published with.
_NODE_COLUMNS = tuple(column for column in nodes.c if column.name != "signature")


def _shown(bookkeeping: bool) -> sa.ColumnElement[bool]:
    """The nodes users see: tasks and errbacks; ``bookkeeping`` adds joins, END."""
    kinds = [NodeKind.TASK, NodeKind.ERRBACK]
    if bookkeeping:
        kinds += [NodeKind.JOIN, NodeKind.END]
    return nodes.c.kind.in_(kinds)


def _nodes_of_rows(
    conn: sa.Connection, workflow_id: str, node_rows: Sequence[Any]
) -> list[Node]:
    """``Node`` records for some of a workflow's node rows.

    Their attempts and parents are read by key: two short reads, whatever
    the workflow's size.
    """
    ids = [row.id for row in node_rows]
    attempt_rows = conn.execute(
        sa.select(attempts)
        .where(attempts.c.workflow_id == workflow_id, attempts.c.node_id.in_(ids))
        .order_by(attempts.c.number)
    ).all()
    edge_rows = conn.execute(
        sa.select(edges.c.parent_id, edges.c.child_id)
        .where(edges.c.workflow_id == workflow_id, edges.c.child_id.in_(ids))
        .order_by(edges.c.position)
    ).all()
    return _node_records(node_rows, attempt_rows, edge_rows)


def _node_records(
    node_rows: Sequence[Any], attempt_rows: Sequence[Any], edge_rows: Sequence[Any]
) -> list[Node]:
    """``Node`` records for node rows, with their attempts and parents."""
    by_node: dict[str, list[Attempt]] = {}
    for row in attempt_rows:
        by_node.setdefault(row.node_id, []).append(rows.attempt_record(row))
    parents: dict[str, list[str]] = {}
    for edge in edge_rows:
        parents.setdefault(edge.child_id, []).append(edge.parent_id)
    return [
        Node(
            id=row.id,
            task=row.task,
            state=integrity.node_state(row.workflow_id, row.id, row.state),
            kind=row.kind,
            position=row.position,
            attempts=by_node.get(row.id, []),
            result=row.result,
            error=f"{row.exc_type}: {row.exc_message}" if row.exc_type else None,
            exc_type=row.exc_type,
            label=row.label,
            parents=parents.get(row.id, []),
            progress=progress.node_progress(row),
            replaces=row.replaces,
        )
        for row in node_rows
    ]


class ReadStore(StoreBase):
    """Every read users and tools make."""

    @names_corruption
    @retry_transient
    def get_workflow(self, workflow_id: str) -> WorkflowRecord:
        """The workflow row; raises ``WorkflowNotFound``."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(*_RECORD_COLUMNS).where(workflows.c.id == workflow_id)
            ).first()
        if row is None:
            raise WorkflowNotFound(workflow_id)
        return rows.workflow_record(row)

    @retry_transient
    def workflow_ids_starting(self, prefix: str, limit: int) -> list[str]:
        """At most ``limit`` ids of workflows that start with ``prefix``, sorted."""
        query = (
            sa.select(workflows.c.id)
            .where(workflows.c.id.startswith(prefix, autoescape=True))
            .order_by(workflows.c.id)
            .limit(limit)
        )
        with self._read() as conn:
            return list(conn.execute(query).scalars())

    @names_corruption
    @retry_transient
    def workflow_state(self, workflow_id: str) -> str:
        """The workflow's current state; raises ``WorkflowNotFound``."""
        with self._read() as conn:
            return workflow_steps.workflow_state(conn, workflow_id, lock=None)

    @names_corruption
    @retry_transient
    def list_workflows(
        self,
        state: str | None = None,
        name: str | None = None,
        limit: int = 50,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        key: str | None = None,
    ) -> list[WorkflowRecord]:
        """Workflows, newest first, optionally filtered.

        ``created_after`` keeps those created at or after it,
        ``created_before`` those created before it; ``key``, the one
        submitted with that key.
        """
        where = WorkflowFilter(state, name, key, created_after, created_before)
        return self.workflow_page(where, limit)

    @names_corruption
    @retry_transient
    def workflow_page(
        self,
        where: WorkflowFilter,
        limit: int = 50,
        after: WorkflowCursor | None = None,
    ) -> list[WorkflowRecord]:
        """The newest ``limit`` workflows matching ``where``, below ``after``."""
        query = listing.page_query(_RECORD_COLUMNS, where, limit, after)
        with self._read() as conn:
            return [rows.workflow_record(row) for row in conn.execute(query)]

    @retry_transient
    def count_workflow_states(self, where: WorkflowFilter) -> dict[str, int]:
        """Workflows matching ``where`` in any state, counted by state."""
        with self._read() as conn:
            return listing.count_states(conn, where)

    @retry_transient
    def matching_workflow_ids(self, where: WorkflowFilter, limit: int) -> list[str]:
        """Ids of at most ``limit`` workflows matching ``where``, newest first."""
        with self._read() as conn:
            return listing.matching_ids(conn, where, limit)

    @names_corruption
    @retry_transient
    def outline(
        self, workflow_id: str, most_nodes: int, most_clusters: int
    ) -> Outline | Clustered:
        """What a drawing of the workflow needs: no values, no attempts.

        Every node and edge up to ``most_nodes`` nodes; past that, nodes
        counted by first parent, task and state (``storage/outline.py``).
        """
        with self._read() as conn:
            return read_drawing(conn, workflow_id, most_nodes, most_clusters)

    @names_corruption
    @retry_transient
    def list_nodes(self, workflow_id: str, bookkeeping: bool = False) -> list[Node]:
        """The workflow's task and errback nodes in canvas order, with attempts.

        ``bookkeeping`` adds the JOIN and END nodes the database completes,
        for drawing the whole graph.
        """
        with self._read() as conn:
            node_rows = conn.execute(
                sa.select(*_NODE_COLUMNS)
                .where(nodes.c.workflow_id == workflow_id, _shown(bookkeeping))
                .order_by(nodes.c.position)
            ).all()
            attempt_rows = conn.execute(
                sa.select(attempts)
                .where(attempts.c.workflow_id == workflow_id)
                .order_by(attempts.c.number)
            ).all()
            edge_rows = conn.execute(
                sa.select(edges.c.parent_id, edges.c.child_id)
                .where(edges.c.workflow_id == workflow_id)
                .order_by(edges.c.position)
            ).all()
        return _node_records(node_rows, attempt_rows, edge_rows)

    @names_corruption
    @retry_transient
    def node_page(
        self, workflow_id: str, after: int = -1, limit: int = PAGE
    ) -> tuple[list[Node], int | None]:
        """Up to ``limit`` of ``list_nodes``'s nodes past canvas position ``after``.

        With the position the next page starts after, None after the last
        page. Each page is one short read, whatever the workflow's size.
        """
        with self._read() as conn:
            node_rows = conn.execute(
                sa.select(*_NODE_COLUMNS)
                .where(
                    nodes.c.workflow_id == workflow_id,
                    nodes.c.position > after,
                    _shown(False),
                )
                .order_by(nodes.c.position)
                .limit(limit)
            ).all()
            page = _nodes_of_rows(conn, workflow_id, node_rows)
        last = node_rows[-1].position if len(node_rows) == limit else None
        return page, last

    @names_corruption
    @retry_transient
    def node_with_errbacks(
        self, workflow_id: str, node_id: str
    ) -> tuple[Node, list[Node]] | None:
        """One node with its attempts, and the errbacks guarding it (None: no node)."""
        guards = sa.select(edges.c.child_id).where(
            edges.c.workflow_id == workflow_id,
            edges.c.parent_id == node_id,
            edges.c.on_error,
        )
        with self._read() as conn:
            node_rows = conn.execute(
                sa.select(*_NODE_COLUMNS)
                .where(
                    nodes.c.workflow_id == workflow_id,
                    sa.or_(nodes.c.id == node_id, nodes.c.id.in_(guards)),
                )
                .order_by(nodes.c.position)
            ).all()
            found = _nodes_of_rows(conn, workflow_id, node_rows)
        node = next((n for n in found if n.id == node_id), None)
        if node is None:
            return None
        return node, [n for n in found if n.id != node_id]

    @names_corruption
    @retry_transient
    def node_arguments(
        self, workflow_id: str, node_id: str
    ) -> tuple[list[Any], dict[str, Any]] | None:
        """The args and kwargs of one node's signature: a read of its row alone.

        None: no such node, or one that calls no task (JOIN, END).
        """
        with self._read() as conn:
            signature = conn.execute(
                sa.select(nodes.c.signature).where(
                    nodes.c.workflow_id == workflow_id, nodes.c.id == node_id
                )
            ).scalar()
        if signature is None:
            return None
        return list(signature.get("args") or ()), dict(signature.get("kwargs") or {})

    @retry_transient
    def count_nodes(
        self, workflow_id: str, label: str | None = None
    ) -> dict[tuple[str, str], int]:
        """How many nodes there are of each (kind, state)."""
        query = (
            sa.select(nodes.c.kind, nodes.c.state, sa.func.count())
            .where(nodes.c.workflow_id == workflow_id)
            .group_by(nodes.c.kind, nodes.c.state)
        )
        if label is not None:
            query = query.where(nodes.c.label == label)
        with self._read() as conn:
            return {(kind, state): count for kind, state, count in conn.execute(query)}

    @names_corruption
    @retry_transient
    def count_task_progress(
        self, workflow_id: str, label: str | None = None
    ) -> tuple[dict[str, int], float]:
        """TASK nodes by state, and how much of the running ones' work is done."""
        with self._read() as conn:
            return progress.task_counts(conn, workflow_id, label)
