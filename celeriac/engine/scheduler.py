"""Publishing nodes: one message of the user's real task per node."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from kombu.exceptions import EncodeError
from kombu.exceptions import OperationalError as KombuOperationalError

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


def publish(
    app: Celery, dispatches: list[Dispatch]
) -> list[tuple[Dispatch, Exception]]:
    """Publish every node in ``dispatches``, in order.

    Returns the nodes Celery refused to send (bad arguments, a value its
    serializer cannot encode), with the reason. When the broker itself fails
    (after Celery's own publish retries), the rest stay QUEUED in the
    database: a recovery pass publishes them once the broker is back.
    """
    refused: list[tuple[Dispatch, Exception]] = []
    if not dispatches:
        return refused
    try:
        with app.producer_or_acquire() as producer:
            for dispatch in dispatches:
                try:
                    _send(app, dispatch, producer)
                except (TypeError, ValueError, EncodeError) as exc:
                    refused.append((dispatch, exc))
    except (KombuOperationalError, OSError):
        logger.warning(
            "broker unavailable: %d nodes stay QUEUED until recovery publishes them",
            len(dispatches),
            exc_info=True,
        )
    return refused


def _send(app: Celery, dispatch: Dispatch, producer: Any) -> None:
    """Send one node as a message of its own task, under the node's id."""
    sig = dispatch.signature
    options = dict(sig.get("options") or {})
    headers = {**(options.pop("headers", None) or {}), HEADER: node_header(dispatch)}
    if dispatch.retries:  # recovery sends a lost Celery retry again
        options["retries"] = dispatch.retries
    args, kwargs = call_arguments(dispatch)
    app.tasks[sig["task"]].apply_async(
        args,
        kwargs,
        task_id=dispatch.node_id,
        headers=headers,
        producer=producer,
        **options,
    )
