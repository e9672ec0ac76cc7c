"""Running a node's one successor in the worker that ran the node.

When a success makes exactly one task ready, and that task would go to the
queue its predecessor came from with no delay and no time limit, the worker
offers to run it itself (an :class:`Offer`): the success's transaction then
claims it on the worker's lease, and the worker runs it right after the
predecessor, through Celery's tracer, with the request the message would
have carried (built by Celery's own publish code, the body passed through
the serializer): no broker round trip, and one transaction per hop.

On PostgreSQL the success's own statement claims the successor before the
offer sees it, and a refusal undoes that transaction; so after a refusal,
the next success of the same task in this process asks first (a chain
whose steps go to another queue would otherwise claim and undo every hop).

The worker goes on so for ``inline_successor_seconds`` after the message it
took; then the next node is published, so one chain does not hold a pool
slot for long, and a warm shutdown waits for no more than that. Nodes run so
are not in the worker's list of active tasks (``celery inspect active``),
send no task events, and ``revoke(terminate=True)`` cannot stop one: their
pool process runs the message that started them.

Each worker thread keeps its own nodes to run (:data:`_local`), and runs
them one after the other after the task that carried them returns (from
``task_postrun``), so the stack does not grow with the chain.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from celery.app.trace import trace_task
from kombu.serialization import dumps, loads, prepare_accept_content

from celeriac.engine.scheduler import send_node
from celeriac.records import Dispatch, Handoff, Lease

#: The attempt a node run in place starts: its first claim.
FIRST_ATTEMPT = 1


@dataclass(frozen=True)
class CarriedMessage:
    """A node's message as Celery would have published it, never sent."""

    workflow_id: str
    node_id: str
    task: str
    #: what the worker's request would hold: headers, properties, delivery
    request: dict[str, Any]
    #: serialized as the broker would have carried it
    body: str | bytes
    content_type: str
    content_encoding: str


class _CapturingProducer:
    """Stands in for a producer: keeps what Celery publishes instead of sending it."""

    def __init__(self) -> None:
        self.connection = self
        self.body: Any = None
        self.options: dict[str, Any] = {}

    def _reraise_as_library_errors(self) -> nullcontext[None]:
        return nullcontext()

    def publish(self, body: Any, **options: Any) -> None:
        self.body, self.options = body, options


#: The publish options that are message properties a worker sees.
_PROPERTIES = ("correlation_id", "reply_to", "delivery_mode")


def carried_message(
    app: Celery, dispatch: Dispatch, hostname: str | None
) -> CarriedMessage | None:
    """``dispatch``'s message, built as it would be published; None if unsendable."""
    producer = _CapturingProducer()
    try:
        send_node(app, dispatch, producer)
        content_type, content_encoding, body = dumps(
            producer.body, serializer=producer.options.get("serializer")
        )
    except Exception:  # the publish refuses it, and says why
        return None
    options = producer.options
    properties = {k: options[k] for k in _PROPERTIES if options.get(k) is not None}
    # kombu's publish sends priority 0 when Celery gives none
    properties["priority"] = options.get("priority") or 0
    request = {
        **(options.get("headers") or {}),
        "properties": properties,
        "reply_to": properties.get("reply_to"),
        "correlation_id": properties.get("correlation_id"),
        "hostname": hostname,
        "delivery_info": {
            "exchange": options.get("exchange"),
            "routing_key": options.get("routing_key"),
            "priority": properties.get("priority"),
            "redelivered": False,
        },
    }
    return CarriedMessage(
        dispatch.workflow_id,
        dispatch.node_id,
        dispatch.signature["task"],
        request,
        body,
        content_type,
        content_encoding,
    )


def _route(delivery_info: Any) -> tuple[Any, Any]:
    info = delivery_info or {}
    return info.get("exchange"), info.get("routing_key")


def runs_in_place(message: CarriedMessage, carrier: Any) -> bool:
    """Whether the worker running ``carrier`` (a request) may run ``message``.

    It must go to the queue the carrier came from (so this worker consumes
    it), now (no ETA, no expiry), with no time limit: the pool's limits
    watch the carrier's message alone.
    """
    request = message.request
    no_limit = (None, None)
    return (
        _route(request.get("delivery_info")) == _route(carrier.delivery_info)
        and request.get("eta") is None
        and request.get("expires") is None
        and tuple(request.get("timelimit") or no_limit) == no_limit
        and tuple(getattr(carrier, "timelimit", None) or no_limit) == no_limit
    )


