"""An attempt's end, written to its node and attempt rows, and read back.

Every function takes the open connection of the caller's transaction and
never commits. The statements of this hot path (an outcome) are built once,
with bound parameters.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from celeriac.states import NodeState
from celeriac.storage.schema import Timestamp, attempts, nodes

_N = NodeState

#: The node ends its current attempt ``b_number``: the caller sets the values.
FINISH_NODE = sa.update(nodes).where(
    nodes.c.workflow_id == sa.bindparam("b_wf"),
    nodes.c.id == sa.bindparam("b_node"),
    nodes.c.state == _N.RUNNING,
    nodes.c.current_attempt == sa.bindparam("b_number"),
)


def finish_node(
    conn: sa.Connection,
    workflow_id: str,
    node_id: str,
    number: int,
    dest: str,
    at: datetime,
    result: Any = None,
    exc: tuple[str, str] | None = None,
) -> bool:
    """Record the outcome of the node's current attempt; False if stale."""
    exc_type, exc_message = exc if exc is not None else (None, None)
    updated = conn.execute(
        FINISH_NODE,
        {
            "b_wf": workflow_id,
            "b_node": node_id,
            "b_number": number,
            "state": dest,
            "finished_at": at,
            "result": result,
            "exc_type": exc_type,
            "exc_message": exc_message,
        },
    )
    return bool(updated.rowcount)


# An attempt a claim already ended (a Celery retry overtaking its signal)
# keeps its end time.
FINISH_ATTEMPT = (
    sa.update(attempts)
    .where(
        attempts.c.workflow_id == sa.bindparam("b_wf"),
        attempts.c.node_id == sa.bindparam("b_node"),
        attempts.c.number == sa.bindparam("b_number"),
    )
    .values(
        finished_at=sa.func.coalesce(
            attempts.c.finished_at, sa.bindparam("b_at", type_=Timestamp)
        )
    )
)


def finish_attempt(
    conn: sa.Connection,
    workflow_id: str,
    node_id: str,
    number: int,
    state: str,
    at: datetime,
    **values: Any,
) -> None:
    """Attempt ``number`` ended in ``state``, with ``values`` (its columns)."""
    conn.execute(
        FINISH_ATTEMPT,
        {
            "b_wf": workflow_id,
            "b_node": node_id,
            "b_number": number,
            "b_at": at,
            "state": state,
            **values,
        },
    )


def finished_by(
    conn: sa.Connection, workflow_id: str, node_id: str, number: int, state: str
) -> bool:
    """Whether attempt ``number`` already left the node in ``state``."""
    row = conn.execute(
        sa.select(nodes.c.state, nodes.c.current_attempt).where(
            nodes.c.workflow_id == workflow_id, nodes.c.id == node_id
        )
    ).first()
    return row is not None and (row.state, row.current_attempt) == (state, number)
