"""The worker side: gate each node's start, record each outcome.

Installed on the app when an ``Engine`` is built, so a worker needs nothing
but the module that builds it. Celery's signals are process-wide: one set of
receivers is connected while any engine is live, and each signal goes to the
engine bound to the app of the task (or worker) that sent it, through
:data:`_bound`; tasks of other apps and messages without the celeriac header
are ignored. ``Engine.close()`` unbinds its engine, restores the task classes
it gated, and disconnects the receivers once no engine is left.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from celery import Celery, signals
from celery.exceptions import Ignore
from celery.utils.dispatch import Signal

from celeriac.engine import context, handoff
from celeriac.engine.context import RunningNode
from celeriac.engine.node_request import ATTEMPT, TRACEBACK_LIMIT, NodeRequest
from celeriac.engine.progress import capture_update_state
from celeriac.engine.retry_eta import note_retry_publish, retry_eta
from celeriac.errors import AppInUse
from celeriac.records import Claim
from celeriac.states import NodeKind

if TYPE_CHECKING:
    from celeriac.engine.engine import Engine

logger = logging.getLogger("celeriac.worker")

#: The hooks of each live engine, by ``id()`` of its app (the hooks hold the
#: app, so the id is not reused while the entry exists).
_bound: dict[int, WorkerHooks] = {}
_binding = threading.Lock()


def hooks_of(app: Any) -> WorkerHooks | None:
    """The hooks of the live engine bound to ``app``, if any."""
    hooks = _bound.get(id(app))
    return hooks if hooks is not None and hooks.app is app else None


def engine_of(app: Any) -> Engine | None:
    """The live engine bound to ``app``, if any."""
    hooks = hooks_of(app)
    return hooks.engine if hooks is not None else None


def _dispatcher(method: str) -> Callable[..., None]:
    """A receiver that hands a signal to the hooks of its sender's app."""

    def receive(sender: Any = None, **kwargs: Any) -> None:
        hooks = hooks_of(getattr(sender, "app", None))
        if hooks is not None:
            getattr(hooks, method)(sender, **kwargs)

    receive.__name__ = receive.__qualname__ = f"celeriac{method}"
    return receive


def _on_process_init(**_: Any) -> None:
    """A forked pool child must not share its parent's pooled connections."""
    for hooks in list(_bound.values()):
        hooks.engine._db.dispose(close=False)


def _on_shutting_down(**_: Any) -> None:
    """The process's worker begins a shutdown: no node runs in place any more."""
    for hooks in list(_bound.values()):
        hooks.stopping = True


#: Every signal celeriac receives, and its receiver.
_RECEIVERS: tuple[tuple[Signal, Callable[..., None]], ...] = (
    (signals.task_success, _dispatcher("_on_success")),
    (signals.task_failure, _dispatcher("_on_failure")),
    (signals.task_retry, _dispatcher("_on_retry")),
    (signals.task_revoked, _dispatcher("_on_revoked")),
    (signals.task_postrun, _dispatcher("_on_postrun")),
    (signals.worker_init, _dispatcher("_gate_all")),
    (signals.worker_ready, _dispatcher("_on_worker_ready")),
    (signals.worker_shutdown, _dispatcher("_on_worker_shutdown")),
    (signals.worker_shutting_down, _on_shutting_down),
    (signals.worker_process_init, _on_process_init),
    (signals.before_task_publish, note_retry_publish),
)


def refuse_bound(app: Celery) -> None:
    """Raise ``AppInUse`` if a live engine is bound to ``app``."""
    other = hooks_of(app)
    if other is not None:
        raise AppInUse(str(app.main), other.engine.shown_url)


def _bind(hooks: WorkerHooks) -> None:
    """Register ``hooks`` for its app; connect the receivers for the first."""
    with _binding:
        refuse_bound(hooks.app)
        if not _bound:
            for signal, receiver in _RECEIVERS:
                signal.connect(receiver, weak=False)
        _bound[id(hooks.app)] = hooks


def _unbind(hooks: WorkerHooks) -> None:
    """Forget ``hooks``; disconnect the receivers after the last engine."""
    with _binding:
        if _bound.get(id(hooks.app)) is not hooks:
            return
        del _bound[id(hooks.app)]
        if not _bound:
            for signal, receiver in _RECEIVERS:
                signal.disconnect(receiver)


#: What gating changes on a task class: restored when no engine needs it.
_GATED_ATTRIBUTES = (
    "before_start",
    "replace",
    "update_state",
    "_celeriac_progress",
)
_MISSING = object()