@dataclass
class _Thread:
    """One worker thread's nodes run in place."""

    #: when the message this thread took last started (monotonic seconds)
    carrier_started: float = 0.0
    #: nodes claimed for this thread, to run once the current task returns
    pending: deque[CarriedMessage] = field(default_factory=deque)
    #: the node being run in place now, if any
    running: str | None = None
    draining: bool = False


class _Local(threading.local):
    state: _Thread

    def __init__(self) -> None:
        self.state = _Thread()


_local = _Local()


#: The tasks whose last successor this process offered to run was refused
#: (routed elsewhere, delayed, under a time limit): the next success of one
#: of them asks before it claims (``Handoff.claims_early``).
_REFUSED_AFTER: set[str] = set()


class Offer:
    """A worker's offer to run the next node itself, for the success it records."""

    def __init__(self, app: Celery, carrier: Any, lease: Lease) -> None:
        self.app = app
        self.carrier = carrier
        #: the task of the node whose success this offer is for
        self.after = str(getattr(carrier, "task", None))
        early = self.after not in _REFUSED_AFTER
        self.handoff = Handoff(lease, uuid.uuid4().hex, self._accepts, early)
        #: the message of the node accepted last
        self.message: CarriedMessage | None = None

    def _accepts(self, dispatch: Dispatch) -> bool:
        message = carried_message(self.app, dispatch, self.carrier.hostname)
        self.message = message
        accepted = message is not None and runs_in_place(message, self.carrier)
        if accepted:
            _REFUSED_AFTER.discard(self.after)
        else:
            _REFUSED_AFTER.add(self.after)
        return accepted

    def message_of(self, dispatch: Dispatch) -> CarriedMessage | None:
        """The message of ``dispatch``, claimed for this offer (replays too)."""
        if self.message is not None and self.message.node_id == dispatch.node_id:
            return self.message
        return carried_message(self.app, dispatch, self.carrier.hostname)


def started_delivered() -> None:
    """A message from the broker starts in this thread: the budget restarts."""
    _local.state.carrier_started = time.monotonic()


def may_offer(app: Celery, budget: float) -> bool:
    """Whether this thread may still run a node in place (``budget`` seconds).

    Never when the app runs tasks eagerly or sends ``task-sent`` events
    (Celery's publish would need a real producer).
    """
    conf = app.conf
    return (
        not conf.task_always_eager
        and not conf.task_send_sent_event
        and time.monotonic() - _local.state.carrier_started < budget
    )


def is_running_in_place(node_id: str) -> bool:
    """Whether ``node_id`` is the node this thread runs in place now."""
    return _local.state.running == node_id


def carry(message: CarriedMessage) -> None:
    """Run ``message``'s node in this thread once the current task returns."""
    _local.state.pending.append(message)


def run_pending(app: Celery, on_error: Callable[[str, str, str], None]) -> None:
    """Run the nodes carried by this thread, one after the other.

    Called when a task returns; a node run here returns into this same
    loop, which is left once nothing is pending. ``on_error(workflow_id,
    node_id, why)`` is told of a node that could not be run.
    """
    state = _local.state
    if state.draining:
        return
    state.draining = True
    try:
        while state.pending:
            message = state.pending.popleft()
            try:
                _trace(app, message)
            except Exception as exc:
                why = f"{type(exc).__name__}: {exc}"
                on_error(message.workflow_id, message.node_id, why)
    finally:
        state.draining = False


def _trace(app: Celery, message: CarriedMessage) -> None:
    """Run one carried node as the worker runs a delivered message."""
    args, kwargs, embed = loads(
        message.body,
        message.content_type,
        message.content_encoding,
        accept=prepare_accept_content(app.conf.accept_content),
    )
    request = dict(message.request)
    request.update({"args": args, "kwargs": kwargs, "is_eager": False}, **(embed or {}))
    _local.state.running = message.node_id
    try:
        trace_task(
            app.tasks[message.task],
            message.node_id,
            args,
            kwargs,
            request,
            app=app,
            hostname=request.get("hostname"),
        )
    finally:
        _local.state.running = None
