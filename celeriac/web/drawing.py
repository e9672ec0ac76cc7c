"""The DAG as boxes and lines for an SVG, nodes coloured by state.

Boxes are laid out top to bottom by depth (the longest path from a root).
Up to :data:`COLLAPSE_ABOVE` nodes (:data:`EXPAND_LIMIT` when the user
expands), each node is a box. Past that, the nodes of one task under the
same first parent (a group, a chord's header) are one box that counts them
by state, as the database counted them; and when even those are too many (a
chain of thousands of steps), one box per task, without edges.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from celeriac import Clustered, Outline
from celeriac.states import NodeKind, NodeState

#: Drawn one box per node up to this many nodes (unless expanded).
COLLAPSE_ABOVE = 300
#: Drawn one box per node up to this many nodes when the user expands.
EXPAND_LIMIT = 3000
#: Boxes a collapsed drawing may have before it counts by task alone.
MAX_CLUSTERS = 400
BOX_WIDTH, BOX_HEIGHT, GAP_X, GAP_Y, MARGIN = 170, 44, 16, 36, 10
K = TypeVar("K", bound=Hashable)
#: Which state names a collapsed box, the first present in this order.
_PRECEDENCE = (
    NodeState.FAILED,
    NodeState.RUNNING,
    NodeState.RETRYING,
    NodeState.QUEUED,
    NodeState.PENDING,
    NodeState.REPLACED,
    NodeState.CANCELLED,
    NodeState.SUCCEEDED,
    NodeState.SKIPPED,
)


@dataclass
class Box:
    """One box: a node, or several nodes counted by state."""

    task: str
    kind: str
    counts: Counter[str] = field(default_factory=Counter)
    node_id: str | None = None
    x: int = 0
    y: int = 0

    @property
    def state(self) -> str:
        """The node's state, or the most telling one of the box's nodes."""
        return next((s for s in _PRECEDENCE if self.counts[s]), "")

    @property
    def size(self) -> int:
        """How many nodes the box stands for."""
        return sum(self.counts.values())

    @property
    def summary(self) -> str:
        """``12 SUCCEEDED, 3 RUNNING``: the box's nodes by state."""
        return ", ".join(f"{n} {s}" for s, n in self.counts.most_common())


@dataclass(frozen=True)
class Drawing:
    """Boxes and lines ready for the SVG, and whether nodes were collapsed."""

    boxes: list[Box]
    lines: list[tuple[int, int, int, int]]
    width: int
    height: int
    collapsed: bool
    nodes: int
    #: False when boxes count nodes by task alone, with no edges
    structured: bool = True


def depths(keys: Iterable[K], edges: Sequence[tuple[K, K]]) -> dict[K, int]:
    """Each key's depth: 0 for a root, else one more than its deepest parent."""
    children: dict[K, list[K]] = defaultdict(list)
    waiting: dict[K, int] = dict.fromkeys(keys, 0)
    for parent, child in edges:
        children[parent].append(child)
        waiting[child] += 1
    depth = dict.fromkeys(waiting, 0)
    ready = [key for key, n in waiting.items() if n == 0]
    while ready:
        key = ready.pop()
        for child in children[key]:
            depth[child] = max(depth[child], depth[key] + 1)
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    return depth


def _name(task: str | None, kind: str) -> str:
    return task or ("join" if kind == NodeKind.JOIN else kind.lower())


def draw(source: Outline | Clustered) -> Drawing:
    """Lay out a workflow's nodes (an ``Outline``) or its clusters."""
    if isinstance(source, Outline):
        boxes = {
            node.id: Box(
                _name(node.task, node.kind),
                node.kind,
                Counter({node.state: 1}),
                node.id,
            )
            for node in source.nodes
        }
        return _laid_out(boxes, source.edges, False, len(source.nodes), True)
    clustered: dict[tuple[str | None, str | None, str], Box] = {}
    for cluster in source.clusters:
        key = (cluster.parent_id, cluster.task, cluster.kind)
        box = clustered.get(key)
        if box is None:
            box = clustered[key] = Box(_name(cluster.task, cluster.kind), cluster.kind)
        box.counts[cluster.state] += cluster.nodes
    edges = [
        (source.parents[key[0]], key)
        for key in clustered
        if key[0] is not None and source.parents.get(key[0]) in clustered
    ]
    return _laid_out(clustered, edges, True, source.total, source.structured)


def _laid_out(
    boxes: Mapping[K, Box],
    edges: Sequence[tuple[K, K]],
    collapsed: bool,
    total: int,
    structured: bool,
) -> Drawing:
    depth = depths(boxes, edges)
    rows: dict[int, list[Box]] = defaultdict(list)
    for key, box in boxes.items():
        rows[depth[key]].append(box)
    for y, row in enumerate(sorted(rows)):
        for x, box in enumerate(rows[row]):
            box.x = MARGIN + x * (BOX_WIDTH + GAP_X)
            box.y = MARGIN + y * (BOX_HEIGHT + GAP_Y)
    lines = sorted(
        {
            (
                boxes[a].x + BOX_WIDTH // 2,
                boxes[a].y + BOX_HEIGHT,
                boxes[b].x + BOX_WIDTH // 2,
                boxes[b].y,
            )
            for a, b in edges
            if a != b
        }
    )
    width = max((b.x for b in boxes.values()), default=0) + BOX_WIDTH + MARGIN
    height = max((b.y for b in boxes.values()), default=0) + BOX_HEIGHT + MARGIN
    return Drawing(
        list(boxes.values()), lines, width, height, collapsed, total, structured
    )