class _Gate:
    """A task class's attributes before it was gated, and the apps gating it."""

    def __init__(self, cls: type[Any]) -> None:
        self.saved = {
            name: cls.__dict__.get(name, _MISSING) for name in _GATED_ATTRIBUTES
        }
        self.apps: set[int] = set()

    def restore(self, cls: type[Any]) -> None:
        for name, value in self.saved.items():
            if value is _MISSING:
                if name in cls.__dict__:
                    delattr(cls, name)
            else:
                setattr(cls, name, value)


#: Every gated task class, process-wide (a class may serve several apps).
_gates: dict[type[Any], _Gate] = {}


def _gated_before_start(original: Callable[..., Any]) -> Callable[..., None]:
    """``before_start`` asking the app's engine first, then ``original``."""

    def before_start(self: Any, task_id: str, args: Any, kwargs: Any) -> None:
        hooks = hooks_of(self.app)
        if hooks is not None:
            hooks.admit(self)
        original(self, task_id, args, kwargs)

    return before_start


def _gated_replace(original: Callable[..., Any]) -> Callable[..., Any]:
    """``replace`` storing a node's replacement in its workflow.

    Celery's own wires the replacement to the request (freezing it, which
    needs a result backend for a chord) and sends it; for a node, whose
    wiring is edges, the engine stores the canvas instead, and the replaced
    task ends with ``Ignore`` as Celery's does.
    """

    def replace(self: Any, sig: Any) -> Any:
        hooks = hooks_of(self.app)
        node = hooks._ran(self) if hooks is not None else None
        if hooks is None or node is None:
            return original(self, sig)
        hooks.engine.node_replaced(node, sig)
        raise Ignore("Replaced by new task")

    return replace


