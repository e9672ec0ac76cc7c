"""Node progress: the writes task bodies make and the counts that read them.

Like the release steps (``releases``), every function takes the open
connection of the caller's transaction and never commits; the Store wraps
each in a named method.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from celeriac.records import NodeProgress
from celeriac.states import NodeKind, NodeState
from celeriac.storage.rows import aware
from celeriac.storage.schema import nodes

_current, _total = nodes.c.progress_current, nodes.c.progress_total

#: How much of a RUNNING node's work is done, from 0.0 to 1.0, in SQL:
#: the reported ``current / total`` clamped, 0.0 without a usable total.
PARTIAL = sa.case(
    (
        sa.and_(nodes.c.state == NodeState.RUNNING, _total > 0),
        sa.case(
            (_current >= _total, sa.literal(1.0, sa.Float)),
            (_current > 0, _current / _total),
            else_=sa.literal(0.0, sa.Float),
        ),
    ),
    else_=sa.literal(0.0, sa.Float),
)


def record(
    conn: sa.Connection,
    workflow_id: str,
    node_id: str,
    number: int,
    current: float,
    total: float | None,
    message: str | None,
    at: datetime,
) -> bool:
    """Store attempt ``number``'s report; False once that attempt is over.

    Reports arrive from the task body while the node runs; one that comes
    after the outcome was recorded, or from an attempt a newer one replaced,
    changes nothing.
    """
    updated = conn.execute(
        sa.update(nodes)
        .where(
            nodes.c.workflow_id == workflow_id,
            nodes.c.id == node_id,
            nodes.c.state == NodeState.RUNNING,
            nodes.c.current_attempt == number,
        )
        .values(
            progress_current=current,
            progress_total=total,
            progress_message=message,
            progress_at=at,
        )
    )
    return bool(updated.rowcount)


def task_counts(
    conn: sa.Connection, workflow_id: str, label: str | None
) -> tuple[dict[str, int], float]:
    """TASK nodes by state, and the summed fraction done of the running ones.

    One statement, so that a node finishing in between is never counted both
    as done and as partly done (PostgreSQL reads each statement's snapshot).
    """
    query = (
        sa.select(nodes.c.state, sa.func.count(), sa.func.sum(PARTIAL))
        .where(nodes.c.workflow_id == workflow_id, nodes.c.kind == NodeKind.TASK)
        .group_by(nodes.c.state)
    )
    if label is not None:
        query = query.where(nodes.c.label == label)
    counts: dict[str, int] = {}
    partial = 0.0
    for state, count, fraction in conn.execute(query):
        counts[state] = int(count)
        partial += float(fraction or 0.0)
    return counts, partial


def node_progress(row: Any) -> NodeProgress | None:
    """The progress a node row holds, or None if its body never reported."""
    if row.progress_current is None:
        return None
    return NodeProgress(
        current=row.progress_current,
        total=row.progress_total,
        message=row.progress_message,
        at=aware(row.progress_at),
    )
