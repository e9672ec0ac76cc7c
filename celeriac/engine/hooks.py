"""The worker side: gate each node's start, record each outcome.

Installed on the app when an ``Engine`` is built, so a worker needs nothing
but the module that builds it. Celery's signals are process-wide: every
receiver here ignores tasks of other apps and messages without the
celeriac header.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from celery import Celery, signals
from celery.exceptions import Ignore
from celery.utils.functional import arity_greater

from celeriac.engine import context
from celeriac.engine.context import RunningNode
from celeriac.engine.progress import capture_update_state
from celeriac.engine.scheduler import HEADER
from celeriac.states import NodeKind
from celeriac.storage.claims import delivery_key
from celeriac.storage.store import Claim

if TYPE_CHECKING:
    from celeriac.engine.engine import Engine

logger = logging.getLogger("celeriac.worker")

#: How much of a traceback an attempt keeps: its end, where the error is.
TRACEBACK_LIMIT = 4000
#: Where the claim leaves the attempt number on Celery's request object.
_ATTEMPT = "celeriac_attempt"


class NodeRequest:
    """What a task's request says about the node it runs."""

    def __init__(self, request: Any) -> None:
        header = (getattr(request, "headers", None) or {}).get(HEADER) or getattr(
            request, HEADER, None
        )
        self.is_node = isinstance(header, dict)
        header = header if isinstance(header, dict) else {}
        self.workflow_id: str = header.get("w", "")
        self.kind: str = header.get("k", NodeKind.TASK)
        self.node_id: str = request.id
        #: which message this is: a dispatch (base) and Celery's retry count
        self.delivery = delivery_key(int(header.get("b", 0)), int(request.retries or 0))
        #: the attempt the claim recorded for this execution (0: none)
        self.number: int = getattr(request, _ATTEMPT, 0)


class WorkerHooks:
    """Connects one engine to its app's workers."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.app: Celery = engine.app

    def install(self) -> None:
        """Connect the signal receivers and gate tasks once the app is final."""
        signals.task_success.connect(self._on_success, weak=False)
        signals.task_failure.connect(self._on_failure, weak=False)
        signals.task_retry.connect(self._on_retry, weak=False)
        signals.task_revoked.connect(self._on_revoked, weak=False)
        signals.task_postrun.connect(self._on_postrun, weak=False)
        signals.worker_init.connect(self._on_worker_init, weak=False)
        signals.worker_ready.connect(self._on_worker_ready, weak=False)
        signals.worker_process_init.connect(self._on_process_init, weak=False)
        signals.worker_shutdown.connect(self._on_worker_shutdown, weak=False)
        self.app.on_after_finalize.connect(self._gate_all, weak=False)
        if self.app.finalized:  # type: ignore[attr-defined]  # not in celery-types
            self._gate_all()

    def _on_worker_init(self, sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is self.app:
            self._gate_all()

    def _on_process_init(self, **_: Any) -> None:
        """A forked pool child must not share its parent's pooled connections."""
        self.engine.db.dispose(close=False)

    def _on_worker_ready(self, sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is self.app:
            self.engine.recovery.start()

    def _on_worker_shutdown(self, sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is self.app:
            self.engine.recovery.stop()

    def _gate_all(self, *_: Any, **__: Any) -> None:
        for task in list(self.app.tasks.values()):
            self.gate(task)

    def gate(self, task: Any) -> None:
        """Make ``task`` ask the database before each run of a node's body.

        ``before_start`` runs inside Celery's traced call, where raising
        ``Ignore`` skips the body cleanly; Celery reads it from the class.
        """
        cls = type(task)
        if cls.__dict__.get("_celeriac_gated"):
            return
        original: Callable[..., Any] = cls.before_start
        hooks = self

        def before_start(self: Any, task_id: str, args: Any, kwargs: Any) -> None:
            hooks._admit(self)
            original(self, task_id, args, kwargs)

        cls.before_start = before_start
        cls._celeriac_gated = True
        capture_update_state(cls)

    def _mine(self, sender: Any) -> NodeRequest | None:
        if getattr(sender, "app", None) is not self.app:
            return None
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

    def _admit(self, task: Any) -> None:
        node = self._mine(task)
        if node is None:
            return
        lease = self.engine.liveness.lease(task.request.hostname)
        claim, number = self.engine.store.claim_node(
            node.workflow_id, node.node_id, node.delivery, lease, uuid.uuid4().hex
        )
        if claim is Claim.RUN:
            setattr(task.request, _ATTEMPT, number)
            context.enter(
                RunningNode(self.engine, node.workflow_id, node.node_id, number)
            )
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

    def _on_postrun(self, sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is self.app:
            context.enter(None)

    def _on_success(self, sender: Any = None, result: Any = None, **_: Any) -> None:
        node = self._ran(sender)
        if node is not None:
            with _left_to_recovery("success", node):
                self.engine.node_succeeded(node, result)

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
        if getattr(sender, "app", None) is not self.app or request is None:
            return
        node = NodeRequest(request)
        if not node.is_node or not node.number:
            return
        exc = getattr(reason, "exc", None) or reason
        with _left_to_recovery("retry", node):
            self.engine.store.record_retry(
                node.workflow_id,
                node.node_id,
                node.number,
                type(exc).__name__,
                str(exc),
                _retry_eta(getattr(reason, "when", None)),
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
        if getattr(sender, "app", None) is not self.app or request is None:
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


def _retry_eta(when: Any) -> datetime | None:
    """Celery's ``Retry.when`` is an ETA or a countdown in seconds."""
    if isinstance(when, datetime):
        return when if when.tzinfo else when.replace(tzinfo=UTC)
    if isinstance(when, int | float):
        return datetime.now(UTC) + timedelta(seconds=when)
    return None


def takes_request(app: Celery, signature: dict[str, Any]) -> bool:
    """Whether an errback takes ``(request, exc, traceback)`` (Celery's test).

    As in Celery's backend, the arguments a mutable errback stores count
    as given: ``old.s("label")`` of ``old(task_id, label)`` takes a task id.
    """
    task = app.tasks.get(signature["task"])
    header = getattr(task, "__header__", None)
    if header is None or isinstance(header, partial):
        return False
    args, kwargs = signature.get("args") or (), signature.get("kwargs") or {}
    if not signature.get("immutable") and (args or kwargs):
        with suppress(TypeError, ValueError):  # Celery counts them all then
            return bool(arity_greater(partial(header, *args, **kwargs), 1))
    return bool(arity_greater(header, 1))
