"""Publishing nodes: one message of the user's real task per node."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from celeriac.records import Dispatch

logger = logging.getLogger("celeriac.scheduler")

#: The message header that marks a celeriac node: workflow id, the number of
#: attempts before this dispatch (Celery's retry count restarts at 0), kind.
HEADER = "celeriac"


def node_header(dispatch: Dispatch) -> dict[str, Any]:
    """The header value a node's message carries."""
    return {"w": dispatch.workflow_id, "b": dispatch.attempt_base, "k": dispatch.kind}


def call_arguments(dispatch: Dispatch) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The node's positional and keyword arguments, its parent's result first."""
    sig = dispatch.signature
    args = tuple(sig.get("args") or ())
    if not sig.get("immutable"):
        args = dispatch.inputs + args
    return args, dict(sig.get("kwargs") or {})


def publish(app: Celery, dispatches: list[Dispatch]) -> None:
    """Publish every node in ``dispatches``, in order."""
    if not dispatches:
        return
    with app.producer_or_acquire() as producer:
        for dispatch in dispatches:
            _send(app, dispatch, producer)


def _send(app: Celery, dispatch: Dispatch, producer: Any) -> None:
    """Send one node as a message of its own task, under the node's id."""
    sig = dispatch.signature
    options = dict(sig.get("options") or {})
    headers = {**(options.pop("headers", None) or {}), HEADER: node_header(dispatch)}
    args, kwargs = call_arguments(dispatch)
    app.tasks[sig["task"]].apply_async(
        args,
        kwargs,
        task_id=dispatch.node_id,
        headers=headers,
        producer=producer,
        **options,
    )
