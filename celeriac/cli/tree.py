"""``celeriac show``: a workflow's nodes as a tree, drawn in a table.

It draws the nodes ``Store.list_nodes(..., bookkeeping=True)`` reads, except the
END node. A node is drawn under its parent: the task it follows in a chain,
the task an errback guards. A node with several parents is drawn once, under
the deepest node all of its parents hang from (at the top when there is
none), with a note naming them by number: an errback a whole group shares
(``celeriac_errback_once``) reads "on error of #2, #3" beside the group.

A group's results are collected by a JOIN node, drawn as a "group results"
line that names the tasks it collects, under their common ancestor; the task
after the group (a chord's body) hangs under it. Only task and errback nodes
are numbered, in canvas order, so that #N is the Nth node of ``show --json``.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice

from rich.markup import escape
from rich.table import Table

from celeriac import Node
from celeriac.cli.render import LISTED_KINDS, duration_text, styled
from celeriac.states import NodeKind

JOIN_LABEL = "group results"
#: At most this many numbers or ranges name a node's parents in a note.
NAMED_PARTS = 4
#: The widest guide drawn before a node's name: five levels of the tree.
GUIDE_WIDTH = 15


@dataclass
class Branch:
    """One line of the tree: a node and the branches under it."""

    node: Node
    #: the node's number in ``show --json``; None for a join
    number: int | None
    parents: list[str]
    children: list[Branch] = field(default_factory=list)
    note: str = ""


def node_tree(nodes: Sequence[Node], limit: int | None = None) -> Table:
    """The nodes as a table whose TASK column draws the tree.

    Only the TASK and ERROR columns wrap, so that a long name or note never
    squeezes the others out at 80 columns. ``limit``: at most that many rows,
    the first in the tree's order.
    """
    drawn = [node for node in nodes if node.kind != NodeKind.END]
    errors = any(node.error for node in drawn)
    table = Table("#", "NODE", "TASK", "STATE", "ATTEMPTS", "DURATION")
    for column in table.columns:
        column.no_wrap = True
    table.columns[2].no_wrap = False
    table.columns[2].overflow = "fold"
    if errors:
        table.add_column("ERROR", overflow="fold", ratio=1)
    for deep_guide, branch in islice(walk(build(drawn)), limit):
        guide = capped(deep_guide)
        node = branch.node
        join = node.kind == NodeKind.JOIN
        task = JOIN_LABEL if join else node.task or node.kind
        note = f" [dim]({escape(branch.note)})[/]" if branch.note else ""
        row = [
            str(branch.number or ""),
            node.id[:8],
            f"{guide}{escape(task)}{note}",
            styled(node.state),
            "" if join else str(len(node.attempts)),
            "" if join else duration_text(node),
        ]
        table.add_row(*row, *([escape(node.error or "")] if errors else []))
    return table


def capped(guide: str) -> str:
    """A guide at most :data:`GUIDE_WIDTH` wide: deeper levels start with ``⋯``.

    A chain of 40 steps is 40 levels deep; drawn in full, its last names
    would be pushed out of an 80-column TASK column.
    """
    if len(guide) <= GUIDE_WIDTH:
        return guide
    return "⋯" + guide[len(guide) - GUIDE_WIDTH + 1 :]


def build(nodes: Sequence[Node]) -> list[Branch]:
    """The tree's top branches; every node is in it once."""
    listed = [node for node in nodes if node.kind in LISTED_KINDS]
    numbers = {node.id: number for number, node in enumerate(listed, 1)}
    known = {node.id for node in nodes}
    replacing: dict[str, set[str]] = {}
    for node in nodes:
        if node.replaces is not None:
            replacing.setdefault(node.replaces, set()).add(node.id)
    branches = {
        node.id: Branch(
            node,
            numbers.get(node.id),
            # a parent not given (a join, from a list without them) would
            # keep the node out of the tree: it goes to the top instead
            [parent for parent in _tree_parents(node, replacing) if parent in known],
        )
        for node in nodes
    }
    top: list[Branch] = []
    paths: dict[str, tuple[str, ...]] = {}
    for branch in _parents_first(branches):
        holder = _deepest_common([paths[parent] for parent in branch.parents])
        paths[branch.node.id] = (*(paths[holder] if holder else ()), branch.node.id)
        (branches[holder].children if holder else top).append(branch)
        branch.note = _note(branch, holder, branches)
    return top


def _tree_parents(node: Node, replacing: dict[str, set[str]]) -> list[str]:
    """The nodes ``node`` hangs from in the tree.

    Its parents; the first nodes of a replacement (``Task.replace``) hang
    from the node they replace, which does not hang from its replacement.
    """
    if node.replaces is not None and not node.parents:
        return [node.replaces]
    own = replacing.get(node.id, set())
    return [parent for parent in dict.fromkeys(node.parents) if parent not in own]


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
    ready = [(branches[key].node.position, key) for key, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    while ready:
        _, key = heapq.heappop(ready)
        yield branches[key]
        for child in children.get(key, []):
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, (branches[child].node.position, child))


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
    errback = branch.node.kind == NodeKind.ERRBACK
    if not branch.parents:
        return ""
    if branch.parents == [holder]:
        if branch.node.replaces == holder:
            return "replacement"
        return "on error" if errback else ""
    names = named_list([branches[parent] for parent in branch.parents])
    if branch.node.kind == NodeKind.JOIN:
        return f"of {names}"
    return f"on error of {names}" if errback else f"after {names}"


def named_list(branches: Sequence[Branch]) -> str:
    """``#2, #3``, runs of three or more as ``#2-#1001``, at most a few parts.

    A group of 1,000 members reads ``#2-#1001``; scattered numbers end in
    ``… (60 in all)`` after :data:`NAMED_PARTS` parts.
    """
    numbers = [branch.number for branch in branches if branch.number]
    parts = [_run_text(run) for run in _runs(numbers)]
    parts += [JOIN_LABEL] * (len(branches) - len(numbers))
    if len(parts) > NAMED_PARTS:
        parts = [*parts[:NAMED_PARTS], f"… ({len(branches)} in all)"]
    return ", ".join(parts)


def _runs(numbers: list[int]) -> list[list[int]]:
    """Consecutive numbers, grouped: [2, 3, 4, 7] -> [[2, 3, 4], [7]]."""
    runs: list[list[int]] = []
    for number in numbers:
        if runs and runs[-1][-1] + 1 == number:
            runs[-1].append(number)
        else:
            runs.append([number])
    return runs


def _run_text(run: list[int]) -> str:
    if len(run) >= 3:
        return f"#{run[0]}-#{run[-1]}"
    return ", ".join(f"#{number}" for number in run)
