"""``celeriac show``: a workflow's nodes as a tree, drawn in a table.

A node is drawn under its parent: the task it follows in a chain, the task
an errback guards. A node with several parents is drawn once, under the
deepest node all of its parents hang from (at the top when there is none),
with a note naming them by number: an errback a whole group shares
(``celeriac_errback_once``) reads "on error of #2, #3" beside the group.

The task after a group (a chord's body) follows a join, the bookkeeping node
where the group's results are collected. ``Workflow.nodes()`` lists task and
errback nodes only, so a join is drawn as a "group results" line of its own,
and without its own parents (the group's tasks), which the nodes do not name:
it starts a branch at the top, with the tasks after it beneath.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from math import inf

from rich.markup import escape
from rich.table import Table

from celeriac import Node
from celeriac.cli.render import duration_text, styled
from celeriac.states import NodeKind

JOIN_LABEL = "group results"


@dataclass
class Branch:
    """One line of the tree: a node (None for a join not listed) and its children."""

    key: str
    node: Node | None
    number: int | None
    #: canvas order; a join not listed goes just before its first child
    position: float
    parents: list[str]
    children: list[Branch] = field(default_factory=list)
    note: str = ""


def node_tree(nodes: Sequence[Node]) -> Table:
    """The nodes as a table whose TASK column draws the tree."""
    errors = any(node.error for node in nodes)
    table = Table("#", "NODE", "TASK", "STATE", "ATTEMPTS", "DURATION")
    table.columns[2].no_wrap = True
    if errors:
        table.add_column("ERROR")
    for guide, branch in walk(build(nodes)):
        node = branch.node
        if node is None or node.kind == NodeKind.JOIN:
            task = JOIN_LABEL
        else:
            task = node.task or node.kind
        note = f" [dim]({escape(branch.note)})[/]" if branch.note else ""
        row = [
            str(branch.number or ""),
            branch.key[:8],
            f"{guide}{escape(task)}{note}",
            styled(node.state) if node else "",
            str(len(node.attempts)) if node else "",
            duration_text(node) if node else "",
        ]
        error = escape(node.error or "") if node else ""
        table.add_row(*row, *([error] if errors else []))
    return table


def build(nodes: Sequence[Node]) -> list[Branch]:
    """The tree's top branches; every node is in it once."""
    branches = {
        node.id: Branch(
            node.id, node, number, node.position, list(dict.fromkeys(node.parents))
        )
        for number, node in enumerate(nodes, 1)
    }
    for node in nodes:
        for parent in node.parents:
            # a join not listed has no position: it goes just before its first child
            join = branches.setdefault(parent, Branch(parent, None, None, inf, []))
            if join.node is None:
                join.position = min(join.position, node.position - 0.5)
    top: list[Branch] = []
    paths: dict[str, tuple[str, ...]] = {}
    for branch in _parents_first(branches):
        holder = _deepest_common([paths[parent] for parent in branch.parents])
        paths[branch.key] = (*(paths[holder] if holder else ()), branch.key)
        (branches[holder].children if holder else top).append(branch)
        branch.note = _note(branch, holder, branches)
    return top


def walk(top: list[Branch]) -> Iterator[tuple[str, Branch]]:
    """Each branch, depth first, with the guide that draws its place in the tree."""
    for branch in top:
        yield "", branch
        yield from _walk_under(branch, "")


def _walk_under(branch: Branch, lead: str) -> Iterator[tuple[str, Branch]]:
    for index, child in enumerate(branch.children):
        last = index == len(branch.children) - 1
        yield lead + ("└─ " if last else "├─ "), child
        yield from _walk_under(child, lead + ("   " if last else "│  "))


def _parents_first(branches: dict[str, Branch]) -> Iterator[Branch]:
    """Every branch after its parents; of those ready, the first in canvas order."""
    children: dict[str, list[str]] = {}
    waiting = {key: len(branch.parents) for key, branch in branches.items()}
    for key, branch in branches.items():
        for parent in branch.parents:
            children.setdefault(parent, []).append(key)
    ready = [(branches[key].position, key) for key, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    while ready:
        _, key = heapq.heappop(ready)
        yield branches[key]
        for child in children.get(key, []):
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, (branches[child].position, child))


def _deepest_common(paths: list[tuple[str, ...]]) -> str | None:
    """The last key all ``paths`` (from the top) share, or None."""
    if not paths:
        return None
    common = paths[0]
    for path in paths[1:]:
        shared = 0
        while shared < min(len(common), len(path)) and common[shared] == path[shared]:
            shared += 1
        common = common[:shared]
    return common[-1] if common else None


def _note(branch: Branch, holder: str | None, branches: dict[str, Branch]) -> str:
    """Why the branch sits where it does, when its place does not say it all."""
    errback = branch.node is not None and branch.node.kind == NodeKind.ERRBACK
    if not branch.parents:
        return ""
    if branch.parents == [holder]:
        return "on error" if errback else ""
    names = ", ".join(_name(branches[parent]) for parent in branch.parents)
    return f"on error of {names}" if errback else f"after {names}"


def _name(branch: Branch) -> str:
    return f"#{branch.number}" if branch.number else JOIN_LABEL
