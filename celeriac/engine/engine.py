"""The Engine: binds celeriac to a Celery app and a database."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from datetime import datetime, timedelta
from traceback import format_exc
from typing import Any, Literal

import sqlalchemy as sa
from celery import Celery
from celery.app.task import Context
from celery.exceptions import TaskRevokedError
from kombu.exceptions import EncodeError

from celeriac.engine import scheduler
from celeriac.engine.compiler import compile_canvas
from celeriac.engine.errbacks import (
    ErrbackArguments,
    rebuilt_arguments,
    rebuilt_exception,
)
from celeriac.engine.exceptions import failure_of
from celeriac.engine.handle import Workflow
from celeriac.engine.hooks import (
    TRACEBACK_LIMIT,
    NodeRequest,
    WorkerHooks,
    refuse_bound,
    takes_request,
)
from celeriac.engine.ids import complete_id
from celeriac.engine.liveness import Liveness
from celeriac.engine.machine import decider
from celeriac.engine.quiet import quiet_missing_backend
from celeriac.engine.recovery import RecoveryLoop
from celeriac.errors import (
    AppInUse,
    CorruptRecord,
    InvalidTransition,
    StorageError,
    WorkflowNotFound,
)
from celeriac.records import (
    Claim,
    Delivery,
    Dispatch,
    Failure,
    Outcome,
    TransitionResult,
    WorkflowRecord,
    delivery_key,
)
from celeriac.settings import ByteCount, Interval, Seconds, checked_options
from celeriac.settings import database_url as resolve_database_url
from celeriac.states import TERMINAL_WORKFLOW_STATES, NodeKind, OnFailure
from celeriac.storage import Store, connect, migrate
from celeriac.storage.database import RETRY_SECONDS, checkpoint, first_line
from celeriac.storage.finishes import Finishes
from celeriac.storage.retention import Purged, Retention
from celeriac.storage.rows import now
from celeriac.storage.values import MAX_RESULT_BYTES, ResultTooLarge, check_result

logger = logging.getLogger("celeriac.engine")


class Engine:
    """A persistent workflow engine for one Celery app.

    Args:
        app: The Celery app whose tasks the workflows run.
        database_url: SQLAlchemy URL; defaults to ``$CELERIAC_DATABASE_URL``,
            then ``sqlite:///celeriac.db``.

    The keyword-only options are described once, in docs/api.md (Engine
    options); each is checked against its annotation when the engine is
    built (``TypeError`` or ``ValueError`` naming it), and an unknown one is
    a ``TypeError`` naming it.

    Building the engine in the module a worker imports is all a worker needs:
    the hooks that record each node's outcome are installed on ``app``. One
    live engine per app: another raises ``AppInUse`` until this one is closed.
    """

    @checked_options
    def __init__(
        self,
        app: Celery,
        database_url: str | None = None,
        *,
        auto_migrate: bool | None = None,
        recovery_delay: Seconds = 60.0,
        recovery_interval: Interval = 30.0,
        heartbeat_interval: Interval = 5.0,
        worker_timeout: Interval = 30.0,
        retry_seconds: Seconds = RETRY_SECONDS,
        max_result_bytes: ByteCount = MAX_RESULT_BYTES,
        on_failure: Literal["continue", "stop"] = "continue",
    ) -> None:
        self.app = app
        self.database_url = resolve_database_url(database_url)
        refuse_bound(app)  # before anything is opened
        self.db: sa.Engine = connect(self.database_url, retry_seconds=retry_seconds)
        self.store = Store(self.db)
        self.finishes = Finishes(self.db)
        self.on_failure = OnFailure.named(on_failure)
        self.max_result_bytes = max_result_bytes
        #: a QUEUED node not started for this many seconds is published again
        self.recovery_delay = recovery_delay
        if auto_migrate is None:
            auto_migrate = self.db.dialect.name == "sqlite"
        if auto_migrate:
            self.migrate()
        self.liveness = Liveness(self.store, heartbeat_interval, worker_timeout)
        self.recovery = RecoveryLoop(self, recovery_interval)
        self._hooks = WorkerHooks(self)
        try:
            self._hooks.install()
        except AppInUse:  # another engine was bound meanwhile
            self.db.dispose()
            raise
        quiet_missing_backend()
        #: workflows recovery leaves alone: their rows cannot be read
        self._unreadable: set[str] = set()

    @property
    def shown_url(self) -> str:
        """The database URL, its password hidden."""
        return self.db.url.render_as_string(hide_password=True)

    # -- the public API ---------------------------------------------------

    def close(self) -> None:
        """Undo what the engine installed; stop its threads, close connections.

        Its signal receivers and task gates no longer act for ``app``: another
        engine may be built on it.
        """
        self._hooks.uninstall()
        self.recovery.stop()
        self.liveness.stop()
        self.finishes.close()
        checkpoint(self.db)
        self.db.dispose()

    def migrate(self) -> None:
        """Bring the database schema to the newest revision (Alembic)."""
        migrate.upgrade(self.db)

    def schema_revision(self) -> str | None:
        """The database's schema revision (Alembic's), None when it has none."""
        return migrate.current(self.db)

    def list_workflows(
        self,
        *,
        state: str | None = None,
        name: str | None = None,
        key: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 50,
    ) -> list[WorkflowRecord]:
        """Stored workflows, newest first, with the filters given.

        ``created_after`` keeps those created at or after it,
        ``created_before`` those created before it (aware datetimes);
        ``key``, the one submitted with that key.
        """
        return self.store.list_workflows(
            state=state,
            name=name,
            key=key,
            limit=limit,
            created_after=created_after,
            created_before=created_before,
        )

    def submit(
        self,
        canvas: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        on_failure: str | None = None,
        key: str | None = None,
        **options: Any,
    ) -> Workflow:
        """Store ``canvas`` as a DAG in one transaction and start it.

        ``on_failure``: ``"continue"`` (the default, or the engine's
        ``on_failure`` option): after a failure every node whose parents all
        succeeded still runs, as in Celery; ``"stop"``: nothing not yet
        started runs. ``options`` are the call options of Celery's
        ``canvas.apply_async(args, kwargs, **options)`` (``countdown``,
        ``eta``, ``expires``, ``queue``, ``priority``, ``link``,
        ``link_error``, ``headers``, ...), applied as Celery applies them.
        ``key``: an idempotency key. A submit with a key already used returns
        the workflow stored then (two racing submits store one), as long as
        the canvas, args and kwargs are the same.

        Raises:
            UnknownTask: the canvas names a task the app does not know.
            InvalidCanvas: the canvas or its arguments cannot be stored.
            ValueError: ``on_failure`` is neither "continue" nor "stop", or
                ``key`` is not a string of 1 to 255 characters without NUL.
            SubmitKeyReused: ``key`` names a workflow of another canvas.
        """
        key = submit_key(key)
        policy = OnFailure.named(on_failure) if on_failure else self.on_failure
        new = compile_canvas(
            self.app, canvas, tuple(args), kwargs, name, metadata, options
        )
        new = replace(new, on_failure=policy, key=key)
        outcome = self.store.insert_workflow(new)
        if not outcome.recorded:  # the key named a stored workflow
            (stored,) = self.store.list_workflows(key=new.key, limit=1)
            return Workflow(self, stored.id, stored.name)
        delivery = self._after(new.id, outcome)
        if delivery.unsent:
            logger.warning(
                "workflow %s is stored, but %d of its first nodes could not be "
                "published yet: they stay QUEUED until a recovery pass sends them",
                new.id,
                delivery.unsent,
            )
        return Workflow(self, new.id, name)

    def workflow(self, workflow_id: str) -> Workflow:
        """The stored workflow ``workflow_id``, or the one whose id starts so.

        A short id (its first 8 or more characters, as ``celeriac show``
        prints it) will do when only one workflow's id starts with it.

        Raises:
            WorkflowNotFound: no workflow has this id, or starts with it.
            AmbiguousWorkflowId: several workflows' ids start with it.
        """
        try:
            record = self.store.get_workflow(workflow_id)
        except WorkflowNotFound:
            record = self.store.get_workflow(complete_id(self.store, workflow_id))
        return Workflow(self, record.id, record.name)

    def pause(self, workflow_id: str, *, by: str | None = None) -> None:
        """Stop dispatching; the workflow is PAUSED once nothing runs.

        ``by`` (here and for resume, cancel, retry) names who asked, in the
        event that records the change.
        """
        self._transition(workflow_id, "pause", by=by)

    def resume(self, workflow_id: str, *, by: str | None = None) -> Delivery:
        """Dispatch every ready node of a pausing or paused workflow.

        Returns how many nodes were published, and how many stay QUEUED
        because the broker could not be reached.
        """
        return self._transition(workflow_id, "resume", by=by)[1]

    def cancel(
        self, workflow_id: str, terminate: bool = False, *, by: str | None = None
    ) -> Delivery:
        """Cancel: nothing starts again; running tasks are revoked.

        Returns how many running tasks were revoked through the broker, and
        how many could not be.
        """
        result, _ = self._transition(workflow_id, "cancel", by=by)
        if result is None or not result.revoke:
            return Delivery()
        return self._revoke(result.revoke, terminate)

    def retry(self, workflow_id: str, *, by: str | None = None) -> Delivery:
        """Continue a FAILED workflow; succeeded nodes do not run again.

        Returns what was published, as ``resume()`` does.
        """
        return self._transition(workflow_id, "retry", by=by)[1]

    def recover(self, broker_emptied: bool = False) -> Delivery:
        """One recovery pass: publish again what a crash left behind.

        Publishes QUEUED nodes that did not start within the
        ``recovery_delay`` option (seconds, default 60), or every QUEUED
        node when ``broker_emptied`` (the broker lost its messages), and
        nodes RUNNING on a worker that stopped heartbeating, and applies the
        state changes a process died before making. Nodes are claimed and
        published a batch at a time, each batch by one of the processes
        running a pass at once; a workflow whose state change fails is
        logged and skipped. Returns how many nodes were published again, and
        how many stay QUEUED because the broker could not be reached.
        """
        delay = 0.0 if broker_emptied else self.recovery_delay
        since = now()
        delivery = Delivery()
        requeues: tuple[Callable[[Collection[str]], list[Dispatch]], ...] = (
            lambda skip: self.store.requeue_stale(delay, since, skip=skip),
            lambda skip: self.store.requeue_lost(self.liveness.timeout, skip=skip),
        )
        for requeue in requeues:
            while batch := self._readable_batch(requeue):
                logger.warning("recovery: publishing %d nodes again", len(batch))
                sent = self._publish(batch)
                delivery += sent
                if sent.broker_down:  # the rest waits for a later pass
                    break
        for workflow_id, trigger, failure in self.store.unsettled_workflows():
            logger.warning("recovery: %s workflow %s", trigger, workflow_id)
            try:
                self._transition_quietly(workflow_id, trigger, failure)
            except Exception:  # one workflow never blocks the others
                logger.exception(
                    "recovery: %s of workflow %s failed; skipped", trigger, workflow_id
                )
        return delivery

    def _readable_batch(
        self, requeue: Callable[[Collection[str]], list[Dispatch]]
    ) -> list[Dispatch]:
        """The next batch to publish again, without the workflows it cannot read.

        A workflow whose rows do not decode is logged once and left alone
        by this engine's passes from then on; the others are recovered.
        """
        while True:
            try:
                return requeue(frozenset(self._unreadable))
            except CorruptRecord as exc:
                if exc.workflow_id in self._unreadable:
                    raise  # skipped, and still in the way: nothing to learn
                self._unreadable.add(exc.workflow_id)
                logger.error("recovery: skipping workflow %s: %s", exc.workflow_id, exc)

    def purge(
        self,
        older_than: timedelta,
        states: Collection[str] | None = None,
        name: str | None = None,
        dry_run: bool = False,
        *,
        events_older_than: timedelta | None = None,
        workers_older_than: timedelta | None = None,
    ) -> int:
        """Delete workflows that finished more than ``older_than`` ago.

        Each goes with everything that belongs to it (nodes, edges,
        attempts, events), in short transactions. ``states`` narrows the
        purge to some of COMPLETED, FAILED and CANCELLED (the default: all
        three; any other state is refused with ``ValueError``), ``name`` to
        the workflows of that name. A workflow that has not finished is
        never purged. Event rows older than ``events_older_than`` and the
        rows of workers silent for ``workers_older_than`` go too (both
        default to ``older_than``). ``dry_run`` deletes nothing. Returns how
        many workflows were (or would be) deleted; :meth:`purge_counts`
        tells the rest.
        """
        return self.purge_counts(
            older_than,
            states,
            name,
            dry_run,
            events_older_than=events_older_than,
            workers_older_than=workers_older_than,
        ).workflows

    def purge_counts(
        self,
        older_than: timedelta,
        states: Collection[str] | None = None,
        name: str | None = None,
        dry_run: bool = False,
        *,
        events_older_than: timedelta | None = None,
        workers_older_than: timedelta | None = None,
    ) -> Purged:
        """:meth:`purge`, returning what it deleted (or would delete).

        Counts of workflows, nodes, events and worker rows.
        """
        retention = Retention.of(
            now(),
            older_than,
            states,
            name,
            events_older_than,
            workers_older_than,
            worker_timeout=timedelta(seconds=self.liveness.timeout),
        )
        return self.store.purge(retention, dry_run)

    @contextmanager
    def embedded_worker(self, concurrency: int = 2, **options: Any) -> Iterator[Any]:
        """Run a real Celery worker in this process (threads) while inside."""
        from celeriac.engine.worker import embedded_worker

        with embedded_worker(self.app, concurrency, **options) as worker:
            # Celery's test worker does not send worker_ready: start recovery here
            self.recovery.start()
            try:
                yield worker
            finally:
                self.recovery.stop()

    # -- called by the worker hooks ---------------------------------------

    def node_succeeded(self, node: NodeRequest, result: Any) -> None:
        """Record a node's result and dispatch what it made ready."""
        try:
            check_result(result, self.max_result_bytes)
        except (EncodeError, ResultTooLarge) as refused:
            self.node_failed(node, refused, None, None, None)
            return
        outcome = self._recorded(
            node.workflow_id,
            node.node_id,
            node.number,
            node.kind,
            lambda: self.store.record_success(
                node.workflow_id, node.node_id, node.number, result
            ),
        )
        if outcome is not None:
            self._after(node.workflow_id, outcome)

    def node_failed(
        self,
        node: NodeRequest,
        exc: BaseException,
        traceback: str | None,
        request: Any,
        einfo: Any,
    ) -> None:
        """Record a failure for good: run errbacks, fail the workflow."""
        outcome = self._recorded(
            node.workflow_id,
            node.node_id,
            node.number,
            node.kind,
            lambda: self.store.record_failure(
                node.workflow_id,
                node.node_id,
                node.number,
                type(exc).__name__,
                str(exc),
                traceback,
            ),
        )
        if outcome is not None:
            self._after_failure(
                node.workflow_id, node.node_id, node.kind, outcome, exc, request, einfo
            )

    def node_revoked(self, node: NodeRequest, reason: str) -> None:
        """Record a revoke; outside a cancel, the node's workflow fails."""
        outcome = self.store.record_revoked(node.workflow_id, node.node_id, reason)
        exc = TaskRevokedError(reason)
        self._after_failure(
            node.workflow_id, node.node_id, node.kind, outcome, exc, None, None
        )

    def settle(self, workflow_id: str) -> None:
        """PAUSED if the workflow is pausing and nothing runs any more."""
        self._transition_quietly(workflow_id, "settle")

    # -- internals --------------------------------------------------------

    def _recorded(
        self,
        workflow_id: str,
        node_id: str,
        number: int,
        kind: str,
        record: Callable[[], Outcome],
    ) -> Outcome | None:
        """``record()``'s outcome for a running attempt, or None if it raised.

        Whatever it raised, the node does not stay RUNNING on this process's
        lease: it fails with the cause recorded, or, when the database cannot
        take even that (``StorageError``), the attempt is released for the
        recovery pass to run again.
        """
        try:
            return record()
        except Exception as cause:
            logger.error(
                "the outcome of node %s (attempt %d) cannot be recorded: %s",
                node_id,
                number,
                first_line(cause),
                exc_info=True,
            )
            traceback = without_nul(format_exc()[-TRACEBACK_LIMIT:])
            self._fail_unrecorded(workflow_id, node_id, number, kind, cause, traceback)
            return None

    def _fail_unrecorded(
        self,
        workflow_id: str,
        node_id: str,
        number: int,
        kind: str,
        cause: Exception,
        traceback: str,
    ) -> None:
        """Fail a node whose outcome could not be recorded, or release it."""
        if not isinstance(cause, StorageError):
            exc_type, exc_message = unrecorded_error(cause)
            try:
                outcome = self.store.record_failure(
                    workflow_id, node_id, number, exc_type, exc_message, traceback
                )
            except Exception:
                logger.error("node %s cannot be failed either", node_id, exc_info=True)
            else:
                recorded = rebuilt_exception(exc_type, exc_message)
                self._after_failure(
                    workflow_id, node_id, kind, outcome, recorded, None, None
                )
                return
        self.liveness.release(workflow_id, node_id, number)

    def _after(self, workflow_id: str, outcome: Outcome) -> Delivery:
        delivery = self._publish(outcome.dispatch)
        if outcome.failing:
            self._transition_quietly(workflow_id, "fail")
        if outcome.finished:
            self._transition_quietly(workflow_id, "complete")
        elif outcome.settle:
            self.settle(workflow_id)
        return delivery

    def _after_failure(
        self,
        workflow_id: str,
        node_id: str,
        kind: str,
        outcome: Outcome,
        exc: BaseException,
        request: Any,
        einfo: Any,
    ) -> None:
        """Run the errbacks a failure queued, then fail the workflow.

        ``request`` (with ``exc`` and ``einfo``): the failed task's, for the
        errbacks that take them; None to rebuild them from the database.
        """
        if not outcome.recorded:
            return
        live = None
        if request is not None:
            live = ErrbackArguments(request, exc, getattr(einfo, "traceback", None))
        self._publish(outcome.dispatch, live)
        if kind != NodeKind.ERRBACK:
            self._transition_quietly(workflow_id, "fail", failure_of(node_id, exc))
        elif outcome.settle:
            self.settle(workflow_id)

    def _run_inline_errback(
        self, dispatch: Dispatch, arguments: ErrbackArguments | None
    ) -> None:
        """Run an errback that takes ``(request, exc, traceback)`` here.

        As Celery does, in the process that handles the failure: the worker
        that recorded it, or the recovery pass that found the errback
        QUEUED. ``arguments`` None: rebuilt from the stored failure.
        """
        node_id, workflow_id = dispatch.node_id, dispatch.workflow_id
        hostname = getattr(getattr(arguments, "request", None), "hostname", None)
        lease = self.liveness.lease(hostname)
        delivery = delivery_key(dispatch.attempt_base, 0)
        claim, number = self.store.claim_node(
            workflow_id, node_id, delivery, lease, uuid.uuid4().hex
        )
        if claim is not Claim.RUN:
            return
        errback = self.app.signature(dispatch.signature)
        try:
            if arguments is None:
                arguments = self._stored_failure(dispatch)
            result = errback(arguments.request, arguments.exc, arguments.traceback)
        except Exception as error:
            raised = (type(error).__name__, str(error), format_exc())
            outcome = self._recorded(
                workflow_id,
                node_id,
                number,
                NodeKind.ERRBACK,
                lambda: self.store.record_failure(
                    workflow_id,
                    node_id,
                    number,
                    raised[0],
                    raised[1],
                    without_nul(raised[2][-TRACEBACK_LIMIT:]),
                ),
            )
            if outcome is not None:
                self._after_failure(
                    workflow_id, node_id, NodeKind.ERRBACK, outcome, error, None, None
                )
        else:
            outcome = self._recorded(
                workflow_id,
                node_id,
                number,
                NodeKind.ERRBACK,
                lambda: self.store.record_success(workflow_id, node_id, number, result),
            )
            if outcome is not None:
                self._after(workflow_id, outcome)

    def _stored_failure(self, dispatch: Dispatch) -> ErrbackArguments:
        """An errback's ``(request, exc, traceback)``, rebuilt from the database."""
        failed_id = str(dispatch.inputs[0]) if dispatch.inputs else ""
        failed = self.store.failed_call(dispatch.workflow_id, failed_id)
        if failed is None:
            raise LookupError(
                f"errback {dispatch.node_id}: the failure of node {failed_id} "
                "it handles is no longer stored"
            )
        return rebuilt_arguments(failed)

    def _transition(
        self,
        workflow_id: str,
        trigger: str,
        error: Failure | None = None,
        by: str | None = None,
    ) -> tuple[TransitionResult | None, Delivery]:
        # a call's own token: a replay of its transaction finds what it did
        token = uuid.uuid4().hex if trigger in USER_TRIGGERS else None
        result = self.store.transition_workflow(
            workflow_id, trigger, decider(workflow_id), error, token, by
        )
        if result is None:
            return None, Delivery()
        if result.dest in TERMINAL_WORKFLOW_STATES:
            self.finishes.announce()
        delivery = self._publish(result.dispatch)
        return result, delivery + self._publish_queued(workflow_id, result)

    def _publish_queued(self, workflow_id: str, result: TransitionResult) -> Delivery:
        """Publish the nodes a transition queued (resume, retry), a page at a time.

        A million ready nodes are never all in memory: each page is read,
        published and let go. A process that dies half way leaves the rest
        QUEUED, for the recovery pass.
        """
        delivery = Delivery()
        after: int | None = -1
        while result.queued_at is not None and after is not None:
            page, after = self.store.queued_page(workflow_id, result.queued_at, after)
            delivery += self._publish(page)
        return delivery

    def _transition_quietly(
        self,
        workflow_id: str,
        trigger: str,
        error: Failure | None = None,
    ) -> None:
        """Internal triggers may lose a race (a cancel, a resume): that is fine."""
        with suppress(InvalidTransition):
            self._transition(workflow_id, trigger, error)

    def _publish(
        self, dispatch: list[Dispatch], arguments: ErrbackArguments | None = None
    ) -> Delivery:
        """Publish nodes; errbacks taking a request run here (``arguments``)."""
        inline = [
            d
            for d in dispatch
            if d.kind == NodeKind.ERRBACK and takes_request(self.app, d.signature)
        ]
        delivery = self._send([d for d in dispatch if d not in inline])
        for errback in inline:
            self._run_inline_errback(errback, arguments)
        return delivery

    def _send(self, dispatch: list[Dispatch]) -> Delivery:
        published = scheduler.publish(self.app, dispatch)
        for refused, exc in published.refused:
            logger.warning("node %s cannot be sent: %s", refused.node_id, exc)
            outcome = self.store.record_unsendable(
                refused.workflow_id, refused.node_id, type(exc).__name__, str(exc)
            )
            request = Context(id=refused.node_id, task=refused.signature["task"])
            self._after_failure(
                refused.workflow_id,
                refused.node_id,
                refused.kind,
                outcome,
                exc,
                request,
                None,
            )
        unsent, failed = published.unsent, len(published.refused)
        return Delivery(len(dispatch) - unsent - failed, unsent, failed)

    def _revoke(self, task_ids: list[str], terminate: bool) -> Delivery:
        try:
            self.app.control.revoke(task_ids, terminate=terminate)
        except Exception as exc:  # the state is committed; revoking is best effort
            logger.warning(
                "could not revoke %d tasks: %s: %s",
                len(task_ids),
                type(exc).__name__,
                exc,
            )
            return Delivery(unsent=len(task_ids))
        return Delivery(sent=len(task_ids))


def without_nul(text: str) -> str:
    """``text`` with its NUL characters spelled out (a text column refuses them)."""
    return text.replace("\x00", "\\x00")


def unrecorded_error(cause: Exception) -> tuple[str, str]:
    """The error a node fails with when its outcome could not be recorded.

    The cause's type and first line; for an error of the database (wrapped
    by SQLAlchemy), the driver's own.
    """
    inner = cause.orig if isinstance(cause, sa.exc.StatementError) else None
    error = inner if isinstance(inner, Exception) else cause
    message = without_nul(first_line(error))
    return type(error).__name__, f"the outcome could not be recorded: {message}"


#: The state changes a user asks for; each call's transaction is replayable.
USER_TRIGGERS = frozenset({"pause", "resume", "cancel", "retry"})
#: The longest submit key the database keeps.
MAX_KEY_LENGTH = 255


def submit_key(key: object) -> str | None:
    """``key`` checked: None, or a non-empty string the database can keep."""
    if key is None:
        return None
    if not isinstance(key, str) or not key or "\x00" in key:
        raise ValueError(f"key must be a non-empty string without NUL, not {key!r}")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"key is {len(key)} characters long; at most 255")
    return key
