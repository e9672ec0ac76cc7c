"""Where a canvas's ``link_error`` errbacks go: ERRBACK nodes and the tasks they guard.

An errback is either a signature, added as one node per task it guards, or
the id of an ERRBACK node that several tasks share: it runs once, whichever
of them fails first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

from celery import Celery
from celery.canvas import Signature, chord, group

from celeriac.engine.canvas_signatures import as_signature, listed, without_errbacks
from celeriac.engine.canvas_steps import group_members
from celeriac.engine.graph_builder import GraphBuilder

#: An errback to add for each task it guards, or the id of an errback node
#: that several tasks share (it runs once, whichever of them fails first).
Errback: TypeAlias = Signature | str


def merged(first: Sequence[Errback], second: Sequence[Errback]) -> list[Errback]:
    """Both lists, each errback once (Celery does not link one twice)."""
    both = list(first)
    both.extend(errback for errback in second if errback not in both)
    return both


def errbacks_of(app: Celery, sig: Signature) -> list[Errback]:
    """The errbacks in ``sig``'s own ``link_error`` option."""
    return list(listed(app, sig, "link_error"))


def attach_errbacks(
    graph: GraphBuilder, task: str, errbacks: Sequence[Errback], label: str | None
) -> None:
    """Run each of ``errbacks`` if ``task`` fails: a new node, or a shared one."""
    for errback in errbacks:
        if isinstance(errback, str):
            graph.guard(task, errback)
        else:
            graph.guard(task, graph.errback_node(errback, label))


def share_errbacks(
    graph: GraphBuilder,
    errbacks: Sequence[Errback],
    guarded: list[str],
    label: str | None,
) -> list[str]:
    """Each errback as one node, run if one of the ``guarded`` tasks fails.

    Return the nodes' ids, for more tasks to share them.
    """
    shared = [
        errback if isinstance(errback, str) else graph.errback_node(errback, label)
        for errback in errbacks
    ]
    for errback_node in shared:
        for task in guarded:
            graph.guard(task, errback_node)
    return shared


def share_group_errbacks(
    graph: GraphBuilder, sig: group, label: str | None
) -> tuple[group, list[Errback]]:
    """One errback node for the group instead of one per member.

    ``group.link_error`` puts a copy of the errback on every member;
    with the option, the copies (and the group's own) become one node
    that every member's tasks share: it runs once, on the first failure.
    """
    members = group_members(graph.app, sig)
    errback_sigs = merged(
        errbacks_of(graph.app, sig),
        [e for member in members for e in errbacks_of(graph.app, member)],
    )
    shared: list[Errback] = [
        graph.errback_node(e, label) for e in errback_sigs if not isinstance(e, str)
    ]
    options = {k: v for k, v in sig.options.items() if k != "link_error"}
    stripped = group(
        [without_errbacks(member) for member in members], app=graph.app, **options
    )
    return stripped, shared


def add_header_errbacks(
    graph: GraphBuilder, member: Signature, header_tasks: list[str], label: str | None
) -> None:
    """The errbacks inside ``member`` of a group body that a header failure calls.

    Celery calls, for each member, the errbacks of its result
    (``_result_errbacks``): a chord's and its body's in turn, a group's
    and its members'. Those beyond the member's own (``share_errbacks``
    shares these) run once per member when the header fails; the member
    never runs then, so its tasks keep their own.
    """
    own = errbacks_of(graph.app, member)
    for errback in _result_errbacks(graph.app, member):
        if errback not in own and not isinstance(errback, str):
            node = graph.errback_node(errback, label)
            for task in header_tasks:
                graph.guard(task, node)


def _result_errbacks(app: Celery, sig: Signature) -> list[Errback]:
    sig = as_signature(app, sig)
    found = errbacks_of(app, sig)
    if isinstance(sig, chord):
        return merged(found, _result_errbacks(app, sig.body))
    for member in sig.tasks if isinstance(sig, group) else ():
        found = merged(found, _result_errbacks(app, member))
    return found
