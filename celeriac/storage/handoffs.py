"""Hand-offs: a node's one successor claimed with its success, for the same worker.

When a success makes exactly one task ready, the worker that ran the node
may offer to run it next itself (``records.Handoff``): the successor's first
claim is then written in the success's transaction, on the offering worker's
lease, and no message goes through the broker. Its attempt is an ordinary
RUNNING attempt: should the worker die, recovery runs the node again as it
does any node of a dead worker.

Every function takes the open connection of the caller's transaction.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from celeriac.records import Dispatch, Handoff, delivery_key
from celeriac.states import AttemptState, NodeKind, NodeState, WorkflowState
from celeriac.storage import claims
from celeriac.storage.dispatches import DISPATCH_COLUMNS, load_dispatches
from celeriac.storage.schema import attempts, is_current_attempt, nodes


def hand_over(
    conn: sa.Connection,
    workflow_id: str,
    state: str,
    dispatch: list[Dispatch],
    handoff: Handoff,
    at: datetime,
) -> Dispatch | None:
    """Claim the one task in ``dispatch`` for the worker offering ``handoff``.

    Only while the workflow runs, when the success made exactly one node
    ready, a task on its first message, that the worker accepts (same
    queue, no delay, no time limit: ``handoff.accepts``). Returns the
    claimed node (attempt 1), or None when it is to be published instead.
    """
    if state != WorkflowState.IN_PROGRESS or len(dispatch) != 1:
        return None
    (successor,) = dispatch
    if successor.kind != NodeKind.TASK or successor.retries:
        return None
    if not handoff.accepts(successor):
        return None
    claim = (
        claims.claim_first_at_once
        if conn.dialect.name == "postgresql"
        else claims.claim_first
    )
    claimed = claim(
        conn,
        workflow_id,
        successor.node_id,
        delivery_key(successor.attempt_base, 0),
        handoff.token,
        handoff.lease,
        at,
    )
    return successor if claimed else None


def handed_over_before(
    conn: sa.Connection, workflow_id: str, handoff: Handoff
) -> Dispatch | None:
    """The node a replayed success claimed for ``handoff``, still running.

    A success whose commit went through unseen (its reply was lost) may have
    claimed a successor on this worker's lease: found by the claim's token,
    it is run as if the first commit had answered. Only a replay asks, so
    the look-up through the workflow's attempts is rare.
    """
    row = conn.execute(
        sa.select(*DISPATCH_COLUMNS, nodes.c.attempt_base.label("base"))
        .select_from(nodes.join(attempts, is_current_attempt(attempts)))
        .where(
            attempts.c.workflow_id == workflow_id,
            attempts.c.claim_token == handoff.token,
            attempts.c.state == AttemptState.RUNNING,
            nodes.c.state == NodeState.RUNNING,
        )
    ).first()
    return load_dispatches(conn, [row])[0] if row is not None else None
