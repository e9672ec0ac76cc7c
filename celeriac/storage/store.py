"""Store: every read and write celeriac makes, each a named domain method.

Each public method is one transaction. Writes that must respect the
workflow's state read the workflow row ``FOR SHARE`` (node outcomes, claims),
so that state changes, which take it ``FOR UPDATE``, wait for them and are
waited for: after ``pause()`` commits, no transaction dispatches a node.
SQLite has no row locks; there every write transaction is ``BEGIN IMMEDIATE``,
which serializes writers.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

import sqlalchemy as sa

from celeriac.errors import WorkflowNotFound
from celeriac.records import (
    Attempt,
    Dispatch,
    FailedCall,
    Failure,
    Lease,
    NewWorkflow,
    Node,
    Outcome,
    TransitionResult,
    WorkflowRecord,
)
from celeriac.states import (
    TERMINAL_WORKFLOW_STATES,
    AttemptState,
    NodeKind,
    NodeState,
    WorkflowState,
    held_back_as,
    may_start,
    sources_of,
    starts_under,
)
from celeriac.storage import (
    bulk,
    claims,
    failures,
    finishes,
    graph,
    integrity,
    listing,
    progress,
    recovery,
    replays,
    rows,
    task_ids,
)
from celeriac.storage.batches import PAGE
from celeriac.storage.claims import Admission
from celeriac.storage.database import retry_transient
from celeriac.storage.integrity import names_corruption
from celeriac.storage.listing import Cursor, WorkflowFilter
from celeriac.storage.outline import Clustered, Outline, read_drawing
from celeriac.storage.retention import Purged, Purger, Retention
from celeriac.storage.rows import now
from celeriac.storage.schema import attempts, edges, nodes, workers, workflows

Decide = Callable[[str, str], str]

_N = NodeState
_W = WorkflowState
#: The states a claim starts a node from (the table's ``start`` edges).
_CLAIMABLE = sources_of("start")


class Claim(Enum):
    """The answer to a worker asking whether it may run a node's body."""

    RUN = "run"
    #: the workflow is pausing: the node went back to PENDING
    HOLD = "hold"
    #: a duplicate, or the workflow no longer runs this node
    DROP = "drop"


def _lock_as_claims_do(
    conn: sa.Connection, workflow_id: str, node_id: str
) -> tuple[str, Any]:
    """Lock the workflow (shared), then the node, as a claim does.

    Returns the workflow's state and the node's row (``claims.lock_node``).

    A write that touches a node's attempts takes these locks first, in the
    claim's order (workflow, node, attempts), so that it and a claim of the
    same node wait for each other instead of deadlocking.
    """
    state = graph.workflow_state(conn, workflow_id, lock="share")
    return state, claims.lock_node(conn, workflow_id, node_id)


#: What a workflow's record holds: not its canvas and arguments, which grow
#: with the canvas, so that polling a workflow costs the same at any size.
_RECORD_COLUMNS = tuple(
    column for column in workflows.c if column.name not in ("canvas", "args", "kwargs")
)
#: What a ``Node`` shows: not the signature the node is published with.
_NODE_COLUMNS = tuple(column for column in nodes.c if column.name != "signature")


def _shown(bookkeeping: bool) -> sa.ColumnElement[bool]:
    """The nodes users see: tasks and errbacks; ``bookkeeping`` adds joins, END."""
    kinds = [NodeKind.TASK, NodeKind.ERRBACK]
    if bookkeeping:
        kinds += [NodeKind.JOIN, NodeKind.END]
    return nodes.c.kind.in_(kinds)


def _node_records(
    node_rows: Sequence[Any], attempt_rows: Sequence[Any], edge_rows: Sequence[Any]
) -> list[Node]:
    """``Node`` records for node rows, with their attempts and parents."""
    by_node: dict[str, list[Attempt]] = {}
    for row in attempt_rows:
        by_node.setdefault(row.node_id, []).append(rows.attempt_record(row))
    parents: dict[str, list[str]] = {}
    for edge in edge_rows:
        parents.setdefault(edge.child_id, []).append(edge.parent_id)
    return [
        Node(
            id=row.id,
            task=row.task,
            state=integrity.node_state(row.workflow_id, row.id, row.state),
            kind=row.kind,
            position=row.position,
            attempts=by_node.get(row.id, []),
            result=row.result,
            error=f"{row.exc_type}: {row.exc_message}" if row.exc_type else None,
            exc_type=row.exc_type,
            label=row.label,
            parents=parents.get(row.id, []),
            progress=progress.node_progress(row),
        )
        for row in node_rows
    ]


