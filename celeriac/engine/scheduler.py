"""Publishing nodes: one message of the user's real task per node."""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import tenacity
from celery import Celery
from kombu.exceptions import EncodeError
from kombu.exceptions import OperationalError as KombuOperationalError

from celeriac.records import Dispatch

logger = logging.getLogger("celeriac.scheduler")

#: How long a publish keeps trying to reach the broker, in seconds, before it
#: leaves the nodes not yet sent QUEUED for the recovery pass.
PUBLISH_RETRY_SECONDS = 5.0
#: What a publish fails with when the broker cannot be reached: kombu's
#: OperationalError (Celery and kombu re-raise connection errors as it), or a
#: socket error raised outside their wrappers.
_BROKER_FAULTS = (KombuOperationalError, OSError)

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


@dataclass(frozen=True)
class Published:
    """What one publish did with its nodes."""

    #: nodes Celery refused to send, with the reason: they are not retried
    refused: list[tuple[Dispatch, Exception]]
    #: nodes not sent because the broker could not be used: they stay QUEUED
    unsent: int


def publish(app: Celery, dispatches: list[Dispatch]) -> Published:
    """Publish every node in ``dispatches``, in order.

    Celery refuses to send some nodes (bad arguments, a value its serializer
    cannot encode); those are not retried. When the broker cannot be reached,
    publishing is retried for up to ``PUBLISH_RETRY_SECONDS``; then the nodes
    not yet sent stay QUEUED in the database, and a recovery pass publishes
    them once the broker is back. So do they when the broker cannot be used
    at all (its transport fails to import): every node is committed before
    it is published, and the caller must still learn what it committed.
    """
    refused: list[tuple[Dispatch, Exception]] = []
    pending = deque(dispatches)
    if not pending:
        return Published(refused, 0)
    started = time.monotonic()
    try:
        _send_pending(app, pending, refused)
    except _BROKER_FAULTS as exc:
        logger.warning(
            "broker unavailable for %.1f s (%s): %d nodes stay QUEUED until "
            "recovery publishes them",
            time.monotonic() - started,
            exc,
            len(pending),
        )
    except Exception as exc:  # the nodes are committed: they must not be lost
        logger.error(
            "cannot publish to the broker (%s: %s): %d nodes stay QUEUED until "
            "recovery publishes them",
            type(exc).__name__,
            exc,
            len(pending),
        )
    return Published(refused, len(pending))


def is_broker_fault(exc: BaseException) -> bool:
    """Whether a publish failed because the broker could not be reached."""
    return isinstance(exc, _BROKER_FAULTS)


def _log_retry(state: tenacity.RetryCallState) -> None:
    outcome = state.outcome
    pending: deque[Dispatch] = state.args[1]
    logger.warning(
        "broker error publishing %d nodes, try %d: %s; retrying in %.2f s",
        len(pending),
        state.attempt_number,
        outcome.exception() if outcome is not None else None,
        state.upcoming_sleep,
    )


# celeriac's one publish retry replaces Celery's own (``task_publish_retry``)
# for node messages: Celery's default gives up after about 0.6 s, too soon to
# ride out a broker restart; a ``max_retries: None`` in the app's policy
# retries forever, hanging a producer or a worker's signal handler; and it
# logs nothing per retry. Stacking tenacity on top would multiply the two
# policies. Each node is committed QUEUED before it is published, so giving
# up after a few seconds loses nothing: the recovery pass sends it later.
# One budget covers the whole batch, so the bound holds for any number of
# nodes; a retry resumes at the first node not yet sent. A message the broker
# took just before its connection broke is sent again: the duplicate is
# dropped when it is claimed.
@tenacity.retry(
    retry=tenacity.retry_if_exception(is_broker_fault),
    stop=tenacity.stop_before_delay(PUBLISH_RETRY_SECONDS),
    wait=tenacity.wait_random_exponential(multiplier=0.1, max=1.0),
    before_sleep=_log_retry,
    reraise=True,
)
def _send_pending(
    app: Celery, pending: deque[Dispatch], refused: list[tuple[Dispatch, Exception]]
) -> None:
    """One try: send the nodes in ``pending``, removing each once it is out."""
    with app.producer_or_acquire() as producer:
        connection = producer.connection
        try:
            # One connection attempt per try: kombu's own loop would otherwise
            # go on for broker_connection_timeout inside each of ours.
            connection.ensure_connection(max_retries=0)
            while pending:
                try:
                    send_node(app, pending[0], producer)
                except (TypeError, ValueError, EncodeError) as exc:
                    refused.append((pending[0], exc))
                pending.popleft()
        except _BROKER_FAULTS:
            # what kombu's retry would do: the next try uses the next
            # failover URL, if the broker URL names several
            connection.maybe_switch_next()
            raise


def send_node(app: Celery, dispatch: Dispatch, producer: Any) -> None:
    """Send one node as a message of its own task, under the node's id."""
    sig = dispatch.signature
    options = dict(sig.get("options") or {})
    headers = {**(options.pop("headers", None) or {}), HEADER: node_header(dispatch)}
    if dispatch.retries:  # recovery sends a lost Celery retry again
        options["retries"] = dispatch.retries
    # _send_pending retries instead of Celery: a node's own publish retry
    # options would stack a second policy on it
    options.pop("retry", None)
    options.pop("retry_policy", None)
    args, kwargs = call_arguments(dispatch)
    app.tasks[sig["task"]].apply_async(
        args,
        kwargs,
        task_id=dispatch.node_id,
        headers=headers,
        producer=producer,
        retry=False,
        **options,
    )
