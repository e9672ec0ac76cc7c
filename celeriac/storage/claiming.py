"""Claims: which delivery of a node runs, on which live worker's lease.

A claim reads the workflow row under a share lock, so that a state change
(which takes it for update) and a claim wait for each other: after
``pause()`` commits, no claim starts a node.
"""

from __future__ import annotations

from datetime import datetime

from celeriac.records import Claim, Lease
from celeriac.states import (
    WorkflowState,
    held_back_as,
    may_start,
    sources_of,
    starts_under,
)
from celeriac.storage import claims, moves, workflow_steps
from celeriac.storage.claims import Admission
from celeriac.storage.database import retry_transient
from celeriac.storage.rows import now
from celeriac.storage.transactions import StoreBase

_W = WorkflowState
#: The states a claim starts a node from (the table's ``start`` edges).
_CLAIMABLE = sources_of("start")


class ClaimStore(StoreBase):
    """Claims of deliveries: an attempt starts, or the delivery is dropped."""

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
