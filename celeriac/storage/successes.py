"""A success written: the node's and its attempt's end, its children counted.

Four statements in order: the workflow's state under a share lock, the
node's end, the attempt's end, one more finished parent for each child; then
``releases.release`` acts on the children that are ready. On PostgreSQL, in
the usual case (the workflow runs, and every child made ready is a task),
data-modifying CTEs do all of it in one statement, one round trip: the
children that are ready are marked ``QUEUED`` and the events written. The
locks are taken in the same order (the workflow's in the node update's
condition, before the node's row is locked, as ``claims``' ``_CLAIM_FIRST``
does). When that statement finds the attempt no longer running, or the
workflow not running, it writes nothing, and the four statements run to
say why.

A success that makes no child ready (a member of a group or of a chord's
header, not the last) can be its whole transaction: ``succeed_at_once``
with ``counting_down``, one statement for a connection that commits each
one. It writes nothing when the node counts for more than one child, or
when its child, locked and read as it is now, would become ready. It locks
the child before the node (a child a success counts down is a join or END,
which no claim or outcome locks before a parent of theirs).

The other functions take the open connection of the caller's transaction
and never commit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from celeriac.states import AttemptState, NodeKind, NodeState, WorkflowState
from celeriac.storage import integrity
from celeriac.storage.attempt_ends import (
    FINISH_ATTEMPT,
    FINISH_NODE,
    finish_attempt,
    finish_node,
)
from celeriac.storage.moves import queued_values
from celeriac.storage.releases import (
    CHILD_EDGES,
    DECREMENT_CHILDREN,
    READY_COLUMNS,
    decrement_children,
    now_ready,
)
from celeriac.storage.schema import (
    Id,
    Timestamp,
    attempts,
    edges,
    events,
    nodes,
    workflows,
)
from celeriac.storage.workflow_steps import workflow_state

_N = NodeState


class Success(NamedTuple):
    """What a success wrote, for ``releases`` to go on from."""

    #: the workflow's state, read under a share lock
    state: str
    #: False: the attempt does not run any more, and nothing was written
    written: bool
    #: the children now ready that are still to be released
    ready: list[Any]
    #: the children now ready that were marked QUEUED already
    queued: list[Any]
    #: whether the node's and the queued children's events are written
    logged: bool
    #: whether the workflow keeps a failure (None: not read)
    failure_kept: bool | None


def _written(value: str | int) -> sa.ColumnElement[Any]:
    """A constant written into the statement's text, not bound.

    The statement stays shorter than 4,096 characters, the longest whose
    parsing psycopg caches (``MAX_CACHED_STATEMENT_LENGTH``): past that it
    parses the text again on every execution.
    """
    if isinstance(value, str):
        return sa.literal_column(f"'{value}'", sa.String())
    return sa.literal_column(str(value), sa.Integer)


def _only_child() -> sa.ColumnElement[bool]:
    """The node's child, by its key, if it counts for one child at most.

    Each look-up is of one key, whatever the planner knows of the tables:
    with ``= ANY`` of the children's ids, a generic plan made while the
    tables were small scanned all of a workflow's nodes for each success.
    """
    child = sa.select(sa.func.min(edges.c.child_id)).where(*CHILD_EDGES)
    return sa.and_(
        nodes.c.workflow_id == sa.bindparam("b_wf", type_=Id),
        nodes.c.id == child.scalar_subquery(),
    )


class _Head(NamedTuple):
    """The parts both one-statement successes share."""

    #: the workflow's row, locked for share, if it runs
    workflow: sa.CTE
    #: the node's end: its id
    finished: sa.CTE
    #: true once the attempt's end is written (count its rows first)
    after_attempt: sa.ColumnElement[bool]


def _head(*guards: sa.ColumnElement[bool]) -> _Head:
    """The workflow locked, the node's and the attempt's end.

    The node's end is written only while the workflow runs and ``guards``
    hold (each evaluated once, after the workflow's lock is taken).
    """
    # The workflow's row as locked: a locking read sees the newest version
    # (the statement's snapshot may be older), so the state and the kept
    # failure are read here, not beside it.
    workflow = (
        sa.select(
            workflows.c.state,
            workflows.c.exc_type.is_not(None).label("failure_kept"),
        )
        .where(
            workflows.c.id == sa.bindparam("b_wf", type_=Id),
            workflows.c.state == WorkflowState.IN_PROGRESS.value,
        )
        .with_for_update(read=True)
        .cte("workflow")
    )
    finished = (
        FINISH_NODE.where(sa.exists(sa.select(workflow.c.state)), *guards)
        .values(
            state=_N.SUCCEEDED.value,
            finished_at=sa.bindparam("b_at", type_=Timestamp),
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
    # the children are: the statements' order, whatever the count.
    after_attempt = sa.select(sa.func.count()).select_from(attempt).scalar_subquery()
    return _Head(workflow, finished, after_attempt >= 0)


def _node_event(finished: sa.CTE) -> sa.Select[Any]:
    """The node's own event, RUNNING to SUCCEEDED, ordered first."""
    return sa.select(
        finished.c.id.label("node_id"),
        _written(_N.RUNNING.value).label("from_state"),
        _written(_N.SUCCEEDED.value).label("to_state"),
        _written(-1).label("ordinal"),
    )


def _logged(happened: sa.Subquery, *conditions: Any) -> sa.CTE:
    """The events ``happened`` inserted, in their order; their node ids."""
    return (
        events.insert()
        .from_select(
            ("workflow_id", "node_id", "from_state", "to_state", "at"),
            sa.select(
                sa.bindparam("b_wf", type_=Id),
                happened.c.node_id,
                happened.c.from_state,
                happened.c.to_state,
                sa.bindparam("b_at", type_=Timestamp),
            )
            .where(*conditions)
            .order_by(happened.c.ordinal),
        )
        .returning(events.c.node_id)
        .cte("logged")
    )


def _answer(head: _Head, children: sa.CTE, logged: sa.CTE) -> sa.Select[Any]:
    """What both one-statement successes return: ``succeed_at_once`` reads it."""
    return sa.select(
        head.workflow.c.state.label("workflow_state"),
        head.workflow.c.failure_kept,
        sa.select(sa.func.count())
        .select_from(logged)
        .scalar_subquery()
        .label("logged"),
        *children.c,
    ).select_from(
        head.finished.join(head.workflow, sa.true()).outerjoin(children, sa.true())
    )


def _succeed_at_once() -> sa.Select[Any]:
    """The usual success in one statement; bound as ``succeed_at_once`` binds it."""
    head = _head()
    finished = head.finished
    # a task child this parent was the last one of: queued at once
    last = sa.and_(
        nodes.c.waiting == _written(1),
        nodes.c.kind == _written(NodeKind.TASK.value),
        nodes.c.state == _written(_N.PENDING.value),
    )

    def when_last(value: Any, otherwise: Any) -> Any:
        return sa.case((last, value), else_=otherwise)

    at = sa.bindparam("b_at", type_=Timestamp)
    children = (
        DECREMENT_CHILDREN["postgresql"]
        .where(sa.exists(sa.select(finished.c.id)), head.after_attempt)
        .values(
            {
                name: when_last(value, nodes.c[name])
                for name, value in queued_values(at).items()
            }
        )
        .cte("children")
    )
    # The events, in the order the statements write them: unless another
    # child is ready too (a join, END), whose release comes first.
    others_ready = sa.exists(
        sa.select(children.c.id).where(
            children.c.waiting == 0, children.c.state != _N.QUEUED.value
        )
    )
    happened = sa.union_all(
        _node_event(finished),
        sa.select(
            children.c.id,
            _written(_N.PENDING.value),
            _written(_N.QUEUED.value),
            children.c.position,
        ).where(children.c.waiting == 0, children.c.state == _N.QUEUED.value),
    ).subquery("happened")
    return _answer(head, children, _logged(happened, ~others_ready))


def _count_down_at_once() -> sa.Select[Any]:
    """The success of a node that makes no child ready, in one statement.

    Only for a node that counts for one child at most. The child is locked
    and read as it is now, not as the statement's snapshot shows it:
    another parent may have finished since.
    """
    children = sa.select(sa.func.count()).where(*CHILD_EDGES).scalar_subquery()
    locked = (
        sa.select(nodes.c.waiting)
        .where(_only_child())
        .with_for_update(key_share=True)
        .cte("locked")
    )
    head = _head(
        children <= 1, ~sa.exists(sa.select(locked).where(locked.c.waiting <= 1))
    )
    counted = (
        sa.update(nodes)
        .where(
            _only_child(), sa.exists(sa.select(head.finished.c.id)), head.after_attempt
        )
        .values(waiting=nodes.c.waiting - 1)
        .returning(*READY_COLUMNS, nodes.c.waiting, nodes.c.state)
        .cte("children")
    )
    happened = _node_event(head.finished).subquery("happened")
    return _answer(head, counted, _logged(happened))


_SUCCEED_AT_ONCE = _succeed_at_once()
_COUNT_DOWN_AT_ONCE = _count_down_at_once()


def succeed(
    conn: sa.Connection,
    workflow_id: str,
    node_id: str,
    number: int,
    result: Any,
    at: datetime,
) -> Success:
    """Record that running attempt ``number`` of the node returned ``result``."""
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
    counting_down: bool = False,
) -> Success | None:
    """``succeed`` in one statement, on PostgreSQL; None: nothing written.

    ``counting_down``: only if the success makes no child ready. On a
    connection that commits each statement (autocommit), it is then the
    success's whole transaction in one round trip: a member of a group or of
    a chord's header that is not the last. Otherwise nothing is written,
    and the success is left to ``succeed`` in a transaction.
    """
    rows = conn.execute(
        _COUNT_DOWN_AT_ONCE if counting_down else _SUCCEED_AT_ONCE,
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
    first = rows[0]
    state = integrity.workflow_state(workflow_id, str(first.workflow_state))
    # a node without children still has its row, with no child in it
    children = [row for row in rows if row.id is not None]
    queued = [r for r in children if r.waiting == 0 and r.state == _N.QUEUED]
    return Success(
        state,
        True,
        now_ready(children),
        sorted(queued, key=lambda row: row.position),
        bool(first.logged),
        bool(first.failure_kept),
    )


def succeed_in_steps(
    conn: sa.Connection,
    workflow_id: str,
    node_id: str,
    number: int,
    result: Any,
    at: datetime,
) -> Success:
    """``succeed`` as four statements, on any database."""
    state = workflow_state(conn, workflow_id, lock="share")
    if not finish_node(
        conn, workflow_id, node_id, number, _N.SUCCEEDED, at, result=result
    ):
        return Success(state, False, [], [], False, None)
    finish_attempt(conn, workflow_id, node_id, number, AttemptState.SUCCEEDED, at)
    ready = decrement_children(conn, workflow_id, node_id)
    return Success(state, True, ready, [], False, None)
