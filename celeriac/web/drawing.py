"""The DAG as boxes and lines for an SVG, nodes coloured by state.

Nodes are laid out top to bottom by depth (the longest path from a root).
Above :data:`COLLAPSE_ABOVE` nodes, the nodes of one task at one depth (a
group, a chord's header) become one box that counts them by state; a deep
chain is cut into at most :data:`MAX_BANDS` bands of depths first, so that a
drawing never has more than a few hundred boxes, whatever the canvas.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from celeriac.states import NodeKind, NodeState
from celeriac.storage.outline import Outline, OutlineNode

#: Drawn one box per node up to this many nodes (unless expanded).
COLLAPSE_ABOVE = 300
#: Drawn one box per node up to this many nodes when the user expands.
EXPAND_LIMIT = 3000
#: Bands of depth a collapsed drawing has at most.
MAX_BANDS = 60
BOX_WIDTH, BOX_HEIGHT, GAP_X, GAP_Y, MARGIN = 170, 44, 16, 36, 10
#: Which state names a collapsed box, the first present in this order.
_PRECEDENCE = (
    NodeState.FAILED,
    NodeState.RUNNING,
    NodeState.RETRYING,
    NodeState.QUEUED,
    NodeState.PENDING,
    NodeState.CANCELLED,
    NodeState.SUCCEEDED,
    NodeState.SKIPPED,
)


@dataclass
class Box:
    """One box: a node, or several nodes counted by state."""

    key: tuple[object, ...]
    #: the depth (or band of depths) it is drawn at
    row: int
    task: str
    kind: str
    counts: Counter[str] = field(default_factory=Counter)
    node_id: str | None = None
    x: int = 0
    y: int = 0

    @property
    def state(self) -> str:
        """The node's state, or the most telling one of the box's nodes."""
        return next(s for s in _PRECEDENCE if self.counts[s]) if self.counts else ""

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


def depths(outline: Outline) -> dict[str, int]:
    """Each node's depth: 0 for a root, else one more than its deepest parent."""
    parents: dict[str, list[str]] = defaultdict(list)
    children: dict[str, list[str]] = defaultdict(list)
    for parent, child in outline.edges:
        parents[child].append(parent)
        children[parent].append(child)
    waiting = {node.id: len(parents[node.id]) for node in outline.nodes}
    depth = dict.fromkeys(waiting, 0)
    ready = [node_id for node_id, n in waiting.items() if n == 0]
    while ready:
        node_id = ready.pop()
        for child in children[node_id]:
            depth[child] = max(depth[child], depth[node_id] + 1)
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    return depth


def draw(outline: Outline, expand: bool = False) -> Drawing:
    """Lay ``outline`` out; collapsed above the limit that ``expand`` chooses."""
    limit = EXPAND_LIMIT if expand else COLLAPSE_ABOVE
    collapsed = len(outline.nodes) > limit
    depth = depths(outline)
    deepest = max(depth.values(), default=0)
    boxes: dict[tuple[object, ...], Box] = {}
    box_of: dict[str, Box] = {}
    for node in outline.nodes:
        box = _box_for(node, depth[node.id], deepest, collapsed, boxes)
        box.counts[node.state] += 1
        box_of[node.id] = box
    lines = _place(list(boxes.values()), outline, box_of)
    width = max((b.x for b in boxes.values()), default=0) + BOX_WIDTH + MARGIN
    height = max((b.y for b in boxes.values()), default=0) + BOX_HEIGHT + MARGIN
    return Drawing(
        list(boxes.values()), lines, width, height, collapsed, len(outline.nodes)
    )


def _box_for(
    node: OutlineNode,
    depth: int,
    deepest: int,
    collapsed: bool,
    boxes: dict[tuple[object, ...], Box],
) -> Box:
    task = node.task or ("join" if node.kind == NodeKind.JOIN else node.kind.lower())
    if collapsed:
        band = depth * MAX_BANDS // (deepest + 1)
        key: tuple[object, ...] = (band, node.kind, task)
    else:
        band, key = depth, (depth, node.id)
    box = boxes.get(key)
    if box is None:
        box = boxes[key] = Box(key, band, task, node.kind)
        if not collapsed:
            box.node_id = node.id
    return box


def _place(
    boxes: list[Box], outline: Outline, box_of: dict[str, Box]
) -> list[tuple[int, int, int, int]]:
    """Set each box's position, row by depth; the lines between boxes."""
    rows: dict[int, list[Box]] = defaultdict(list)
    for box in boxes:
        rows[box.row].append(box)
    for y, row in enumerate(sorted(rows)):
        for x, box in enumerate(rows[row]):
            box.x = MARGIN + x * (BOX_WIDTH + GAP_X)
            box.y = MARGIN + y * (BOX_HEIGHT + GAP_Y)
    seen: set[tuple[int, int]] = set()
    lines = []
    for parent, child in outline.edges:
        a, b = box_of[parent], box_of[child]
        if a is b or (id(a), id(b)) in seen:
            continue
        seen.add((id(a), id(b)))
        lines.append(
            (
                a.x + BOX_WIDTH // 2,
                a.y + BOX_HEIGHT,
                b.x + BOX_WIDTH // 2,
                b.y,
            )
        )
    return lines
