"""A success written: the node's and its attempt's end, its children counted.

Four statements in order: the workflow's state under a share lock, the
node's end, the attempt's end, one more finished parent for each child; then
``releases.release`` acts on the children that are ready. On PostgreSQL, in
the usual case (the workflow runs, and every child made ready is a task),
one statement does all of it (``success_statements``): the children that
are ready are marked ``QUEUED`` (or the one a worker offered to run next
claimed for it), and the events written. When that statement finds the
attempt no longer running, or the workflow not running, it writes nothing,
and the four statements run to say why.

A success that makes no child ready (a member of a group or of a chord's
header, not the last) can be its whole transaction: ``succeed_at_once``
with ``counting_down``, one statement for a connection that commits each
one. It writes nothing when the node counts for more than one child, or
when its child, read as it is now, would become ready; when the statement's
snapshot already shows that, it locks nothing either, and its commit waits
for no disk. It locks the child before the node (a child a success counts
down is a join or END, which no claim or outcome locks before a parent of
theirs).

The other functions take the open connection of the caller's transaction
and never commit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from celeriac.records import Handoff, delivery_key
from celeriac.states import AttemptState, NodeState
from celeriac.storage import direct, integrity
from celeriac.storage.attempt_ends import finish_attempt, finish_node
from celeriac.storage.claims import running_attempt
from celeriac.storage.releases import decrement_children, now_ready
from celeriac.storage.success_statements import (
    CLAIM_AT_ONCE,
    COUNT_DOWN_AT_ONCE,
    LEASE_COLUMNS,
    SUCCEED_AT_ONCE,
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
    #: the child claimed for ``claim_for``'s worker, at attempt 1 (at most one)
    claimed: tuple[Any, ...] = ()


def succeed(
    conn: sa.Connection,
    workflow_id: str,
    node_id: str,
    number: int,
    result: Any,
    at: datetime,
    claim_for: Handoff | None = None,
) -> Success:
    """Record that running attempt ``number`` of the node returned ``result``.

    ``claim_for``: on PostgreSQL, the one task the success makes ready, if
    the node counts for it alone, is claimed for that offer's worker
    (``Success.claimed``), whether or not the offer accepts it.
    """
    if conn.dialect.name == "postgresql":
        args = (conn, workflow_id, node_id, number, result, at)
        done = None
        if claim_for is not None:
            done = succeed_at_once(*args, claim_for=claim_for)
        if done is None:
            done = succeed_at_once(*args)
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
    claim_for: Handoff | None = None,
) -> Success | None:
    """``succeed`` in one statement, on PostgreSQL; None: nothing written.

    ``counting_down``: only if the success makes no child ready. On a
    connection that commits each statement (autocommit), it is then the
    success's whole transaction in one round trip: a member of a group or of
    a chord's header that is not the last. Otherwise nothing is written,
    and the success is left to ``succeed`` in a transaction. ``claim_for``:
    only if the success makes one task ready, the only child the node counts
    for, which it claims for that offer's worker.
    """
    values = {
        "b_wf": workflow_id,
        "b_node": node_id,
        "b_parent": node_id,
        "b_number": number,
        "b_at": at,
        "b_result": result,
    }
    statement = SUCCEED_AT_ONCE
    if counting_down:
        statement = COUNT_DOWN_AT_ONCE
    elif claim_for is not None:
        statement = CLAIM_AT_ONCE
        first = running_attempt(
            1, delivery_key(0, 0), claim_for.token, claim_for.lease, at
        )
        values.update({f"a_{name}": first[name] for name in LEASE_COLUMNS})
    rows = direct.execute(conn, statement, values)
    if not rows:
        return None
    first_row = rows[0]
    state = integrity.workflow_state(workflow_id, str(first_row.workflow_state))
    # a node without children still has its row, with no child in it
    children = [row for row in rows if row.id is not None]
    if statement is CLAIM_AT_ONCE:  # it returns the child it claimed alone
        kept = bool(first_row.failure_kept)
        return Success(state, True, [], [], True, kept, tuple(children))
    queued = [r for r in children if r.waiting == 0 and r.state == _N.QUEUED]
    return Success(
        state,
        True,
        now_ready(children),
        sorted(queued, key=lambda row: row.position),
        bool(first_row.logged),
        bool(first_row.failure_kept),
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
