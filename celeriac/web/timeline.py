"""The timeline as a time chart: a row per node, a bar per attempt.

Each bar runs from the attempt's start to its end (a running attempt's, to
now), coloured as the DAG colours node states; the axis counts time from the
first start, a few ticks labelled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from celeriac.records import Attempt, Node
from celeriac.states import AttemptState, NodeState

#: Nodes the timeline shows (the first ones, in canvas order).
TIMELINE_NODES = 100
LABEL_WIDTH, PLOT_WIDTH, ROW_HEIGHT, AXIS_HEIGHT, MARGIN = 180, 560, 20, 24, 10
#: The DAG's state whose colour each attempt state takes.
_COLOUR: dict[str, str] = {
    AttemptState.RUNNING: NodeState.RUNNING,
    AttemptState.SUCCEEDED: NodeState.SUCCEEDED,
    AttemptState.FAILED: NodeState.FAILED,
    AttemptState.RETRY: NodeState.RETRYING,
    AttemptState.REVOKED: NodeState.CANCELLED,
    AttemptState.LOST: NodeState.FAILED,
    AttemptState.REPLACED: NodeState.REPLACED,
}
#: Tick steps the axis may use, in seconds; past a day, whole days.
_STEPS = (
    *(m * 10.0**e for e in range(-3, 1) for m in (1, 2, 5)),
    *(10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200),
)
_DAY = 86400
#: Ticks at most, the one at 0 aside.
_TICKS = 5


@dataclass(frozen=True)
class Bar:
    """One attempt, placed: its x span and what its tooltip says."""

    x: float
    width: float
    state: str
    colour: str
    title: str


@dataclass(frozen=True)
class Row:
    """One node's line: its label and its attempts' bars."""

    node_id: str
    label: str
    y: int
    bars: list[Bar]


@dataclass(frozen=True)
class Chart:
    """Rows and axis ticks ready for the SVG."""

    rows: list[Row]
    #: (x, label) of each tick
    ticks: list[tuple[float, str]]
    width: int
    height: int
    #: the y of the time axis, below the rows
    axis_y: int
    #: when the first attempt started (None: nothing ran yet)
    start: datetime | None
    row_height: int = ROW_HEIGHT


def duration(seconds: float) -> str:
    """``0.25 s``, ``2 min 5 s``, ``3 h 12 min``."""
    if seconds < 60:
        return f"{seconds:.2f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def tick_step(span: float) -> float:
    """The first step that puts at most a few ticks over ``span`` seconds."""
    fits = (step for step in _STEPS if span / step <= _TICKS)
    return next(fits, math.ceil(span / _TICKS / _DAY) * _DAY)


def tick_label(seconds: float, step: float) -> str:
    """A tick's offset in the step's unit: ``0.5 s``, ``10 min``, ``2 h``."""
    for unit, name in ((_DAY, "d"), (3600, "h"), (60, "min")):
        if step >= unit and step % unit == 0:
            return f"{seconds / unit:g} {name}"
    return f"{seconds:g} s"


def chart(nodes: Sequence[Node], now: datetime) -> Chart:
    """The time chart of ``nodes``' attempts; running ones end at ``now``."""
    spans = [
        (attempt.started_at, attempt.finished_at or now)
        for node in nodes
        for attempt in node.attempts
        if attempt.started_at is not None
    ]
    first = min((begun for begun, _ in spans), default=None)
    origin = first or now
    end = max((ended for _, ended in spans), default=now)
    span = max((end - origin).total_seconds(), 0.001)
    scale = PLOT_WIDTH / span
    rows = [
        Row(
            node.id,
            f"{node.position} {_task(node)}",
            MARGIN + i * ROW_HEIGHT,
            [
                _bar(node, attempt, attempt.started_at, origin, now, scale)
                for attempt in node.attempts
                if attempt.started_at is not None
            ],
        )
        for i, node in enumerate(nodes)
    ]
    step = tick_step(span)
    ticks = [
        (LABEL_WIDTH + i * step * scale, tick_label(i * step, step))
        for i in range(int(span / step) + 1)
    ]
    axis_y = MARGIN + len(rows) * ROW_HEIGHT
    width = LABEL_WIDTH + PLOT_WIDTH + 3 * MARGIN
    return Chart(rows, ticks, width, axis_y + AXIS_HEIGHT, axis_y, first)


def _task(node: Node) -> str:
    return node.task or node.kind.lower()


def _bar(
    node: Node,
    attempt: Attempt,
    started: datetime,
    origin: datetime,
    now: datetime,
    scale: float,
) -> Bar:
    # never below 0: a worker's clock may run ahead of the console's
    seconds = max(((attempt.finished_at or now) - started).total_seconds(), 0.0)
    took = duration(seconds)
    if attempt.finished_at is None:
        took = f"{took} so far"
    return Bar(
        x=LABEL_WIDTH + (started - origin).total_seconds() * scale,
        width=max(seconds * scale, 2.0),
        state=attempt.state,
        colour=_COLOUR.get(attempt.state, NodeState.PENDING),
        title=f"{_task(node)} (node {node.position}), attempt {attempt.number}: "
        f"{attempt.state}, {took}",
    )
