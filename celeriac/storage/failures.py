"""A workflow's failure: the error it keeps, and when it may end FAILED.

With ``on_failure="continue"`` (the default, as in Celery) a failure does not
stop the workflow: every node whose parents all succeeded still runs, and the
workflow ends FAILED, with its first failure as its error, once none of its
tasks runs, waits to run or is held back ready. With ``on_failure="stop"`` it
ends FAILED at the first failure. Every function takes the open connection of
the caller's transaction.
"""

from __future__ import annotations

import sqlalchemy as sa

from celeriac.records import Failure
from celeriac.states import NodeKind, NodeState, OnFailure
from celeriac.storage.schema import nodes, workflows

_N = NodeState

_KEPT_ERROR = sa.select(workflows.c.exc_type).where(
    workflows.c.id == sa.bindparam("b_wf")
)


def keep_first(conn: sa.Connection, workflow_id: str, failure: Failure) -> None:
    """Keep ``failure`` as the workflow's error, unless it keeps one already."""
    conn.execute(
        sa.update(workflows)
        .where(workflows.c.id == workflow_id, workflows.c.exc_type.is_(None))
        .values(
            failed_node_id=failure.node_id,
            exc_type=failure.exc_type,
            exc_message=failure.exc_message,
            exc_class=failure.exc_class,
            exc_args=failure.exc_args,
        )
    )


def has_failure(conn: sa.Connection, workflow_id: str) -> bool:
    """Whether the workflow keeps a failure (it is failing or FAILED)."""
    found = conn.execute(_KEPT_ERROR, {"b_wf": workflow_id}).scalar_one_or_none()
    return found is not None


def may_end(conn: sa.Connection, workflow_id: str) -> bool:
    """Whether a workflow that keeps a failure may be FAILED now.

    At once with ``on_failure="stop"``; otherwise once no task node runs,
    is queued, waits for a Celery retry, or is ready but held back (a pause).
    """
    policy = conn.execute(
        sa.select(workflows.c.on_failure).where(workflows.c.id == workflow_id)
    ).scalar_one()
    if policy == OnFailure.STOP:
        return True
    busy = conn.execute(
        sa.select(nodes.c.id)
        .where(
            nodes.c.workflow_id == workflow_id,
            nodes.c.kind == NodeKind.TASK,
            sa.or_(
                nodes.c.state.in_((_N.QUEUED, _N.RUNNING, _N.RETRYING)),
                sa.and_(nodes.c.state == _N.PENDING, nodes.c.waiting == 0),
            ),
        )
        .limit(1)
    ).first()
    return busy is None
