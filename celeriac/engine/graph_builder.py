"""The node and edge records a compiled canvas becomes, and their waiting counts.

A node waits for as many parents as point to it; an ERRBACK node waits for
one more that never comes, so only a failure of a task it guards releases
it. ``close`` adds the END node after every leaf.
"""

from __future__ import annotations

import uuid
from typing import Any

from celery import Celery
from celery.canvas import Signature

from celeriac.engine.canvas_calls import stored_signature
from celeriac.engine.canvas_signatures import as_signature
from celeriac.errors import InvalidCanvas, ReplacementTooLarge, UnknownTask
from celeriac.records import MAX_ID_LENGTH, EdgeSink, NewEdge, NewNode
from celeriac.states import NodeKind


class GraphBuilder:
    """Accumulates nodes, and hands out edges, while a canvas is walked."""

    def __init__(
        self, app: Celery, edge_sink: EdgeSink, max_nodes: int | None = None
    ) -> None:
        """An empty graph; more than ``max_nodes`` raise ``ReplacementTooLarge``.

        Each edge goes to ``edge_sink`` as it is made: the graph keeps none.
        """
        self.app = app
        self.nodes: list[NewNode] = []
        self._edge_sink = edge_sink
        #: the ids tasks were frozen with (``sig.freeze()``), now node ids
        self.frozen_ids: list[str] = []
        self._frozen: set[str] = set()
        self._max_nodes = max_nodes
        self._waiting: dict[str, int] = {}
        self._has_children: set[str] = set()
        self._guards: dict[str, set[str]] = {}
        #: the parents of each JOIN node, in order
        self._join_parents: dict[str, list[str]] = {}

    def node(
        self,
        kind: str,
        task: str | None,
        signature: dict[str, Any] | None,
        label: str | None,
        node_id: str | None = None,
    ) -> str:
        """Add a node waiting for nothing yet; return its id."""
        if self._max_nodes is not None and len(self.nodes) >= self._max_nodes:
            raise ReplacementTooLarge(self._max_nodes)
        node_id = node_id or str(uuid.uuid4())
        self.nodes.append(
            NewNode(node_id, len(self.nodes), kind, task, signature, 0, label)
        )
        self._waiting[node_id] = 0
        if kind == NodeKind.JOIN:
            self._join_parents[node_id] = []
        return node_id

    def edge(self, parent: str, child: str, position: int) -> None:
        """Make ``child`` wait for ``parent``, whose result is its ``position``th."""
        self._edge_sink(NewEdge(parent, child, position))
        self._waiting[child] += 1
        self._has_children.add(parent)
        parents = self._join_parents.get(child)
        if parents is not None:
            parents.append(parent)

    def errback_node(self, errback: Signature, label: str | None) -> str:
        """An ERRBACK node; only a failure of a task it guards releases it."""
        self.check_task(errback)
        stored = stored_signature(
            errback, tuple(errback.args), dict(errback.kwargs), errback.options
        )
        node = self.node(NodeKind.ERRBACK, errback.task, stored, label)
        self._waiting[node] = 1  # never released by success
        return node

    def guard(self, task: str, errback_node: str) -> None:
        """Run ``errback_node`` if ``task`` fails."""
        guarded = self._guards.setdefault(errback_node, set())
        if task not in guarded:
            self._edge_sink(NewEdge(task, errback_node, len(guarded), on_error=True))
            guarded.add(task)

    def frozen_id(self, sig: Signature) -> str | None:
        """The id ``sig`` was frozen with, if any: its node's id, as natively."""
        task_id = sig.options.get("task_id")
        if task_id is None:
            return None
        if not isinstance(task_id, str) or not 0 < len(task_id) <= MAX_ID_LENGTH:
            raise InvalidCanvas(
                f"the task id of {sig.task} is not a string of 1 to "
                f"{MAX_ID_LENGTH} characters: {task_id!r}"
            )
        if task_id in self._frozen:
            raise InvalidCanvas(f"two tasks of the canvas have the task id {task_id}")
        self.frozen_ids.append(task_id)
        self._frozen.add(task_id)
        return task_id

    def check_task(self, sig: Signature) -> None:
        """Refuse a task the app does not know, or a map over one."""
        if sig.task not in self.app.tasks:
            raise UnknownTask(str(sig.task))
        inner = (
            sig.kwargs.get("task")
            if sig.task in ("celery.map", "celery.starmap")
            else None
        )
        if isinstance(inner, dict):
            self.check_task(as_signature(self.app, inner))

    def tasks_since(self, start: int) -> list[str]:
        """The TASK nodes added since there were ``start`` nodes."""
        return [n.id for n in self.nodes[start:] if n.kind == NodeKind.TASK]

    def group_result(self, join: str) -> str:
        """The node holding what ``group.apply_async()`` returns, for ``join``.

        Celery returns the one member's own group result, not a list of it,
        when the member's result is a group's (``group(a | group(b, c))``
        gives ``[b, c]``).
        """
        parents = self._join_parents.get(join, [])
        if len(parents) == 1 and parents[0] in self._join_parents:
            return parents[0]
        return join

    def leaves(self) -> list[str]:
        """The nodes nothing waits for (errbacks aside), in canvas order."""
        return [
            n.id
            for n in self.nodes
            if n.kind != NodeKind.ERRBACK and n.id not in self._has_children
        ]

    def close(self) -> None:
        """Add the END node after every leaf, and fix each node's waiting count."""
        leaves = self.leaves()
        end = self.node(NodeKind.END, None, None, None)
        for position, leaf in enumerate(leaves):
            self.edge(leaf, end, position)
        self.fix_waiting()

    def fix_waiting(self) -> None:
        """Give each node its waiting count: the parents pointing to it."""
        self.nodes = [
            NewNode(
                n.id,
                n.position,
                n.kind,
                n.task,
                n.signature,
                self._waiting[n.id],
                n.label,
            )
            for n in self.nodes
        ]
