"""Progress reports from inside a task body, stored on the running node.

``report_progress`` is celeriac's own call; Celery's
``self.update_state(meta={"current": .., "total": ..})`` is captured too,
once the task class is wrapped by :func:`capture_update_state`. Both go
through one throttle per running attempt, so a tight loop that reports on
every step costs a few writes per second, not one per step.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from weakref import WeakKeyDictionary

from celeriac.engine.context import RunningNode, current_node

logger = logging.getLogger("celeriac.progress")

#: Seconds between two progress writes of one node; the final report
#: (``current >= total``) is always written.
MIN_INTERVAL = 0.5

_Values = tuple[float, float | None, str | None]


class _Throttle:
    """Decides which of one attempt's reports reach the database."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.written_at: float | None = None
        self.written: _Values | None = None

    def admit(self, values: _Values, final: bool) -> bool:
        now = time.monotonic()
        with self.lock:
            if values == self.written:
                return False
            due = self.written_at is None or now - self.written_at >= MIN_INTERVAL
            if not (due or final):
                return False
            self.written_at, self.written = now, values
            return True


# Keyed on the RunningNode the worker hook enters for each attempt: the
# entry goes away with the attempt, and a retry starts with a fresh throttle.
_throttles: WeakKeyDictionary[RunningNode, _Throttle] = WeakKeyDictionary()
_throttles_lock = threading.Lock()


def report_progress(
    current: float, total: float | None = None, message: str | None = None
) -> None:
    """Store how far the running task got, for ``Workflow.progress()``.

    Call it from the body of a task that runs as a workflow node; elsewhere
    (a task called directly, or sent outside a workflow) it does nothing.
    Writes are throttled to one per node every ``MIN_INTERVAL`` seconds;
    the report that reaches ``total`` is always written.

    Args:
        current: How much work is done, in any unit (items, bytes, steps).
        total: How much work there is in all, when known.
        message: A short human-readable status.
    """
    node = current_node()
    if node is None:
        return
    _report(node, float(current), None if total is None else float(total), message)


def _report(
    node: RunningNode, current: float, total: float | None, message: str | None
) -> None:
    if math.isnan(current):  # no amount of work; SQLite would store NULL
        return
    if total is not None and math.isnan(total):
        total = None
    with _throttles_lock:
        throttle = _throttles.setdefault(node, _Throttle())
    final = total is not None and current >= total
    if not throttle.admit((current, total, message), final):
        return
    try:
        node.engine._store.record_progress(
            node.workflow_id, node.node_id, node.number, current, total, message
        )
    except Exception:  # advisory: a lost report must not fail the task
        logger.warning(
            "could not store progress of node %s", node.node_id, exc_info=True
        )


def report_update_state(task_id: str | None, meta: Any) -> None:
    """Store the progress in an ``update_state`` call's ``meta``, if it has one.

    Celery's convention is ``meta={"current": n, "total": m}``; a ``message``
    key is kept as the status. Calls about other tasks are ignored.
    """
    node = current_node()
    if node is None or task_id not in (None, node.node_id):
        return
    if not isinstance(meta, Mapping):
        return
    current = _number(meta.get("current"))
    if current is None:
        return
    message = meta.get("message")
    _report(
        node,
        current,
        _number(meta.get("total")),
        message if isinstance(message, str) else None,
    )


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def capture_update_state(task_class: type[Any]) -> None:
    """Make ``update_state`` on ``task_class`` also report a node's progress.

    Celery's ``update_state`` only writes to the result backend (a no-op
    without one); the wrapper records the progress first, then calls it.
    """
    if task_class.__dict__.get("_celeriac_progress"):
        return
    original: Callable[..., Any] = task_class.update_state

    def update_state(
        self: Any,
        task_id: str | None = None,
        state: str | None = None,
        meta: Any = None,
        **kwargs: Any,
    ) -> None:
        report_update_state(task_id, meta)
        original(self, task_id, state, meta, **kwargs)

    task_class.update_state = update_state
    task_class._celeriac_progress = True
