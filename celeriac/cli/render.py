"""How the command line shows things: colours, tables, JSON."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from celeriac import Node
from celeriac.records import SHORT_ID_LENGTH
from celeriac.states import NodeKind

STATE_STYLES = {
    "IN_PROGRESS": "cyan",
    "REQUESTING_PAUSE": "yellow",
    "PAUSED": "yellow",
    "COMPLETED": "green",
    "SUCCEEDED": "green",
    "FAILED": "red",
    "CANCELLED": "magenta",
    "RUNNING": "cyan",
    "RETRYING": "yellow",
    "SKIPPED": "dim",
    "REPLACED": "blue",
    "PENDING": "dim",
}

#: The kinds of node ``Workflow.nodes()`` lists: those ``show`` numbers, and
#: the ``nodes`` of ``show --json``. JOIN and END nodes are bookkeeping.
LISTED_KINDS = frozenset({NodeKind.TASK, NodeKind.ERRBACK})

#: Below this many columns, ``list`` shows short ids.
FULL_ID_WIDTH = 120

console = Console(highlight=False)
if not console.is_terminal and "COLUMNS" not in os.environ:
    console.width = 160  # piped output: wide rows beat wrapped ones


F = TypeVar("F", bound=Callable[..., Any])


def workflow_table() -> Table:
    """The table ``list`` fills: only NAME wraps, so that no state is cut."""
    table = Table("ID", "NAME", "STATE", "CREATED", "FINISHED", box=None)
    for column in table.columns:
        column.no_wrap = True
    table.columns[1].no_wrap = False
    table.columns[1].overflow = "fold"
    return table


def short_id(workflow_id: str) -> str:
    """The whole id on a wide console; below, its first 8 characters."""
    if console.width >= FULL_ID_WIDTH:
        return workflow_id
    return workflow_id[:SHORT_ID_LENGTH]


def json_option(fn: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON instead of a table."
    )(fn)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=json_default))


def json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def styled(state: str) -> str:
    style = STATE_STYLES.get(state)
    return f"[{style}]{state}[/]" if style else state


def when(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def shorten(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def node_json(node: Node) -> dict[str, Any]:
    document = dataclasses.asdict(node)
    document["duration"] = duration(node)
    return document


def join_json(node: Node) -> dict[str, Any]:
    """A JOIN node, which the ``parents`` of a task node may name."""
    return {
        "id": node.id,
        "kind": node.kind,
        "state": node.state,
        "position": node.position,
        "label": node.label,
        "parents": node.parents,
    }


def duration_text(node: Node) -> str:
    seconds = duration(node)
    if seconds is not None:
        return f"{seconds:.2f}s"
    so_far = elapsed(node) if node.state == "RUNNING" else None
    return f"{so_far:.1f}s…" if so_far is not None else "-"


def duration(node: Node) -> float | None:
    """Seconds from the first attempt's start to the last one's end."""
    return node.duration


def elapsed(node: Node) -> float | None:
    """Seconds a node has been running, for one that has not finished."""
    if not node.attempts or node.attempts[0].started_at is None:
        return None
    return (datetime.now(UTC) - node.attempts[0].started_at).total_seconds()
