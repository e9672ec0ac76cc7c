"""Which node the current thread is running, for code inside a task body."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from celeriac.engine.engine import Engine


@dataclass(frozen=True)
class RunningNode:
    """The node whose body runs in this thread, and the engine recording it."""

    engine: Engine
    workflow_id: str
    node_id: str
    number: int


_current: ContextVar[RunningNode | None] = ContextVar("celeriac_node", default=None)


def current_node() -> RunningNode | None:
    """The node running in this thread, or None outside a node's body."""
    return _current.get()


def enter(node: RunningNode | None) -> None:
    """Mark ``node`` as running in this thread (None: no node runs)."""
    _current.set(node)
