"""Celery canvas → DAG of nodes and edges. Pure: no database, no broker.

Every Celery task becomes a TASK node that receives its single parent's
result (unless immutable). A group's result, and a chord's join, is a JOIN
node that collects its parents' results in order; it completes in the
database, so no ``chord_unlock`` task polls for it. An END node waits for
every leaf: its completion completes the workflow.

The walk follows what Celery itself does when a canvas is applied
(``celery/canvas.py``): which part gets the call's arguments and options,
how groups flatten, where ``link`` and ``link_error`` end up. The
differential tests (``tests/integration/test_canvas_differential.py``) run
each form both ways and compare.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, TypeAlias

from celery import Celery
from celery.canvas import Signature, _chain, chord, group

from celeriac.engine.arguments import check_storable
from celeriac.engine.call_options import sort_call_options
from celeriac.engine.canvas_calls import (
    ERRBACK_ONCE_OPTION,
    LABEL_OPTION,
    Call,
    body_options,
    call_args,
    execution_options,
    stored_signature,
    task_options,
)
from celeriac.engine.canvas_signatures import (
    as_signature,
    header_tasks,
    linked,
    listed,
    with_links,
    without_errbacks,
)
from celeriac.engine.canvas_steps import chain_steps, group_members
from celeriac.engine.inputs import check_submission
from celeriac.errors import InvalidCanvas, UnknownTask
from celeriac.records import MAX_ID_LENGTH, NewEdge, NewNode, NewWorkflow
from celeriac.states import EMPTY_GROUP_KEY, NodeKind

#: An errback to add for each task it guards, or the id of an errback node
#: that several tasks share (it runs once, whichever of them fails first).
Errback: TypeAlias = Signature | str


def compile_canvas(
    app: Celery,
    canvas: Any,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    name: str | None = None,
    metadata: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
) -> NewWorkflow:
    """Turn ``canvas`` (called as ``canvas(*args, **kwargs)``) into a workflow.

    ``options``: the call options, as ``canvas.apply_async(**options)``.
    """
    check_submission(canvas, name, metadata)
    sig = as_signature(app, canvas)
    given = sort_call_options(app, sig, options or {})
    if given.errbacks:
        sig = without_errbacks(sig)  # the call's replace the canvas's own
    check_storable(sig, args, kwargs, metadata)
    builder = _Builder(app)
    call = Call(
        tuple(args),
        dict(kwargs or {}),
        execution_options(given.options),
        given.links,
    )
    result_node = builder.add(sig, None, call, given.errbacks, None)
    if isinstance(sig, group):
        result_node = builder.group_result(result_node)
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
        frozen_ids=tuple(builder.frozen_ids),
    )


class _Builder:
    """Accumulates nodes and edges while walking a canvas."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.nodes: list[NewNode] = []
        self.edges: list[NewEdge] = []
        #: the ids tasks were frozen with (``sig.freeze()``), now node ids
        self.frozen_ids: list[str] = []
        self._waiting: dict[str, int] = {}
        self._has_children: set[str] = set()
        self._guards: dict[str, set[str]] = {}

    def add(
        self,
        sig: Signature,
        parent: str | None,
        call: Call,
        errbacks: Sequence[Errback],
        label: str | None,
    ) -> str:
        """Add ``sig`` fed by ``parent``; return the node holding its result."""
        sig = as_signature(self.app, sig)
        label = sig.options.get(LABEL_OPTION, label)
        if isinstance(sig, chord):
            return self._add_chord(sig, parent, call, errbacks, label)
        if isinstance(sig, group) and sig.options.get(ERRBACK_ONCE_OPTION):
            sig, shared = self._share_group_errbacks(sig, label)
            errbacks = _merged(errbacks, shared)
        errbacks = _merged(errbacks, self._errbacks_of(sig))
        if isinstance(sig, _chain):
            return self._add_chain(sig, parent, call, errbacks, label)
        if isinstance(sig, group):
            return self._add_group(sig, parent, call, errbacks, label)
        return self._add_task(sig, parent, call, errbacks, label)

    def _add_chain(
        self,
        sig: _chain,
        parent: str | None,
        call: Call,
        errbacks: Sequence[Errback],
        label: str | None,
    ) -> str:
        """Steps one after the other; the call goes to the first step only.

        The chain's callbacks are added to its last step's own, as
        ``chain.run`` does, so a last step that is a group calls them once
        per member, and one that is a chord after its body.
        """
        steps = chain_steps(self.app, sig)
        links = self._links(sig, call)
        if links:
            steps[-1] = with_links(steps[-1], links)
        first = Call(
            call_args(sig, call),
            call.kwargs,
            {**execution_options(sig.options), **call.options},
        )
        current = parent
        for index, step in enumerate(steps):
            current = self.add(
                step, current, first if index == 0 else Call(), errbacks, label
            )
        assert current is not None
        return current

    def _add_group(
        self,
        sig: group,
        parent: str | None,
        call: Call,
        errbacks: Sequence[Errback],
        label: str | None,
        guarded: list[str] | None = None,
    ) -> str:
        """Members side by side, each called with the call and the group's options.

        With ``guarded`` (a chord's group body), each member's errbacks also
        run if one of those header tasks fails, once per member.
        """
        links = self._links(sig, call)
        member_call = Call(
            call.args,
            call.kwargs,
            {**execution_options(sig.options), **call.options},
            links or None,
        )
        members = [
            self.add(member, parent, member_call, errbacks, label)
            if guarded is None
            else self._add_guarded(
                member, parent, member_call, errbacks, guarded, label
            )
            for member in group_members(self.app, sig)
        ]
        if guarded is not None:
            for one in group_members(self.app, sig):
                self._add_header_errbacks(one, guarded, label)
        if not members and parent is not None:
            # An empty group (or chord header) after a step still waits for
            # it, as Celery does, but collects nothing: its value is [].
            join = self._node(NodeKind.JOIN, None, {EMPTY_GROUP_KEY: True}, label)
            self._edge(parent, join, 0)
            return join
        join = self._node(NodeKind.JOIN, None, None, label)
        for position, member in enumerate(members):
            self._edge(member, join, position)
        return join

    def _add_chord(
        self,
        sig: chord,
        parent: str | None,
        call: Call,
        errbacks: Sequence[Errback],
        label: str | None,
    ) -> str:
        """The header as a group, then the body fed by its join.

        The call and the chord's options go to the header; the body gets the
        options too, except those that delay the header (``countdown``,
        ``eta``), and the chord's callbacks, as ``body.link()`` would.
        """
        options = {**execution_options(sig.options), **call.options}
        header_kwargs = dict(sig.kwargs.get("kwargs") or {})
        header_call = Call(
            call_args(sig, call), {**header_kwargs, **call.kwargs}, options
        )
        header_start = len(self.nodes)
        join = self._add_group(
            group(header_tasks(sig), app=self.app), parent, header_call, [], label
        )
        body = linked(
            self.app, as_signature(self.app, sig.body), self._links(sig, call)
        )
        body_call = Call(options=body_options(options))
        body_errbacks = _merged(errbacks, self._errbacks_of(sig))
        return self._add_chord_body(
            body, join, body_call, body_errbacks, self._tasks_since(header_start), label
        )

    def _add_chord_body(
        self,
        body: Signature,
        join: str,
        call: Call,
        errbacks: Sequence[Errback],
        header_tasks: list[str],
        label: str | None,
    ) -> str:
        """The body; its errbacks also run, once, if the header fails.

        Celery's ``chord_error_from_stack`` calls the errbacks of the body
        (of each member of a group body), the chord's and an enclosing
        chain's then; the header's tasks keep their own errbacks. A chord
        as the body keeps these for its own body (``chord.link_error`` puts
        them there): only those in its own options run on a header failure.
        """
        if isinstance(body, chord):
            return self._add_guarded(
                body, join, call, [], header_tasks, label, passed=errbacks
            )
        if isinstance(body, group):
            return self._add_group(
                body,
                join,
                call,
                _merged(errbacks, self._errbacks_of(body)),
                body.options.get(LABEL_OPTION, label),
                guarded=header_tasks,
            )
        return self._add_guarded(body, join, call, errbacks, header_tasks, label)

    def _share_group_errbacks(
        self, sig: group, label: str | None
    ) -> tuple[group, list[Errback]]:
        """One errback node for the group instead of one per member.

        ``group.link_error`` puts a copy of the errback on every member;
        with the option, the copies (and the group's own) become one node
        that every member's tasks share: it runs once, on the first failure.
        """
        members = group_members(self.app, sig)
        errback_sigs = _merged(
            self._errbacks_of(sig),
            [e for member in members for e in self._errbacks_of(member)],
        )
        shared: list[Errback] = [
            self._add_errback(e, label) for e in errback_sigs if not isinstance(e, str)
        ]
        options = {k: v for k, v in sig.options.items() if k != "link_error"}
        stripped = group(
            [without_errbacks(member) for member in members], app=self.app, **options
        )
        return stripped, shared

    def _add_header_errbacks(
        self, member: Signature, header_tasks: list[str], label: str | None
    ) -> None:
        """The errbacks inside ``member`` of a group body that a header failure calls.

        Celery calls, for each member, the errbacks of its result
        (``_result_errbacks``): a chord's and its body's in turn, a group's
        and its members'. Those beyond the member's own (``_add_guarded``
        shares these) run once per member when the header fails; the member
        never runs then, so its tasks keep their own.
        """
        own = self._errbacks_of(member)
        for errback in self._result_errbacks(member):
            if errback not in own and not isinstance(errback, str):
                node = self._add_errback(errback, label)
                for task in header_tasks:
                    self._guard(task, node)

    def _result_errbacks(self, sig: Signature) -> list[Errback]:
        sig = as_signature(self.app, sig)
        found = self._errbacks_of(sig)
        if isinstance(sig, chord):
            return _merged(found, self._result_errbacks(sig.body))
        for member in sig.tasks if isinstance(sig, group) else ():
            found = _merged(found, self._result_errbacks(member))
        return found

    def _add_guarded(
        self,
        sig: Signature,
        parent: str | None,
        call: Call,
        errbacks: Sequence[Errback],
        guarded: list[str],
        label: str | None,
        passed: Sequence[Errback] = (),
    ) -> str:
        """Add ``sig``; its own errbacks also run, once, if ``guarded`` fail.

        Each errback becomes one node, shared by ``sig``'s tasks and the
        ``guarded`` ones, so that it runs once, whichever fails first.
        ``passed``: more errbacks for ``sig``'s tasks, not run by ``guarded``.
        """
        shared = [
            errback if isinstance(errback, str) else self._add_errback(errback, label)
            for errback in _merged(errbacks, self._errbacks_of(sig))
        ]
        for errback_node in shared:
            for task in guarded:
                self._guard(task, errback_node)
        errbacks = _merged(passed, shared)
        return self.add(without_errbacks(sig), parent, call, errbacks, label)

    def _add_task(
        self,
        sig: Signature,
        parent: str | None,
        call: Call,
        errbacks: Sequence[Errback],
        label: str | None,
    ) -> str:
        self._check_task(sig)
        if sig.immutable:
            call_args, call_kwargs = tuple(sig.args), dict(sig.kwargs)
        else:
            call_args = call.args + tuple(sig.args)
            call_kwargs = {**sig.kwargs, **call.kwargs}
        options = task_options(sig, call.options)
        stored = stored_signature(sig, call_args, call_kwargs, options)
        node = self._node(NodeKind.TASK, sig.task, stored, label, self._frozen_id(sig))
        if parent is not None:
            self._edge(parent, node, 0)
        for errback in errbacks:
            if isinstance(errback, str):
                self._guard(node, errback)
            else:
                self._guard(node, self._add_errback(errback, label))
        for callback in self._links(sig, call):
            self.add(callback, node, Call(), [], label)
        return node

    def _add_errback(self, errback: Signature, label: str | None) -> str:
        """An ERRBACK node; only a failure of a task it guards releases it."""
        self._check_task(errback)
        stored = stored_signature(
            errback, tuple(errback.args), dict(errback.kwargs), errback.options
        )
        node = self._node(NodeKind.ERRBACK, errback.task, stored, label)
        self._waiting[node] = 1  # never released by success
        return node

    def _guard(self, task: str, errback_node: str) -> None:
        """Run ``errback_node`` if ``task`` fails."""
        guarded = self._guards.setdefault(errback_node, set())
        if task not in guarded:
            self.edges.append(NewEdge(task, errback_node, len(guarded), on_error=True))
            guarded.add(task)

    def _frozen_id(self, sig: Signature) -> str | None:
        """The id ``sig`` was frozen with, if any: its node's id, as natively."""
        task_id = sig.options.get("task_id")
        if task_id is None:
            return None
        if not isinstance(task_id, str) or not 0 < len(task_id) <= MAX_ID_LENGTH:
            raise InvalidCanvas(
                f"the task id of {sig.task} is not a string of 1 to "
                f"{MAX_ID_LENGTH} characters: {task_id!r}"
            )
        if task_id in self.frozen_ids:
            raise InvalidCanvas(f"two tasks of the canvas have the task id {task_id}")
        self.frozen_ids.append(task_id)
        return task_id

    def _check_task(self, sig: Signature) -> None:
        if sig.task not in self.app.tasks:
            raise UnknownTask(str(sig.task))
        inner = (
            sig.kwargs.get("task")
            if sig.task in ("celery.map", "celery.starmap")
            else None
        )
        if isinstance(inner, dict):
            self._check_task(as_signature(self.app, inner))

    def group_result(self, join: str) -> str:
        """The node holding what ``group.apply_async()`` returns, for ``join``.

        Celery returns the one member's own group result, not a list of it,
        when the member's result is a group's (``group(a | group(b, c))``
        gives ``[b, c]``).
        """
        kinds = {node.id: node.kind for node in self.nodes}
        parents = [edge.parent_id for edge in self.edges if edge.child_id == join]
        if len(parents) == 1 and kinds[parents[0]] == NodeKind.JOIN:
            return parents[0]
        return join

    def _links(self, sig: Signature, call: Call) -> list[Signature]:
        """The callbacks ``sig`` runs with: those of the call, else its own."""
        if call.links is not None:
            return call.links
        return listed(self.app, sig, "link")

    def _errbacks_of(self, sig: Signature) -> list[Errback]:
        return list(listed(self.app, sig, "link_error"))

    def _tasks_since(self, start: int) -> list[str]:
        return [n.id for n in self.nodes[start:] if n.kind == NodeKind.TASK]

    def _node(
        self,
        kind: str,
        task: str | None,
        signature: dict[str, Any] | None,
        label: str | None,
        node_id: str | None = None,
    ) -> str:
        node_id = node_id or str(uuid.uuid4())
        self.nodes.append(
            NewNode(node_id, len(self.nodes), kind, task, signature, 0, label)
        )
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


def _merged(first: Sequence[Errback], second: Sequence[Errback]) -> list[Errback]:
    """Both lists, each errback once (Celery does not link one twice)."""
    merged = list(first)
    merged.extend(errback for errback in second if errback not in merged)
    return merged
