"""The one-statement successes of PostgreSQL, built once.

Data-modifying CTEs write a success in one statement, one round trip:

- ``SUCCEED_AT_ONCE``: the usual success. The workflow's state under a share
  lock, the node's and its attempt's end, one more finished parent for each
  child; the children it made ready that are tasks are marked ``QUEUED``,
  and the events written.
- ``COUNT_DOWN_AT_ONCE``: a success that makes no child ready, for a
  connection that commits each statement.
- ``CLAIM_AT_ONCE``: a success that makes one task ready, the only child
  the node counts for, and claims it: its attempt 1 starts on a worker's
  lease. A chain's hop, run in place by the worker that ran the node
  (``handoffs``).

The last two lock the node's only child (before the node) if it is as they
need it, read as it is now; otherwise they write nothing, and lock nothing.

The locks are taken in the order the statements one by one take them (the
workflow's in the node update's condition, before the node's row is locked,
as ``claims``' ``_CLAIM_FIRST`` does). When the workflow does not run, or
the attempt no longer does, they write nothing.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import sqlalchemy as sa

from celeriac.records import delivery_key
from celeriac.states import AttemptState, NodeKind, NodeState, WorkflowState
from celeriac.storage.attempt_ends import FINISH_ATTEMPT, FINISH_NODE
from celeriac.storage.claims import attempt_event
from celeriac.storage.moves import queued_values, running_values
from celeriac.storage.releases import CHILD_EDGES, DECREMENT_CHILDREN, READY_COLUMNS
from celeriac.storage.schema import (
    Id,
    Timestamp,
    attempts,
    edges,
    events,
    nodes,
    workflows,
)

_N = NodeState
#: The columns of the attempt ``CLAIM_AT_ONCE`` starts that name the claiming
#: worker, as ``claims.running_attempt`` writes them.
LEASE_COLUMNS = ("worker", "pid", "worker_id", "claim_token")


def _written(value: str | int) -> sa.ColumnElement[Any]:
    """A constant written into the statement's text, not bound.

    The statement stays shorter than 4,096 characters, the longest whose
    parsing psycopg caches (``MAX_CACHED_STATEMENT_LENGTH``): past that it
    parses the text again on every execution.
    """
    if isinstance(value, str):
        return sa.literal_column(f"'{value}'", sa.String())
    return sa.literal_column(str(value), sa.Integer)


def _first_edge() -> sa.CTE:
    """The node's first child (``child``, by id) and how many it counts for (``n``).

    One look-up of the node's edges, however many parts of the statement
    read them (a CTE read more than once is computed once).
    """
    return (
        sa.select(
            sa.func.min(edges.c.child_id).label("child"),
            sa.func.count().label("n"),
        )
        .where(*CHILD_EDGES)
        .cte("edge")
    )


def _only_child(edge: sa.CTE) -> sa.ColumnElement[bool]:
    """The node's child, by its key, if it counts for one child at most.

    Each look-up is of one key, whatever the planner knows of the tables:
    with ``= ANY`` of the children's ids, a generic plan made while the
    tables were small scanned all of a workflow's nodes for each success.
    """
    return sa.and_(
        nodes.c.workflow_id == sa.bindparam("b_wf", type_=Id),
        nodes.c.id == sa.select(edge.c.child).scalar_subquery(),
    )


class _Head(NamedTuple):
    """The parts every one-statement success shares."""

    #: the workflow's row, locked for share, if it runs
    workflow: sa.CTE
    #: the node's end: its id
    finished: sa.CTE
    #: true once the attempt's end is written (count its rows first)
    after_attempt: sa.ColumnElement[bool]


def _head(
    *guards: sa.ColumnElement[bool], locks_if: sa.ColumnElement[bool] | None = None
) -> _Head:
    """The workflow locked, the node's and the attempt's end.

    The node's end is written only while the workflow runs and ``guards``
    hold (each evaluated once, after the workflow's lock is taken).
    ``locks_if``: read in the statement's snapshot, before any lock; if it
    does not hold, nothing is locked or written.
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
            *(() if locks_if is None else (locks_if,)),
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
        sa.null().label("detail"),
    )


