"""Celery canvas → DAG of nodes and edges. Pure: no database, no broker.

Every Celery task becomes a TASK node that receives its single parent's
result (unless immutable). A group's result, and a chord's join, is a JOIN
node that collects its parents' results in order; it completes in the
database, so no ``chord_unlock`` task polls for it. An END node waits for
every leaf: its completion completes the workflow.
"""

from __future__ import annotations

import uuid
from typing import Any

from celery import Celery
from celery.canvas import Signature, _chain, _chord, chunks, group, maybe_signature
from kombu.utils.json import dumps

from celeriac.errors import InvalidCanvas, UnknownTask
from celeriac.records import NewEdge, NewNode, NewWorkflow
from celeriac.states import NodeKind

#: Options that describe Celery's own wiring of a canvas; celeriac replaces
#: that wiring with edges, so these never reach a node's message.
_WIRING_OPTIONS = frozenset(
    {
        "link",
        "link_error",
        "chord",
        "chain",
        "group_id",
        "group_index",
        "task_id",
        "parent_id",
        "root_id",
        "reply_to",
        "stamped_headers",
        "stamps",
    }
)
#: The signature option users set to name a part of a canvas (progress).
LABEL_OPTION = "celeriac_label"


def compile_canvas(
    app: Celery,
    canvas: Any,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    name: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> NewWorkflow:
    """Turn ``canvas`` (called as ``canvas(*args, **kwargs)``) into a workflow."""
    sig = _as_signature(app, canvas)
    try:
        dumps([sig, list(args), kwargs, metadata])
    except TypeError as exc:
        raise InvalidCanvas(
            f"the canvas, its arguments or metadata are not JSON: {exc}"
        ) from exc
    builder = _Builder(app)
    result_node = builder.add(sig, None, tuple(args), dict(kwargs or {}), [], None)
    builder.close()
    return NewWorkflow(
        id=str(uuid.uuid4()),
        name=name,
        canvas=dict(sig),
        args=list(args),
        kwargs=dict(kwargs or {}),
        metadata=metadata,
        result_node_id=result_node,
        nodes=builder.nodes,
        edges=builder.edges,
    )


def _as_signature(app: Celery, canvas: Any) -> Signature:
    if isinstance(canvas, dict):
        sig = maybe_signature(canvas, app=app)
        if isinstance(sig, Signature):
            return sig
    raise InvalidCanvas(
        f"expected a Celery signature, chain, group or chord, got {type(canvas).__name__}"
    )


class _Builder:
    """Accumulates nodes and edges while walking a canvas."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.nodes: list[NewNode] = []
        self.edges: list[NewEdge] = []
        self._waiting: dict[str, int] = {}
        self._has_children: set[str] = set()

    def add(
        self,
        sig: Signature,
        parent: str | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        errbacks: list[Signature],
        label: str | None,
    ) -> str:
        """Add ``sig`` fed by ``parent``; return the node holding its result."""
        sig = _as_signature(self.app, sig)
        label = sig.options.get(LABEL_OPTION, label)
        if isinstance(sig, _chord):
            return self._add_chord(sig, parent, args, kwargs, errbacks, label)
        errbacks = errbacks + _errbacks_of(self.app, sig)
        if isinstance(sig, chunks):
            return self.add(sig.group(), parent, args, kwargs, errbacks, label)
        if isinstance(sig, _chain):
            return self._add_chain(sig, parent, args, kwargs, errbacks, label)
        if isinstance(sig, group):
            return self._add_group(sig, parent, args, kwargs, errbacks, label)
        return self._add_task(sig, parent, args, kwargs, errbacks, label)

    def _add_chain(
        self,
        sig: _chain,
        parent: str | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        errbacks: list[Signature],
        label: str | None,
    ) -> str:
        steps = [_as_signature(self.app, step) for step in sig.tasks]
        if not steps:
            raise InvalidCanvas("an empty chain has nothing to run")
        if not sig.immutable:
            args = args + tuple(sig.args)
        current = parent
        for index, step in enumerate(steps):
            if isinstance(step, group) and len(step.tasks) == 1:
                step = _as_signature(self.app, step.tasks[0])
            first = index == 0
            current = self.add(
                step,
                current,
                args if first else (),
                kwargs if first else {},
                errbacks,
                label,
            )
        assert current is not None
        for callback in sig.options.get("link") or []:
            self._add_callback(callback, current, label)
        return current

    def _add_group(
        self,
        sig: group,
        parent: str | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        errbacks: list[Signature],
        label: str | None,
    ) -> str:
        members = [
            self.add(member, parent, args, kwargs, errbacks, label)
            for member in sig.tasks
        ]
        join = self._node(NodeKind.JOIN, None, None, label)
        for position, member in enumerate(members):
            self._edge(member, join, position)
        links = sig.options.get("link") or []
        if links and members:
            for callback in links:
                immutable = _as_signature(self.app, callback).clone().set(immutable=True)
                self._add_callback(immutable, members[0], label)
        return join

    def _add_chord(
        self,
        sig: _chord,
        parent: str | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        errbacks: list[Signature],
        label: str | None,
    ) -> str:
        header_start = len(self.nodes)
        header = group(list(sig.tasks), app=self.app)
        join = self._add_group(header, parent, args, kwargs, errbacks, label)
        header_tasks = [
            n.id for n in self.nodes[header_start:] if n.kind == NodeKind.TASK
        ]
        body = _as_signature(self.app, sig.body)
        # Celery calls the chord's and a plain body's errbacks once when the
        # header fails: one errback node guards every task of the chord.
        chord_errbacks = _errbacks_of(self.app, sig)
        if not isinstance(body, (_chain, group)):
            chord_errbacks += _errbacks_of(self.app, body)
            body = body.clone()
            body.options.pop("link_error", None)
        body_start = len(self.nodes)
        result = self.add(body, join, (), {}, errbacks, label)
        body_tasks = [n.id for n in self.nodes[body_start:] if n.kind == NodeKind.TASK]
        for errback in chord_errbacks:
            self._add_errback(errback, header_tasks + body_tasks, label)
        for callback in sig.options.get("link") or []:
            self._add_callback(callback, result, label)
        return result

    def _add_task(
        self,
        sig: Signature,
        parent: str | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        errbacks: list[Signature],
        label: str | None,
    ) -> str:
        self._check_task(sig)
        if sig.immutable:
            call_args, call_kwargs = tuple(sig.args), dict(sig.kwargs)
        else:
            call_args = args + tuple(sig.args)
            call_kwargs = {**sig.kwargs, **kwargs}
        node = self._node(NodeKind.TASK, sig.task, _stored_signature(sig, call_args, call_kwargs), label)
        if parent is not None:
            self._edge(parent, node, 0)
        for errback in errbacks:
            self._add_errback(errback, [node], label)
        for callback in sig.options.get("link") or []:
            self._add_callback(callback, node, label)
        return node

    def _add_callback(self, callback: Any, parent: str, label: str | None) -> None:
        self.add(_as_signature(self.app, callback), parent, (), {}, [], label)

    def _add_errback(self, errback: Signature, guarded: list[str], label: str | None) -> None:
        self._check_task(errback)
        stored = _stored_signature(errback, tuple(errback.args), dict(errback.kwargs))
        node = self._node(NodeKind.ERRBACK, errback.task, stored, label)
        self._waiting[node] = 1  # never released by success: only a failure runs it
        for position, target in enumerate(guarded):
            self.edges.append(NewEdge(target, node, position, on_error=True))

    def _check_task(self, sig: Signature) -> None:
        if sig.task not in self.app.tasks:
            raise UnknownTask(str(sig.task))
        inner = sig.kwargs.get("task") if sig.task in ("celery.map", "celery.starmap") else None
        if isinstance(inner, dict):
            self._check_task(_as_signature(self.app, inner))

    def _node(
        self, kind: str, task: str | None, signature: dict[str, Any] | None, label: str | None
    ) -> str:
        node_id = str(uuid.uuid4())
        self.nodes.append(NewNode(node_id, len(self.nodes), kind, task, signature, 0, label))
        self._waiting[node_id] = 0
        return node_id

    def _edge(self, parent: str, child: str, position: int) -> None:
        self.edges.append(NewEdge(parent, child, position))
        self._waiting[child] += 1
        self._has_children.add(parent)

    def close(self) -> None:
        """Add the END node after every leaf, and fix each node's waiting count."""
        leaves = [
            n.id
            for n in self.nodes
            if n.kind != NodeKind.ERRBACK and n.id not in self._has_children
        ]
        end = self._node(NodeKind.END, None, None, None)
        for position, leaf in enumerate(leaves):
            self._edge(leaf, end, position)
        self.nodes = [
            NewNode(n.id, n.position, n.kind, n.task, n.signature, self._waiting[n.id], n.label)
            for n in self.nodes
        ]


def _stored_signature(
    sig: Signature, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """The node's signature in Celery's dict form, without canvas wiring."""
    options = {
        key: value
        for key, value in sig.options.items()
        if key not in _WIRING_OPTIONS and key != LABEL_OPTION
    }
    return {
        "task": sig.task,
        "args": list(args),
        "kwargs": kwargs,
        "options": options,
        "subtask_type": None,
        "immutable": bool(sig.immutable),
    }


def _errbacks_of(app: Celery, sig: Signature) -> list[Signature]:
    return [_as_signature(app, e) for e in sig.options.get("link_error") or []]