class Store:
    """All of celeriac's persistence, behind named methods."""

    def __init__(self, db: sa.Engine) -> None:
        self.db = db

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self.db.begin() as conn:
            graph.start_events(conn)
            yield conn
            graph.write_events(conn)

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with (
            self.db.connect().execution_options(celeriac_read_only=True) as conn,
            conn.begin(),
        ):
            yield conn

    # -- submission -------------------------------------------------------

    @retry_transient
    def insert_workflow(self, new: NewWorkflow) -> Outcome:
        """Store a compiled workflow and mark its first nodes QUEUED.

        The outcome is ``finished`` for a canvas without any task (an empty
        group): its END node completes right away. A replay of a submit that
        committed offers its first nodes again. When ``new.key`` already
        names a workflow (a racing submit included), nothing is stored and
        the outcome is not ``recorded``; ``SubmitKeyReused`` if that
        workflow has another canvas.
        """
        digest = replays.fingerprint(new)
        try:
            return self._insert_workflow(new, digest)
        except sa.exc.IntegrityError:
            if new.key is None:
                raise
            with self._read() as conn:  # a racing submit of the key committed
                stored = replays.stored_submission(conn, new, digest)
            if stored is None:
                raise
            return stored

    def _insert_workflow(self, new: NewWorkflow, digest: str) -> Outcome:
        at = now()
        with self._write() as conn:
            stored = replays.stored_submission(conn, new, digest)
            if stored is not None:
                return stored
            task_ids.refuse_taken(conn, new.frozen_ids)
            conn.execute(
                workflows.insert(),
                {
                    "id": new.id,
                    "name": new.name,
                    "state": _W.IN_PROGRESS,
                    "canvas": new.canvas,
                    "args": new.args,
                    "kwargs": new.kwargs,
                    "metadata": new.metadata,
                    "submit_key": new.key,
                    "fingerprint": digest,
                    "result_node_id": new.result_node_id,
                    "on_failure": new.on_failure,
                    "created_at": at,
                    "updated_at": at,
                },
            )
            bulk.insert_rows(
                conn,
                nodes,
                [
                    {
                        "id": n.id,
                        "workflow_id": new.id,
                        "position": n.position,
                        "kind": n.kind,
                        "task": n.task,
                        "label": n.label,
                        "signature": n.signature,
                        "state": _N.PENDING,
                        "waiting": n.waiting,
                        "created_at": at,
                    }
                    for n in new.nodes
                ],
            )
            bulk.insert_rows(
                conn,
                edges,
                [
                    {
                        "workflow_id": new.id,
                        "parent_id": e.parent_id,
                        "child_id": e.child_id,
                        "position": e.position,
                        "on_error": e.on_error,
                    }
                    for e in new.edges
                ],
            )
            graph.add_event(conn, new.id, None, None, _W.IN_PROGRESS, at)
            roots = [
                graph.Ready(n.id, n.kind, n.signature, 0, n.position)
                for n in new.nodes
                if n.waiting == 0 and n.kind != NodeKind.ERRBACK
            ]
            dispatch, finished = graph.release(
                conn, new.id, _W.IN_PROGRESS, roots, (), at
            )
        return Outcome(True, dispatch, _W.IN_PROGRESS, finished)

    # -- worker side: the hot path ----------------------------------------

    @retry_transient
    def claim_node(
        self,
        workflow_id: str,
        node_id: str,
        delivery: str,
        lease: Lease,
        token: str,
    ) -> tuple[Claim, int]:
        """Decide whether this delivery of a node may run; record its attempt.

        ``delivery`` names the message ("<dispatch base>.<Celery retries>"):
        a second delivery of one message is a duplicate, dropped while the
        first runs or after it finished, taken over when its worker is dead.
        ``token`` is unique to this claim, so that a replay of the
        transaction (a lost commit reply) finds its own attempt. Returns the
        claim and the attempt number it recorded.
        """
        at = now()
        with self._write() as conn:
            if claims.claim_first(
                conn, workflow_id, node_id, delivery, token, lease, at
            ):
                return Claim.RUN, 1
            state = graph.workflow_state(conn, workflow_id, lock="share")
            node = claims.lock_node(conn, workflow_id, node_id)
            if node is None or not starts_under(node.kind):  # JOIN, END: never
                return Claim.DROP, 0
            if not may_start(node.kind, state):
                back = held_back_as(state)
                moved = graph.set_node_state(
                    conn, workflow_id, [node_id], graph.UNFINISHED[1:], back, at
                )
                pausing = state in (_W.REQUESTING_PAUSE, _W.PAUSED)
                return (Claim.HOLD if moved and pausing else Claim.DROP), 0
            # no attempt yet (an errback's first claim): nothing to look up
            admission, number = (
                (Admission.NEW, 0)
                if node.current_attempt == 0
                else claims.admit_delivery(
                    conn,
                    workflow_id,
                    node,
                    node_id,
                    delivery,
                    token,
                    lease.dead_before,
                    at,
                )
            )
            if admission is Admission.REPLAYED:
                return Claim.RUN, number
            if admission is Admission.DUPLICATE or node.state not in _CLAIMABLE:
                return Claim.DROP, 0
            number = node.current_attempt + 1
            claims.start_attempt(
                conn,
                workflow_id,
                node_id,
                number,
                delivery,
                token,
                lease,
                at,
                node.state,
            )
        return Claim.RUN, number

    @retry_transient
    def record_success(
        self, workflow_id: str, node_id: str, number: int, result: Any
    ) -> Outcome:
        """Record a node's result and release the successors it made ready."""
        at = now()
        with self._write() as conn:
            state = graph.workflow_state(conn, workflow_id, lock="share")
            if not graph.finish_node(
                conn, workflow_id, node_id, number, _N.SUCCEEDED, at, result=result
            ):
                if not graph.finished_by(
                    conn, workflow_id, node_id, number, _N.SUCCEEDED
                ):
                    return Outcome(False, [], state)
                # a replay: this attempt's first commit went through unseen
                dispatch, finished = graph.replay_release(
                    conn, workflow_id, node_id, False
                )
                pausing = state == _W.REQUESTING_PAUSE
                return Outcome(True, dispatch, state, finished, settle=pausing)
            graph.finish_attempt(
                conn, workflow_id, node_id, number, AttemptState.SUCCEEDED, at
            )
            graph.add_event(conn, workflow_id, node_id, _N.RUNNING, _N.SUCCEEDED, at)
            children = graph.decrement_children(conn, workflow_id, node_id)
            dispatch, finished = graph.release(
                conn, workflow_id, state, children, (result,), at
            )
            failing = (
                not dispatch
                and not finished
                and state not in TERMINAL_WORKFLOW_STATES
                and failures.has_failure(conn, workflow_id)
            )
        return Outcome(
            True,
            dispatch,
            state,
            finished,
            settle=state == _W.REQUESTING_PAUSE,
            failing=failing,
        )

    @retry_transient
    def record_failure(
        self,
        workflow_id: str,
        node_id: str,
        number: int,
        exc_type: str,
        exc_message: str,
        traceback: str | None,
    ) -> Outcome:
        """Record that a node failed for good, and queue the errbacks it triggers."""
        at = now()
        with self._write() as conn:
            state = graph.workflow_state(conn, workflow_id, lock="share")
            if not graph.finish_node(
                conn,
                workflow_id,
                node_id,
                number,
                _N.FAILED,
                at,
                exc=(exc_type, exc_message),
            ):
                if not graph.finished_by(conn, workflow_id, node_id, number, _N.FAILED):
                    return Outcome(False, [], state)
                errbacks, _ = graph.replay_release(conn, workflow_id, node_id, True)
                pausing = state == _W.REQUESTING_PAUSE
                return Outcome(True, errbacks, state, settle=pausing)
            graph.finish_attempt(
                conn,
                workflow_id,
                node_id,
                number,
                AttemptState.FAILED,
                at,
                exc_type=exc_type,
                exc_message=exc_message,
                traceback=traceback,
            )
            graph.add_event(
                conn, workflow_id, node_id, _N.RUNNING, _N.FAILED, at, exc_type
            )
            errbacks = graph.queue_errbacks(conn, workflow_id, node_id, at)
        return Outcome(True, errbacks, state, settle=state == _W.REQUESTING_PAUSE)

    @retry_transient
    def record_unsendable(
        self, workflow_id: str, node_id: str, exc_type: str, exc_message: str
    ) -> Outcome:
        """A QUEUED node whose message Celery refused to build fails for good.

        (Celery checks a task's arguments when it publishes: a chain step that
        cannot take its parent's result fails the chain, as it does natively.)
        """
        at = now()
        with self._write() as conn:
            state = graph.workflow_state(conn, workflow_id, lock="share")
            failed = conn.execute(
                sa.update(nodes)
                .where(
                    nodes.c.workflow_id == workflow_id,
                    nodes.c.id == node_id,
                    nodes.c.state == _N.QUEUED,
                )
                .values(
                    state=_N.FAILED,
                    exc_type=exc_type,
                    exc_message=exc_message,
                    finished_at=at,
                )
            ).rowcount
            if not failed:
                return Outcome(False, [], state)
            graph.add_event(
                conn, workflow_id, node_id, _N.QUEUED, _N.FAILED, at, exc_type
            )
            errbacks = graph.queue_errbacks(conn, workflow_id, node_id, at)
        return Outcome(True, errbacks, state, settle=state == _W.REQUESTING_PAUSE)

    @retry_transient
    def record_retry(
        self,
        workflow_id: str,
        node_id: str,
        number: int,
        exc_type: str,
        exc_message: str,
        eta: datetime | None,
    ) -> None:
        """Record that attempt ``number`` ended in a Celery retry.

        With a zero countdown the next attempt may have been claimed first,
        ending this one then: its end time stays.
        """
        at = now()
        with self._write() as conn:
            _lock_as_claims_do(conn, workflow_id, node_id)
            graph.finish_attempt(
                conn,
                workflow_id,
                node_id,
                number,
                AttemptState.RETRY,
                at,
                exc_type=exc_type,
                exc_message=exc_message,
                retry_eta=eta,
            )
            moved = conn.execute(
                sa.update(nodes)
                .where(
                    nodes.c.workflow_id == workflow_id,
                    nodes.c.id == node_id,
                    nodes.c.state == _N.RUNNING,
                    nodes.c.current_attempt == number,
                )
                .values(state=_N.RETRYING)
            ).rowcount
            if moved:
                graph.add_event(
                    conn, workflow_id, node_id, _N.RUNNING, _N.RETRYING, at, exc_type
                )

    @retry_transient
    def release_attempt(self, workflow_id: str, node_id: str, number: int) -> bool:
        """Give running attempt ``number`` up to recovery: no lease covers it now.

        For an attempt whose outcome its worker could not record: the next
        recovery pass (or a redelivery of its message) takes it for lost and
        runs the node again. False if the attempt no longer runs.
        """
        with self._write() as conn:
            released = conn.execute(
                sa.update(attempts)
                .where(
                    attempts.c.workflow_id == workflow_id,
                    attempts.c.node_id == node_id,
                    attempts.c.number == number,
                    attempts.c.state == AttemptState.RUNNING,
                )
                .values(worker_id=None)
            ).rowcount
        return bool(released)

    @retry_transient
    def record_revoked(self, workflow_id: str, node_id: str, reason: str) -> Outcome:
        """Record that Celery revoked a node: by cancel, terminate or expiry.

        A node revoked while its workflow runs (an ``expires`` that ran out,
        an operator's ``celery control revoke``) can never finish: it fails
        for good with ``TaskRevokedError`` and ``reason``, and the outcome is
        recorded. Errbacks do not run, as in Celery. Otherwise (a cancelled
        or finished workflow) the node just stops where it is.
        """
        at = now()
        with self._write() as conn:
            state, node = _lock_as_claims_do(conn, workflow_id, node_id)
            conn.execute(
                sa.update(attempts)
                .where(
                    attempts.c.workflow_id == workflow_id,
                    attempts.c.node_id == node_id,
                    attempts.c.state == AttemptState.RUNNING,
                )
                .values(state=AttemptState.REVOKED, finished_at=at)
            )
            unfinished = (*graph.UNFINISHED, _N.RUNNING)
            if state in TERMINAL_WORKFLOW_STATES:
                back = held_back_as(state)
                graph.set_node_state(conn, workflow_id, [node_id], unfinished, back, at)
                return Outcome(False, [], state)
            failed = conn.execute(
                sa.update(nodes)
                .where(
                    nodes.c.workflow_id == workflow_id,
                    nodes.c.id == node_id,
                    nodes.c.state.in_(unfinished),
                )
                .values(
                    state=_N.FAILED,
                    exc_type="TaskRevokedError",
                    exc_message=reason,
                    finished_at=at,
                )
            ).rowcount
            if failed:
                graph.add_event(
                    conn,
                    workflow_id,
                    node_id,
                    node.state,
                    _N.FAILED,
                    at,
                    "TaskRevokedError",
                )
        return Outcome(bool(failed), [], state)

    # -- workflow state changes -------------------------------------------

    @names_corruption
    @retry_transient
    def transition_workflow(
        self,
        workflow_id: str,
        trigger: str,
        decide: Decide,
        error: Failure | None = None,
        token: str | None = None,
        by: str | None = None,
    ) -> TransitionResult | None:
        """Apply ``trigger`` to a workflow, with its side effects, atomically.

        ``token``, unique to the call, keeps what it did: a replay whose first
        try committed returns that (the tasks a cancel revokes included).
        ``by`` names who asked: the event's detail is then ``pause by NAME``.

        ``decide(state, trigger)`` names the new state or raises
        ``InvalidTransition``; nothing is written then. Returns None when an
        internal trigger has nothing to do (``settle`` with nodes running,
        ``fail`` while nodes can still run: ``error`` is kept meanwhile).
        """
        at = now()
        with self._write() as conn:
            if token is not None:
                replayed = replays.recorded_transition(conn, token, workflow_id)
                if replayed is not None:
                    return replayed
            source = graph.workflow_state(conn, workflow_id, lock="update")
            dest = decide(source, trigger)
            counts = graph.running_and_queued(conn, workflow_id)
            if trigger == "settle" and counts[_N.RUNNING]:
                return None
            if trigger == "fail":
                if error is not None:
                    failures.keep_first(conn, workflow_id, error)
                if not failures.may_end(conn, workflow_id):
                    return None
            dispatch: list[Dispatch] = []
            revoke: list[str] = []
            queued_at = None
            values: dict[str, Any] = {"state": dest, "updated_at": at}
            asked = trigger if by is None else f"{trigger} by {by}"
            graph.add_event(conn, workflow_id, None, source, dest, at, asked)
            if trigger == "pause" and not counts[_N.RUNNING]:
                settled = decide(dest, "settle")
                graph.add_event(conn, workflow_id, None, dest, settled, at, "settle")
                values["state"] = dest = settled
            elif trigger in ("resume", "retry"):
                if trigger == "retry":
                    graph.reset_failed(conn, workflow_id, at)
                    values.update(
                        failed_node_id=None,
                        exc_type=None,
                        exc_message=None,
                        exc_class=None,
                        exc_args=None,
                    )
                    values["finished_at"] = None
                integrity.check_node_states(conn, workflow_id)
                integrity.check_ready_signatures(conn, workflow_id)
                if graph.redispatch_ready(conn, workflow_id, at):
                    queued_at = at
            elif trigger == "cancel":
                revoke = graph.cancel_nodes(conn, workflow_id, at)
                values["finished_at"] = at
            elif trigger == "complete":
                values.update(result=graph.result_of(conn, workflow_id), finished_at=at)
                graph.set_node_state(
                    conn,
                    workflow_id,
                    None,
                    (_N.PENDING,),
                    _N.SKIPPED,
                    at,
                    kind=NodeKind.ERRBACK,
                )
            elif trigger == "fail":
                graph.skip_unrun(conn, workflow_id, at)
                values["finished_at"] = at
            conn.execute(
                sa.update(workflows)
                .where(workflows.c.id == workflow_id)
                .values(**values)
            )
            if dest in TERMINAL_WORKFLOW_STATES:
                finishes.notify_finished(conn, workflow_id)
            if token is not None:
                replays.record_transition(
                    conn, token, workflow_id, trigger, (source, dest, revoke), at
                )
        return TransitionResult(source, dest, dispatch, revoke, queued_at)

    @names_corruption
    @retry_transient
    def queued_page(
        self, workflow_id: str, queued_at: datetime, after: int = -1
    ) -> tuple[list[Dispatch], int | None]:
        """A page of the nodes a transition queued at ``queued_at``, to publish.

        Those still QUEUED past canvas position ``after``; with the position
        the next page starts after, None after the last page.
        """
        with self._read() as conn:
            return graph.queued_page(conn, workflow_id, queued_at, after, PAGE)

    # -- recovery ---------------------------------------------------------

    @names_corruption
    @retry_transient
    def requeue_stale(
        self,
        older_than: float,
        since: datetime | None = None,
        limit: int = PAGE,
        skip: Collection[str] = (),
    ) -> list[Dispatch]:
        """A batch of nodes ``older_than`` seconds overdue at ``since``.

        To publish again: QUEUED nodes not started since they were queued,
        and RETRYING nodes whose Celery retry was due that long ago, up to
        ``limit`` of each; a node published again waits twice as long each
        time. A pass calls it again, with the same ``since`` (its start,
        default now), until it returns nothing: each batch is claimed in its
        own short transaction, and passes running at once share the nodes.
        The nodes of the workflows in ``skip`` are left out.
        """
        at = now()
        since = since or at
        delay = timedelta(seconds=older_than)
        with self._write() as conn:
            stale = recovery.requeue_stale(conn, delay, since, at, limit, skip)
            return stale + recovery.requeue_retrying(
                conn, delay, since, at, limit, skip
            )

    @names_corruption
    @retry_transient
    def requeue_lost(
        self, dead_after: float, limit: int = PAGE, skip: Collection[str] = ()
    ) -> list[Dispatch]:
        """A batch of nodes RUNNING on workers silent for ``dead_after`` s.

        Up to ``limit``, to publish again; call it again until it returns
        nothing. The nodes of the workflows in ``skip`` are left out.
        """
        at = now()
        dead_before = at - timedelta(seconds=dead_after)
        with self._write() as conn:
            return recovery.requeue_lost(conn, dead_before, at, limit, skip)

    @retry_transient
    def heartbeat(self, worker_id: str, hostname: str | None, pid: int) -> None:
        """Renew a worker process's lease on the attempts it runs."""
        at = now()
        with self._write() as conn:
            renewed = conn.execute(
                sa.update(workers)
                .where(workers.c.id == worker_id)
                .values(heartbeat_at=at)
            ).rowcount
            if not renewed:
                conn.execute(
                    workers.insert(),
                    {
                        "id": worker_id,
                        "hostname": hostname,
                        "pid": pid,
                        "started_at": at,
                        "heartbeat_at": at,
                    },
                )

    @names_corruption
    @retry_transient
    def unsettled_workflows(self) -> list[tuple[str, str, Failure | None]]:
        """(workflow id, trigger, failure) for workflows whose state lags behind."""
        with self._read() as conn:
            return [
                (workflow_id, trigger, recovery.first_failure(conn, workflow_id))
                for workflow_id, trigger in recovery.unsettled_workflows(conn)
            ]

    @retry_transient
    def failed_call(self, workflow_id: str, node_id: str) -> FailedCall | None:
        """How failed node ``node_id`` was called and failed (None: not FAILED)."""
        with self._read() as conn:
            return recovery.failed_call(conn, workflow_id, node_id)

    # -- reads ------------------------------------------------------------

    @names_corruption
    @retry_transient
    def get_workflow(self, workflow_id: str) -> WorkflowRecord:
        """The workflow row; raises ``WorkflowNotFound``."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(*_RECORD_COLUMNS).where(workflows.c.id == workflow_id)
            ).first()
        if row is None:
            raise WorkflowNotFound(workflow_id)
        return rows.workflow_record(row)

    @retry_transient
    def workflow_ids_starting(self, prefix: str, limit: int) -> list[str]:
        """At most ``limit`` ids of workflows that start with ``prefix``, sorted."""
        query = (
            sa.select(workflows.c.id)
            .where(workflows.c.id.startswith(prefix, autoescape=True))
            .order_by(workflows.c.id)
            .limit(limit)
        )
        with self._read() as conn:
            return list(conn.execute(query).scalars())

    @names_corruption
    @retry_transient
    def workflow_state(self, workflow_id: str) -> str:
        """The workflow's current state; raises ``WorkflowNotFound``."""
        with self._read() as conn:
            return graph.workflow_state(conn, workflow_id, lock=None)

    @names_corruption
    @retry_transient
    def list_workflows(
        self,
        state: str | None = None,
        name: str | None = None,
        limit: int = 50,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        key: str | None = None,
    ) -> list[WorkflowRecord]:
        """Workflows, newest first, optionally filtered.

        ``created_after`` keeps those created at or after it,
        ``created_before`` those created before it; ``key``, the one
        submitted with that key.
        """
        where = WorkflowFilter(state, name, key, created_after, created_before)
        return self.workflow_page(where, limit)

    @names_corruption
    @retry_transient
    def workflow_page(
        self, where: WorkflowFilter, limit: int = 50, after: Cursor | None = None
    ) -> list[WorkflowRecord]:
        """The newest ``limit`` workflows matching ``where``, below ``after``."""
        query = listing.page_query(_RECORD_COLUMNS, where, limit, after)
        with self._read() as conn:
            return [rows.workflow_record(row) for row in conn.execute(query)]

    @retry_transient
    def count_workflow_states(self, where: WorkflowFilter) -> dict[str, int]:
        """Workflows matching ``where`` in any state, counted by state."""
        with self._read() as conn:
            return listing.count_states(conn, where)

    @retry_transient
    def matching_workflow_ids(self, where: WorkflowFilter, limit: int) -> list[str]:
        """Ids of at most ``limit`` workflows matching ``where``, newest first."""
        with self._read() as conn:
            return listing.matching_ids(conn, where, limit)

    @names_corruption
    @retry_transient
    def outline(
        self, workflow_id: str, most_nodes: int, most_clusters: int
    ) -> Outline | Clustered:
        """What a drawing of the workflow needs: no values, no attempts.

        Every node and edge up to ``most_nodes`` nodes; past that, nodes
        counted by first parent, task and state (``storage/outline.py``).
        """
        with self._read() as conn:
            return read_drawing(conn, workflow_id, most_nodes, most_clusters)

    @names_corruption
    @retry_transient
    def list_nodes(self, workflow_id: str, bookkeeping: bool = False) -> list[Node]:
        """The workflow's task and errback nodes in canvas order, with attempts.

        ``bookkeeping`` adds the JOIN and END nodes the database completes,
        for drawing the whole graph.
        """
        with self._read() as conn:
            node_rows = conn.execute(
                sa.select(*_NODE_COLUMNS)
                .where(nodes.c.workflow_id == workflow_id, _shown(bookkeeping))
                .order_by(nodes.c.position)
            ).all()
            attempt_rows = conn.execute(
                sa.select(attempts)
                .where(attempts.c.workflow_id == workflow_id)
                .order_by(attempts.c.number)
            ).all()
            edge_rows = conn.execute(
                sa.select(edges.c.parent_id, edges.c.child_id)
                .where(edges.c.workflow_id == workflow_id)
                .order_by(edges.c.position)
            ).all()
        return _node_records(node_rows, attempt_rows, edge_rows)

    @names_corruption
    @retry_transient
    def node_page(
        self, workflow_id: str, after: int = -1, limit: int = PAGE
    ) -> tuple[list[Node], int | None]:
        """Up to ``limit`` of ``list_nodes``'s nodes past canvas position ``after``.

        With the position the next page starts after, None after the last
        page. Each page is one short read, whatever the workflow's size.
        """
        with self._read() as conn:
            node_rows = conn.execute(
                sa.select(*_NODE_COLUMNS)
                .where(
                    nodes.c.workflow_id == workflow_id,
                    nodes.c.position > after,
                    _shown(False),
                )
                .order_by(nodes.c.position)
                .limit(limit)
            ).all()
            ids = [row.id for row in node_rows]
            attempt_rows = conn.execute(
                sa.select(attempts)
                .where(
                    attempts.c.workflow_id == workflow_id, attempts.c.node_id.in_(ids)
                )
                .order_by(attempts.c.number)
            ).all()
            edge_rows = conn.execute(
                sa.select(edges.c.parent_id, edges.c.child_id)
                .where(edges.c.workflow_id == workflow_id, edges.c.child_id.in_(ids))
                .order_by(edges.c.position)
            ).all()
        last = node_rows[-1].position if len(node_rows) == limit else None
        return _node_records(node_rows, attempt_rows, edge_rows), last

    @names_corruption
    @retry_transient
    def node_with_errbacks(
        self, workflow_id: str, node_id: str
    ) -> tuple[Node, list[Node]] | None:
        """One node with its attempts, and the errbacks guarding it (None: no node)."""
        guards = sa.select(edges.c.child_id).where(
            edges.c.workflow_id == workflow_id,
            edges.c.parent_id == node_id,
            edges.c.on_error,
        )
        with self._read() as conn:
            node_rows = conn.execute(
                sa.select(*_NODE_COLUMNS)
                .where(
                    nodes.c.workflow_id == workflow_id,
                    sa.or_(nodes.c.id == node_id, nodes.c.id.in_(guards)),
                )
                .order_by(nodes.c.position)
            ).all()
            ids = [row.id for row in node_rows]
            attempt_rows = conn.execute(
                sa.select(attempts)
                .where(attempts.c.node_id.in_(ids))
                .order_by(attempts.c.number)
            ).all()
            edge_rows = conn.execute(
                sa.select(edges.c.parent_id, edges.c.child_id)
                .where(edges.c.workflow_id == workflow_id, edges.c.child_id.in_(ids))
                .order_by(edges.c.position)
            ).all()
        found = _node_records(node_rows, attempt_rows, edge_rows)
        node = next((n for n in found if n.id == node_id), None)
        if node is None:
            return None
        return node, [n for n in found if n.id != node_id]

    @retry_transient
    def count_nodes(
        self, workflow_id: str, label: str | None = None
    ) -> dict[tuple[str, str], int]:
        """How many nodes there are of each (kind, state)."""
        query = (
            sa.select(nodes.c.kind, nodes.c.state, sa.func.count())
            .where(nodes.c.workflow_id == workflow_id)
            .group_by(nodes.c.kind, nodes.c.state)
        )
        if label is not None:
            query = query.where(nodes.c.label == label)
        with self._read() as conn:
            return {(kind, state): count for kind, state, count in conn.execute(query)}

    # -- retention --------------------------------------------------------

    def purge(self, retention: Retention, dry_run: bool = False) -> Purged:
        """Delete what ``retention`` names, in short transactions.

        ``dry_run`` deletes nothing and counts what would go.
        """
        purger = Purger(self.db)
        return purger.count(retention) if dry_run else purger.run(retention)

    # -- progress reported by task bodies ---------------------------------

    def record_progress(
        self,
        workflow_id: str,
        node_id: str,
        number: int,
        current: float,
        total: float | None,
        message: str | None,
    ) -> bool:
        """Store attempt ``number``'s progress report; False once it is over.

        Not retried: a report is advisory, and the next one replaces it.
        """
        with self._write() as conn:
            return progress.record(
                conn, workflow_id, node_id, number, current, total, message, now()
            )

    @names_corruption
    @retry_transient
    def count_task_progress(
        self, workflow_id: str, label: str | None = None
    ) -> tuple[dict[str, int], float]:
        """TASK nodes by state, and how much of the running ones' work is done."""
        with self._read() as conn:
            return progress.task_counts(conn, workflow_id, label)