def _logged(happened: sa.Subquery, *conditions: Any) -> sa.CTE:
    """The events ``happened`` inserted, in their order; their node ids."""
    return (
        events.insert()
        .from_select(
            ("workflow_id", "node_id", "from_state", "to_state", "at", "detail"),
            sa.select(
                sa.bindparam("b_wf", type_=Id),
                happened.c.node_id,
                happened.c.from_state,
                happened.c.to_state,
                sa.bindparam("b_at", type_=Timestamp),
                happened.c.detail,
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
            sa.null(),
        ).where(children.c.waiting == 0, children.c.state == _N.QUEUED.value),
    ).subquery("happened")
    return _answer(head, children, _logged(happened, ~others_ready))


#: The child a one-child success locks, under a short name: the statements'
#: text stays under psycopg's cached length (``_written``).
_CHILD = nodes.alias("c")


def _only_child_locked(edge: sa.CTE, *conditions: sa.ColumnElement[bool]) -> sa.CTE:
    """The node's child (``_CHILD``), locked, if it counts for that one alone.

    Read as it is now, not as the statement's snapshot shows it: another
    parent may have finished since (a row that no longer meets
    ``conditions`` once locked is not returned). It is locked before the
    node: only a parent's success counts a child down or claims it with the
    parent's end.
    """
    alone = sa.select(edge.c.child).where(edge.c.n == 1)
    return (
        sa.select(_CHILD.c.waiting)
        .where(
            _CHILD.c.workflow_id == sa.bindparam("b_wf", type_=Id),
            _CHILD.c.id == alone.scalar_subquery(),
            *conditions,
        )
        .with_for_update(key_share=True)
        .cte("locked")
    )


def _only_child_moved(
    head: _Head,
    edge: sa.CTE,
    values: dict[str, Any],
    *returning: sa.ColumnElement[Any],
) -> sa.CTE:
    """The node's only child, counted down, with ``values`` written too."""
    return (
        sa.update(nodes)
        .where(
            _only_child(edge),
            sa.exists(sa.select(head.finished.c.id)),
            head.after_attempt,
        )
        .values(waiting=nodes.c.waiting - 1, **values)
        .returning(*returning)
        .cte("children")
    )


def _count_down_at_once() -> sa.Select[Any]:
    """The success of a node that makes no child ready, in one statement.

    Only for a node without children, or that counts for one child alone
    which waits for another parent too. When the statement's snapshot shows
    the child waiting for this parent alone, it locks nothing (not even the
    workflow's row): its commit then waits for no disk. A chain's first
    node tries it for nothing.
    """
    edge = _first_edge()
    locked = _only_child_locked(edge, _CHILD.c.waiting > _written(1))
    last_parent = sa.select(nodes.c.id).where(_only_child(edge), nodes.c.waiting <= 1)
    head = _head(
        sa.or_(
            sa.select(edge.c.n).scalar_subquery() == 0,
            sa.exists(sa.select(locked.c.waiting)),
        ),
        locks_if=~sa.exists(last_parent),
    )
    happened = _node_event(head.finished).subquery("happened")
    counted = _only_child_moved(
        head, edge, {}, *READY_COLUMNS, nodes.c.waiting, nodes.c.state
    )
    return _answer(head, counted, _logged(happened))


def _claim_at_once() -> sa.Select[Any]:
    """A success and the claim of the one task it makes ready, in one statement.

    Only for a node that counts for that one child alone, a task on its
    first attempt: it starts attempt 1 on the claiming worker's lease
    (``LEASE_COLUMNS``, bound ``a_*``).
    """
    edge = _first_edge()
    locked = _only_child_locked(
        edge,
        _CHILD.c.waiting == 1,
        _CHILD.c.kind == _written(NodeKind.TASK.value),
        _CHILD.c.state == _written(_N.PENDING.value),
        _CHILD.c.current_attempt == 0,
    )
    head = _head(sa.exists(sa.select(locked.c.waiting)))
    at = sa.bindparam("b_at", type_=Timestamp)
    values = {**queued_values(at), **running_values(_written(1), at)}
    # the columns of a dispatch (``releases``): the attempts before it, not 1
    children = _only_child_moved(
        head,
        edge,
        values,
        *(
            nodes.c.attempt_base.label(column.name)
            if column is nodes.c.current_attempt
            else column
            for column in READY_COLUMNS
        ),
    )
    first = {
        "number": _written(1),
        "state": _written(AttemptState.RUNNING.value),
        "delivery": _written(delivery_key(0, 0)),
        "started_at": at,
        **{
            name: sa.bindparam(f"a_{name}", type_=attempts.c[name].type)
            for name in LEASE_COLUMNS
        },
    }
    started = attempts.insert().from_select(
        ("workflow_id", "node_id", *first),
        sa.select(sa.bindparam("b_wf", type_=Id), children.c.id, *first.values()),
    )
    moves = (
        (_N.PENDING, _N.QUEUED, sa.null()),
        (_N.QUEUED, _N.RUNNING, _written(attempt_event(1))),
    )
    happened = sa.union_all(
        _node_event(head.finished),
        *(
            sa.select(
                children.c.id,
                _written(source.value),
                _written(target.value),
                _written(ordinal),
                detail,
            )
            for ordinal, (source, target, detail) in enumerate(moves)
        ),
    ).subquery("happened")
    answer = _answer(head, children, _logged(happened))
    return answer.add_cte(started.cte("started"))


#: The usual success.
SUCCEED_AT_ONCE = _succeed_at_once()
#: A success that counts its one child down and makes nothing ready.
COUNT_DOWN_AT_ONCE = _count_down_at_once()
#: A success that claims the one task it makes ready.
CLAIM_AT_ONCE = _claim_at_once()
