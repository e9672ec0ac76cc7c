"""Workflow steps: its state read under a lock, and what a change does to nodes.

A retry resets the failed nodes, a resume queues again those held back, a
cancel or a failure ends the unfinished ones. Every function takes the open
connection of the caller's transaction and never commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from celeriac.errors import WorkflowNotFound
from celeriac.states import NodeKind, NodeState
from celeriac.storage import integrity
from celeriac.storage.moves import UNFINISHED, move_where, set_node_state
from celeriac.storage.schema import nodes, workflows

_N = NodeState


# The statements of the hot path (a claim, an outcome) are built once, with
# bound parameters: building one on each call cost more Python time than
# PostgreSQL took to run it.
_STATE = sa.select(workflows.c.state).where(workflows.c.id == sa.bindparam("b_wf"))
_STATE_LOCKED = {
    None: _STATE,
    "share": _STATE.with_for_update(read=True),
    "update": _STATE.with_for_update(),
}


def workflow_state(conn: sa.Connection, workflow_id: str, lock: str | None) -> str:
    """The workflow's state, read with ``lock`` (None, "share" or "update")."""
    query = _STATE_LOCKED[lock]
    state = conn.execute(query, {"b_wf": workflow_id}).scalar_one_or_none()
    if state is None:
        raise WorkflowNotFound(workflow_id)
    return integrity.workflow_state(workflow_id, str(state))


def running_and_queued(conn: sa.Connection, workflow_id: str) -> dict[str, int]:
    """How many of the workflow's nodes are RUNNING, and how many QUEUED."""
    rows = conn.execute(
        sa.select(nodes.c.state, sa.func.count())
        .where(
            nodes.c.workflow_id == workflow_id,
            nodes.c.state.in_((_N.RUNNING, _N.QUEUED)),
        )
        .group_by(nodes.c.state)
    ).all()
    counts = {_N.RUNNING.value: 0, _N.QUEUED.value: 0}
    counts.update({state: count for state, count in rows})
    return counts


def redispatch_ready(conn: sa.Connection, workflow_id: str, at: datetime) -> int:
    """Queue every task node whose parents all succeeded but that was held back.

    Set-based, for any number of nodes; returns how many. The caller
    publishes them after its commit, a page at a time (``queued_page``).
    """
    return move_where(
        conn,
        workflow_id,
        (nodes.c.waiting == 0, nodes.c.kind == NodeKind.TASK),
        _N.PENDING,
        _N.QUEUED,
        at,
        {
            "queued_at": at,
            "republished": 0,
            "attempt_base": nodes.c.current_attempt,
            "celery_task_id": nodes.c.id,
        },
    )


def reset_failed(conn: sa.Connection, workflow_id: str, at: datetime) -> None:
    """Failed task nodes, and those the failure skipped, may run again."""
    set_node_state(
        conn,
        workflow_id,
        None,
        (_N.FAILED, _N.SKIPPED),
        _N.PENDING,
        at,
        kind=NodeKind.TASK,
    )


def skip_unrun(conn: sa.Connection, workflow_id: str, at: datetime) -> None:
    """Task nodes that cannot run once the workflow failed become SKIPPED.

    Those waiting, and those queued but not claimed (``on_failure="stop"``:
    their message is dropped when it comes). A retry of the workflow makes
    them PENDING again.
    """
    set_node_state(
        conn,
        workflow_id,
        None,
        (_N.PENDING, _N.QUEUED),
        _N.SKIPPED,
        at,
        kind=NodeKind.TASK,
    )


def cancel_nodes(conn: sa.Connection, workflow_id: str, at: datetime) -> list[str]:
    """Cancel every node that has not finished; return the ids to revoke.

    Those are the nodes a worker holds: RUNNING, or RETRYING (a retry's
    message waits for its countdown in a worker). A QUEUED node's message is
    dropped when a worker claims it, so it needs no revoke: a workflow of a
    million queued nodes does not send a million ids to every worker.
    """
    running = (
        conn.execute(
            sa.select(nodes.c.id).where(
                nodes.c.workflow_id == workflow_id,
                nodes.c.state.in_((_N.RUNNING, _N.RETRYING)),
            )
        )
        .scalars()
        .all()
    )
    waiting = (*UNFINISHED, _N.REPLACED)  # a REPLACED node waits for its replacement
    set_node_state(conn, workflow_id, None, waiting, _N.CANCELLED, at)
    return list(running)


def result_of(conn: sa.Connection, workflow_id: str) -> Any:
    """The stored result of the workflow's result node, None without one."""
    query = (
        sa.select(nodes.c.result)
        .select_from(
            workflows.join(
                nodes,
                sa.and_(
                    nodes.c.workflow_id == workflows.c.id,
                    nodes.c.id == workflows.c.result_node_id,
                ),
            )
        )
        .where(workflows.c.id == workflow_id)
    )
    return conn.execute(query).scalar_one_or_none()