class WorkerHooks:
    """Connects one engine to its app's workers."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.app: Celery = engine.app
        #: the worker is shutting down: it takes no successor to run in place
        #: (seen by a threads or solo pool; a prefork child is not told)
        self.stopping = False

    def install(self) -> None:
        """Bind to the app (refused if bound) and gate tasks once it is final.

        Raises:
            AppInUse: another live engine is bound to the app.
        """
        _bind(self)
        self.app.on_after_finalize.connect(self._gate_all, weak=False)
        if self.app.finalized:  # type: ignore[attr-defined]  # not in celery-types
            self._gate_all()

    def uninstall(self) -> None:
        """Undo :meth:`install`: unbind, and restore the classes gated for it."""
        self.app.on_after_finalize.disconnect(self._gate_all)
        with _binding:
            for cls, gate in list(_gates.items()):
                gate.apps.discard(id(self.app))
                if not gate.apps:
                    gate.restore(cls)
                    del _gates[cls]
        _unbind(self)

    def _on_worker_ready(self, sender: Any = None, **_: Any) -> None:
        self.stopping = False
        self.engine._recovery.start()

    def _on_worker_shutdown(self, sender: Any = None, **_: Any) -> None:
        self.stopping = True
        self.engine._recovery.stop()

    def _gate_all(self, *_: Any, **__: Any) -> None:
        for task in list(self.app.tasks.values()):
            self.gate(task)

    def gate(self, task: Any) -> None:
        """Make ``task`` ask the database before each run of a node's body.

        ``before_start`` runs inside Celery's traced call, where raising
        ``Ignore`` skips the body cleanly; Celery reads it from the class.
        The gate asks the engine bound to the task's app, if any; so does
        ``replace``, which stores a node's replacement instead of sending it.
        """
        cls = type(task)
        with _binding:
            gate = _gates.get(cls)
            if gate is None:
                gate = _gates[cls] = _Gate(cls)
                cls.before_start = _gated_before_start(cls.before_start)
                cls.replace = _gated_replace(cls.replace)
                capture_update_state(cls)
            gate.apps.add(id(self.app))

    def _mine(self, sender: Any) -> NodeRequest | None:
        node = NodeRequest(sender.request)
        return node if node.is_node else None

    def _ran(self, sender: Any) -> NodeRequest | None:
        """The node whose claimed attempt just ended, if ``sender`` ran one.

        Only the process that claimed an attempt reports its outcome. When a
        pool process dies, Celery reports ``WorkerLostError`` from the
        worker's main process, which holds no claim: that is no outcome of
        the node, whose attempt the lease marks LOST and runs again.
        """
        node = self._mine(sender)
        return node if node is not None and node.number else None

    def admit(self, task: Any) -> None:
        """Claim the node ``task`` is about to run, or raise ``Ignore``."""
        node = self._mine(task)
        if node is None:
            return
        if handoff.is_running_in_place(node.node_id):  # claimed with its parent
            self._start(task, node, handoff.FIRST_ATTEMPT)
            return
        handoff.started_delivered()
        lease = self.engine._liveness.lease(task.request.hostname)
        claim, number = self.engine._store.claim_node(
            node.workflow_id, node.node_id, node.delivery, lease, uuid.uuid4().hex
        )
        if claim is Claim.RUN:
            self._start(task, node, number)
            return
        if claim is Claim.HOLD:
            logger.info(
                "node %s held back: workflow %s is pausing",
                node.node_id,
                node.workflow_id,
            )
            self.engine.settle(node.workflow_id)
        else:
            logger.info("node %s dropped: duplicate or no longer wanted", node.node_id)
        raise Ignore()

    def _start(self, task: Any, node: NodeRequest, number: int) -> None:
        """Let ``task`` run attempt ``number`` of ``node``, claimed."""
        setattr(task.request, ATTEMPT, number)
        context.enter(RunningNode(self.engine, node.workflow_id, node.node_id, number))

    def _on_postrun(self, sender: Any = None, **_: Any) -> None:
        context.enter(None)
        handoff.run_pending(self.app, self.engine.not_run_in_place)

    def _on_success(self, sender: Any = None, result: Any = None, **_: Any) -> None:
        node = self._ran(sender)
        if node is not None:
            with _left_to_recovery("success", node):
                self.engine.node_succeeded(node, result, self._offer(sender, node))

    def _offer(self, sender: Any, node: NodeRequest) -> handoff.Offer | None:
        """This worker's offer to run the node's successor itself, if it may."""
        budget = 0.0 if self.stopping else self.engine.inline_successor_seconds
        if node.kind != NodeKind.TASK or not handoff.may_offer(self.app, budget):
            return None
        lease = self.engine._liveness.lease(sender.request.hostname)
        return handoff.Offer(self.app, sender.request, lease)

    def _on_failure(
        self,
        sender: Any = None,
        exception: BaseException | None = None,
        einfo: Any = None,
        **_: Any,
    ) -> None:
        node = self._ran(sender)
        if node is None or exception is None:
            return
        traceback = str(einfo)[-TRACEBACK_LIMIT:] if einfo is not None else None
        with _left_to_recovery("failure", node):
            self.engine.node_failed(node, exception, traceback, sender.request, einfo)

    def _on_retry(
        self, sender: Any = None, request: Any = None, reason: Any = None, **_: Any
    ) -> None:
        if request is None:
            return
        node = NodeRequest(request)
        if not node.is_node or not node.number:
            return
        exc = getattr(reason, "exc", None) or reason
        with _left_to_recovery("retry", node):
            self.engine._store.record_retry(
                node.workflow_id,
                node.node_id,
                node.number,
                type(exc).__name__,
                str(exc),
                retry_eta(node.node_id, getattr(reason, "when", None)),
            )

    def _on_revoked(
        self,
        sender: Any = None,
        request: Any = None,
        terminated: bool = False,
        signum: Any = None,
        expired: bool = False,
        **_: Any,
    ) -> None:
        if request is None:
            return
        node = NodeRequest(request)
        if node.is_node:
            with _left_to_recovery("revoke", node):
                reason = revoke_reason(terminated, signum, expired)
                self.engine.node_revoked(node, reason)


@contextmanager
def _left_to_recovery(outcome: str, node: NodeRequest) -> Iterator[None]:
    """Log what escapes the recording of an outcome, instead of Celery.

    The engine never leaves a node RUNNING on this process's lease: what
    escapes is a follow-up (a publish, a workflow state change) that the
    recovery pass makes in its place. A revoke or a retry not recorded is
    taken up again when the node's message is claimed or found stale.
    """
    try:
        yield
    except Exception as exc:
        logger.error(
            "recording the %s of node %s of workflow %s did not finish (%s: %s); "
            "the recovery pass completes it",
            outcome,
            node.node_id,
            node.workflow_id,
            type(exc).__name__,
            exc,
            exc_info=True,
        )


def revoke_reason(terminated: bool, signum: Any, expired: bool) -> str:
    """Why Celery revoked a task, in the words of ``celery events``."""
    if expired:
        return "expired"
    if terminated:
        return f"terminated by signal {signum}"
    return "revoked"
