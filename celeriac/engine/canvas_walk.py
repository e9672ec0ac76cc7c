"""The walk over a canvas: one step per kind of part (task, chain, group, chord).

Each part becomes nodes and edges fed by its parent's node, and the walk
returns the node holding the part's result: a TASK node for a task, a JOIN
node for a group or a chord's header. Which part gets the call's arguments,
options and callbacks follows what Celery does when it applies the canvas.
"""

from __future__ import annotations

from collections.abc import Sequence

from celery.canvas import Signature, _chain, chord, group

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
from celeriac.engine.canvas_errbacks import (
    Errback,
    add_header_errbacks,
    attach_errbacks,
    errbacks_of,
    merged,
    share_errbacks,
    share_group_errbacks,
)
from celeriac.engine.canvas_signatures import (
    as_signature,
    header_tasks,
    linked,
    listed,
    with_links,
    without_errbacks,
)
from celeriac.engine.canvas_steps import chain_steps, chords_of_groups, group_members
from celeriac.engine.graph_builder import GraphBuilder
from celeriac.states import EMPTY_GROUP_KEY, NodeKind


class CanvasWalker:
    """Adds a canvas's parts to ``graph``, one kind of part per method."""

    def __init__(self, graph: GraphBuilder) -> None:
        self.graph = graph
        self.app = graph.app

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
            sig, shared = share_group_errbacks(self.graph, sig, label)
            errbacks = merged(errbacks, shared)
        errbacks = merged(errbacks, errbacks_of(self.app, sig))
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

        Each group followed by a step is first made a chord of the two, as
        Celery's ``prepare_steps`` does (``chords_of_groups``). The chain's
        callbacks are then added to its last step's own, as ``chain.run``
        does, so a last step that is a group calls them once per member, and
        one that is a chord after its body (a group body: its first member
        only, immutable, as ``chord.link()`` links them).
        """
        steps = chords_of_groups(self.app, chain_steps(self.app, sig))
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
                add_header_errbacks(self.graph, one, guarded, label)
        if not members and parent is not None:
            # An empty group (or chord header) after a step still waits for
            # it, as Celery does, but collects nothing: its value is [].
            join = self.graph.node(NodeKind.JOIN, None, {EMPTY_GROUP_KEY: True}, label)
            self.graph.edge(parent, join, 0)
            return join
        join = self.graph.node(NodeKind.JOIN, None, None, label)
        for position, member in enumerate(members):
            self.graph.edge(member, join, position)
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
        header_start = len(self.graph.nodes)
        join = self._add_group(
            group(header_tasks(sig), app=self.app), parent, header_call, [], label
        )
        body = linked(
            self.app, as_signature(self.app, sig.body), self._links(sig, call)
        )
        body_call = Call(options=body_options(options))
        body_errbacks = merged(errbacks, errbacks_of(self.app, sig))
        return self._add_chord_body(
            body,
            join,
            body_call,
            body_errbacks,
            self.graph.tasks_since(header_start),
            label,
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
                merged(errbacks, errbacks_of(self.app, body)),
                body.options.get(LABEL_OPTION, label),
                guarded=header_tasks,
            )
        return self._add_guarded(body, join, call, errbacks, header_tasks, label)

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
        shared = share_errbacks(
            self.graph, merged(errbacks, errbacks_of(self.app, sig)), guarded, label
        )
        errbacks = merged(passed, shared)
        return self.add(without_errbacks(sig), parent, call, errbacks, label)

    def _add_task(
        self,
        sig: Signature,
        parent: str | None,
        call: Call,
        errbacks: Sequence[Errback],
        label: str | None,
    ) -> str:
        """A TASK node, called with the call's arguments unless immutable."""
        self.graph.check_task(sig)
        if sig.immutable:
            args, kwargs = tuple(sig.args), dict(sig.kwargs)
        else:
            args = call.args + tuple(sig.args)
            kwargs = {**sig.kwargs, **call.kwargs}
        stored = stored_signature(sig, args, kwargs, task_options(sig, call.options))
        node = self.graph.node(
            NodeKind.TASK, sig.task, stored, label, self.graph.frozen_id(sig)
        )
        if parent is not None:
            self.graph.edge(parent, node, 0)
        attach_errbacks(self.graph, node, errbacks, label)
        for callback in self._links(sig, call):
            self.add(callback, node, Call(), [], label)
        return node

    def _links(self, sig: Signature, call: Call) -> list[Signature]:
        """The callbacks ``sig`` runs with: those of the call, else its own."""
        if call.links is not None:
            return call.links
        return listed(self.app, sig, "link")
