"""Outcomes: what a node's attempt did, and what follows from it.

Each write reads the workflow row under a share lock, so that a state change
(which takes it for update) and an outcome wait for each other.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from celeriac.records import (
    Handoff,
    Outcome,
)
from celeriac.states import (
    TERMINAL_WORKFLOW_STATES,
    AttemptState,
    NodeState,
    WorkflowState,
    held_back_as,
)
from celeriac.storage import (
    attempt_ends,
    claims,
    event_log,
    failures,
    handoffs,
    moves,
    releases,
    replays,
    successes,
    workflow_steps,
)
from celeriac.storage.database import retry_transient
from celeriac.storage.rows import now
from celeriac.storage.schema import attempts, nodes
from celeriac.storage.transactions import StoreBase

_N = NodeState
_W = WorkflowState


def _lock_as_claims_do(
    conn: sa.Connection, workflow_id: str, node_id: str
) -> tuple[str, Any]:
    """Lock the workflow (shared), then the node, as a claim does.

    Returns the workflow's state and the node's row (``claims.lock_node``).

    A write that touches a node's attempts takes these locks first, in the
    claim's order (workflow, node, attempts), so that it and a claim of the
    same node wait for each other instead of deadlocking.
    """
    state = workflow_steps.workflow_state(conn, workflow_id, lock="share")
    return state, claims.lock_node(conn, workflow_id, node_id)


class _Refused(Exception):
    """The offering worker refused the successor a success claimed for it."""


class OutcomeStore(StoreBase):
    """The outcomes of attempts."""

    @retry_transient
    def record_success(
        self,
        workflow_id: str,
        node_id: str,
        number: int,
        result: Any,
        handoff: Handoff | None = None,
        counting_down: bool = False,
    ) -> Outcome:
        """Record a node's result and release the successors it made ready.

        With ``handoff``, the one task it makes ready may be claimed for the
        offering worker (``Outcome.carried``) instead of dispatched: on
        PostgreSQL by the success's own statement, before the offer sees the
        task; if it refuses the task, the transaction is rolled back and the
        success written again without the claim. With
        ``counting_down`` (the node likely makes no child ready: a member of
        a group or of a chord's header), PostgreSQL first tries the success
        as one statement that commits on its own, which writes nothing when
        it would make a child ready.
        """
        at = now()
        if counting_down and self.db.dialect.name == "postgresql":
            with self._autocommit() as conn:
                counted = successes.succeed_at_once(
                    conn, workflow_id, node_id, number, result, at, counting_down=True
                )
            if counted is not None:  # the workflow runs: nothing to settle
                return Outcome(
                    True, [], counted.state, failing=bool(counted.failure_kept)
                )
        try:
            return self._succeed(workflow_id, node_id, number, result, at, handoff)
        except _Refused:  # nothing was written: again, with nothing handed over
            return self._succeed(workflow_id, node_id, number, result, at, None)

    def _succeed(
        self,
        workflow_id: str,
        node_id: str,
        number: int,
        result: Any,
        at: datetime,
        handoff: Handoff | None,
    ) -> Outcome:
        """``record_success``'s transaction; raises ``_Refused`` to roll it back."""
        carried = None
        with self._write() as conn:
            early = handoff if handoff is not None and handoff.claims_early else None
            done = successes.succeed(
                conn, workflow_id, node_id, number, result, at, claim_for=early
            )
            state = done.state
            if not done.written:
                replayed = replays.no_longer_running(
                    conn, workflow_id, node_id, number, state, _N.SUCCEEDED
                )
                if handoff is not None and replayed.recorded:
                    carried = handoffs.handed_over_before(conn, workflow_id, handoff)
                return dataclasses.replace(replayed, carried=carried)
            if not done.logged:
                event_log.add_event(
                    conn, workflow_id, node_id, _N.RUNNING, _N.SUCCEEDED, at
                )
            released_at = releases.release_time(done.ready, at)
            dispatch, finished = releases.release(
                conn, workflow_id, state, done.ready, (result,), released_at
            )
            dispatch += releases.queued_already(
                conn, workflow_id, done.queued, (result,), at, done.logged
            )
            claimed = releases.queued_already(
                conn, workflow_id, done.claimed, (result,), at, logged=True
            )
            if handoff is not None and claimed:
                (carried,) = claimed
                if not handoff.accepts(carried):
                    raise _Refused
            elif handoff is not None:
                carried = handoffs.hand_over(
                    conn, workflow_id, state, dispatch, handoff, released_at
                )
            if carried is not None:
                dispatch = []
            failing = (
                not dispatch
                and carried is None
                and not finished
                and state not in TERMINAL_WORKFLOW_STATES
                and (
                    failures.has_failure(conn, workflow_id)
                    if done.failure_kept is None
                    else done.failure_kept
                )
            )
        return Outcome(
            True,
            dispatch,
            state,
            finished,
            settle=state == _W.REQUESTING_PAUSE,
            failing=failing,
            carried=carried,
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
            state = workflow_steps.workflow_state(conn, workflow_id, lock="share")
            if not attempt_ends.finish_node(
                conn,
                workflow_id,
                node_id,
                number,
                _N.FAILED,
                at,
                exc=(exc_type, exc_message),
            ):
                return replays.no_longer_running(
                    conn, workflow_id, node_id, number, state, _N.FAILED
                )
            attempt_ends.finish_attempt(
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
            event_log.add_event(
                conn, workflow_id, node_id, _N.RUNNING, _N.FAILED, at, exc_type
            )
            errbacks = releases.queue_errbacks(conn, workflow_id, node_id, at)
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
            state = workflow_steps.workflow_state(conn, workflow_id, lock="share")
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
            event_log.add_event(
                conn, workflow_id, node_id, _N.QUEUED, _N.FAILED, at, exc_type
            )
            errbacks = releases.queue_errbacks(conn, workflow_id, node_id, at)
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
            attempt_ends.finish_attempt(
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
                event_log.add_event(
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
            unfinished = (*moves.UNFINISHED, _N.RUNNING)
            if state in TERMINAL_WORKFLOW_STATES:
                back = held_back_as(state)
                moves.set_node_state(conn, workflow_id, [node_id], unfinished, back, at)
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
                event_log.add_event(
                    conn,
                    workflow_id,
                    node_id,
                    node.state,
                    _N.FAILED,
                    at,
                    "TaskRevokedError",
                )
        return Outcome(bool(failed), [], state)
