"""A success written: the node's and its attempt's end, its children counted.

Four statements in order: the workflow's state under a share lock, the
node's end, the attempt's end, one more finished parent for each child. On
PostgreSQL, data-modifying CTEs run the four as one statement, one round
trip, taking the locks in the same order (the workflow's in the node
update's condition, before the node's row is locked, as ``claims``'
``_CLAIM_FIRST`` does); when that statement finds the attempt no longer
running it writes nothing, and the four statements run to say why.

Takes the open connection of the caller's transaction and never commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from celeriac.states import AttemptState, NodeState
from celeriac.storage import integrity
from celeriac.storage.attempt_ends import (
    FINISH_ATTEMPT,
    FINISH_NODE,
    finish_attempt,
    finish_node,
)
from celeriac.storage.releases import (
    DECREMENT_CHILDREN,
    decrement_children,
    now_ready,
)
from celeriac.storage.schema import Timestamp, attempts, nodes, workflows
from celeriac.storage.workflow_steps import workflow_state

_N = NodeState


def _succeed_at_once() -> sa.Select[Any]:
    """The four statements of a success as one; bound as ``succeed`` binds them."""
    workflow = workflows.c.id == sa.bindparam("b_wf")
    at = sa.bindparam("b_at", type_=Timestamp)
    finished = (
        FINISH_NODE.where(
            sa.exists(
                sa.select(workflows.c.id).where(workflow).with_for_update(read=True)
            )
        )
        .values(
            state=_N.SUCCEEDED.value,
            finished_at=at,
            result=sa.bindparam("b_result", type_=nodes.c.result.type),
            exc_type=None,
            exc_message=None,
        )
        .returning(nodes.c.id)
        .cte("finished")
    )
    attempt = (
        FINISH_ATTEMPT.where(sa.exists(sa.select(finished.c.id)))
        .values(state=AttemptState.SUCCEEDED.value)
        .returning(attempts.c.number)
        .cte("attempt")
    )
    # Counting the attempt's rows runs its update (locking its row) before
    # the children are: the four statements' order, whatever the count.
    after_attempt = sa.select(sa.func.count()).select_from(attempt).scalar_subquery()
    children = (
        DECREMENT_CHILDREN["postgresql"]
        .where(sa.exists(sa.select(finished.c.id)), after_attempt >= 0)
        .cte("children")
    )
    state = sa.select(workflows.c.state).where(workflow).scalar_subquery()
    return sa.select(state.label("workflow_state"), *children.c).select_from(
        finished.outerjoin(children, sa.true())
    )


_SUCCEED_AT_ONCE = _succeed_at_once()


def succeed(
    conn: sa.Connection,
    workflow_id: str,
    node_id: str,
    number: int,
    result: Any,
    at: datetime,
) -> tuple[str, list[Any] | None]:
    """Record that running attempt ``number`` of the node returned ``result``.

    Returns the workflow's state (read under a share lock) and the children
    now ready, as ``releases.decrement_children`` returns them; None for
    them, with nothing written, when the attempt does not run any more.
    """
    if conn.dialect.name == "postgresql":
        done = succeed_at_once(conn, workflow_id, node_id, number, result, at)
        if done is not None:
            return done
    return succeed_in_steps(conn, workflow_id, node_id, number, result, at)


def succeed_at_once(
    conn: sa.Connection,
    workflow_id: str,
    node_id: str,
    number: int,
    result: Any,
    at: datetime,
) -> tuple[str, list[Any]] | None:
    """``succeed`` in one statement, on PostgreSQL; None: nothing written."""
    rows = conn.execute(
        _SUCCEED_AT_ONCE,
        {
            "b_wf": workflow_id,
            "b_node": node_id,
            "b_parent": node_id,
            "b_number": number,
            "b_at": at,
            "b_result": result,
        },
    ).all()
    if not rows:
        return None
    state = integrity.workflow_state(workflow_id, str(rows[0].workflow_state))
    # a node without children still has its row, with no child in it
    return state, now_ready(row for row in rows if row.id is not None)


def succeed_in_steps(
    conn: sa.Connection,
    workflow_id: str,
    node_id: str,
    number: int,
    result: Any,
    at: datetime,
) -> tuple[str, list[Any] | None]:
    """``succeed`` as four statements, on any database."""
    state = workflow_state(conn, workflow_id, lock="share")
    if not finish_node(
        conn, workflow_id, node_id, number, _N.SUCCEEDED, at, result=result
    ):
        return state, None
    finish_attempt(conn, workflow_id, node_id, number, AttemptState.SUCCEEDED, at)
    return state, decrement_children(conn, workflow_id, node_id)
