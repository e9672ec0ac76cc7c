"""Changes asked for from outside a task: workflow transitions, purges, progress."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from celeriac.records import (
    Dispatch,
    FailedCall,
    Failure,
    TransitionResult,
)
from celeriac.states import (
    TERMINAL_WORKFLOW_STATES,
    NodeKind,
    NodeState,
    WorkflowState,
)
from celeriac.storage import (
    dispatches,
    event_log,
    failures,
    finishes,
    integrity,
    moves,
    progress,
    recovery,
    replays,
    workflow_steps,
)
from celeriac.storage.batches import PAGE
from celeriac.storage.database import retry_transient
from celeriac.storage.integrity import names_corruption
from celeriac.storage.retention import Purger
from celeriac.storage.retention_policy import Purged, Retention
from celeriac.storage.rows import now
from celeriac.storage.schema import workflows
from celeriac.storage.transactions import StoreBase

_N = NodeState
_W = WorkflowState


Decide = Callable[[str, str], str]


class ControlStore(StoreBase):
    """Workflow state changes, retention and progress reports."""

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
            source = workflow_steps.workflow_state(conn, workflow_id, lock="update")
            dest = decide(source, trigger)
            counts = workflow_steps.running_and_queued(conn, workflow_id)
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
            event_log.add_event(conn, workflow_id, None, source, dest, at, asked)
            if trigger == "pause" and not counts[_N.RUNNING]:
                settled = decide(dest, "settle")
                event_log.add_event(
                    conn, workflow_id, None, dest, settled, at, "settle"
                )
                values["state"] = dest = settled
            elif trigger in ("resume", "retry"):
                if trigger == "retry":
                    workflow_steps.reset_failed(conn, workflow_id, at)
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
                if workflow_steps.redispatch_ready(conn, workflow_id, at):
                    queued_at = at
            elif trigger == "cancel":
                revoke = workflow_steps.cancel_nodes(conn, workflow_id, at)
                values["finished_at"] = at
            elif trigger == "complete":
                values.update(
                    result=workflow_steps.result_of(conn, workflow_id), finished_at=at
                )
                moves.set_node_state(
                    conn,
                    workflow_id,
                    None,
                    (_N.PENDING,),
                    _N.SKIPPED,
                    at,
                    kind=NodeKind.ERRBACK,
                )
            elif trigger == "fail":
                workflow_steps.skip_unrun(conn, workflow_id, at)
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
            return dispatches.queued_page(conn, workflow_id, queued_at, after, PAGE)

    @retry_transient
    def failed_call(self, workflow_id: str, node_id: str) -> FailedCall | None:
        """How failed node ``node_id`` was called and failed (None: not FAILED)."""
        with self._read() as conn:
            return recovery.failed_call(conn, workflow_id, node_id)

    def purge(self, retention: Retention, dry_run: bool = False) -> Purged:
        """Delete what ``retention`` names, in short transactions.

        ``dry_run`` deletes nothing and counts what would go.
        """
        purger = Purger(self.db)
        return purger.count(retention) if dry_run else purger.run(retention)

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
