"""Claims and outcomes: which delivery of a node runs, and what it did.

Each write reads the workflow row under a share lock, so that a state change
(which takes it for update) and a claim or an outcome wait for each other.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from celeriac.records import (
    Claim,
    Lease,
    Outcome,
)
from celeriac.states import (
    TERMINAL_WORKFLOW_STATES,
    AttemptState,
    NodeState,
    WorkflowState,
    held_back_as,
    may_start,
    sources_of,
    starts_under,
)
from celeriac.storage import (
    attempt_ends,
    claims,
    event_log,
    failures,
    moves,
    releases,
    replays,
    successes,
    workflow_steps,
)
from celeriac.storage.claims import Admission
from celeriac.storage.database import retry_transient
from celeriac.storage.rows import now
from celeriac.storage.schema import attempts, nodes
from celeriac.storage.transactions import StoreBase

_N = NodeState
_W = WorkflowState


#: The states a claim starts a node from (the table's ``start`` edges).
_CLAIMABLE = sources_of("start")


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


class OutcomeStore(StoreBase):
    """Claims of deliveries and the outcomes of attempts."""

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
        if self._claimed_first(workflow_id, node_id, delivery, token, lease, at):
            return Claim.RUN, 1
        with self._write() as conn:
            state = workflow_steps.workflow_state(conn, workflow_id, lock="share")
            node = claims.lock_node(conn, workflow_id, node_id)
            if node is None or not starts_under(node.kind):  # JOIN, END: never
                return Claim.DROP, 0
            if not may_start(node.kind, state):
                back = held_back_as(state)
                moved = moves.set_node_state(
                    conn, workflow_id, [node_id], moves.UNFINISHED[1:], back, at
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

    def _claimed_first(
        self,
        workflow_id: str,
        node_id: str,
        delivery: str,
        token: str,
        lease: Lease,
        at: datetime,
    ) -> bool:
        """The usual claim (``claims.claim_first``), in a transaction of its own.

        On PostgreSQL one statement that commits on its own: one round trip.
        False leaves every other case to the general claim.
        """
        if self.db.dialect.name == "postgresql":
            with self._autocommit() as conn:
                return claims.claim_first_at_once(
                    conn, workflow_id, node_id, delivery, token, lease, at
                )
        with self._write() as conn:
            return claims.claim_first(
                conn, workflow_id, node_id, delivery, token, lease, at
            )

    @retry_transient
    def record_success(
        self, workflow_id: str, node_id: str, number: int, result: Any
    ) -> Outcome:
        """Record a node's result and release the successors it made ready."""
        at = now()
        with self._write() as conn:
            done = successes.succeed(conn, workflow_id, node_id, number, result, at)
            state = done.state
            if not done.written:
                return replays.no_longer_running(
                    conn, workflow_id, node_id, number, state, _N.SUCCEEDED
                )
            if not done.logged:
                event_log.add_event(
                    conn, workflow_id, node_id, _N.RUNNING, _N.SUCCEEDED, at
                )
            dispatch, finished = releases.release(
                conn, workflow_id, state, done.ready, (result,), at
            )
            dispatch += releases.queued_already(
                conn, workflow_id, done.queued, (result,), at, done.logged
            )
            failing = (
                not dispatch
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
