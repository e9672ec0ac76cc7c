"""Claims and leases: which delivery of a node runs, on which live worker.

Every function takes the open connection of the caller's transaction.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

import sqlalchemy as sa

from celeriac.records import Lease
from celeriac.states import AttemptState, NodeKind, NodeState, starts_under
from celeriac.storage import direct
from celeriac.storage.event_log import add_event, flush_events
from celeriac.storage.moves import running_values
from celeriac.storage.rows import aware
from celeriac.storage.schema import (
    Id,
    Timestamp,
    attempts,
    events,
    nodes,
    workers,
    workflows,
)

_N = NodeState
#: The one workflow state a task starts in (``states.NODE_TRANSITIONS``): one
#: value, compared with ``=`` in the claim of the hot path.
(_TASK_STARTS_UNDER,) = starts_under(NodeKind.TASK)


class Admission(Enum):
    """What an earlier attempt of the same message means for a delivery."""

    #: no attempt of this message runs: start one
    NEW = "new"
    #: our own claim, committed before its reply was lost: go on with it
    REPLAYED = "replayed"
    #: the message runs (or ran) elsewhere: drop this delivery
    DUPLICATE = "duplicate"


def parse_delivery(key: str | None) -> tuple[int, int]:
    """``(base, retries)`` of a :func:`delivery_key`."""
    base, _, retries = (key or "0.0").partition(".")
    return int(base), int(retries or 0)


def lock_node(conn: sa.Connection, workflow_id: str, node_id: str) -> Any:
    """The node's kind, state, attempt count and dispatch, locked until commit.

    The lock makes two deliveries of one message claim one after the other,
    so the second sees the first's attempt.
    """
    query = sa.select(
        nodes.c.kind, nodes.c.state, nodes.c.current_attempt, nodes.c.attempt_base
    ).where(nodes.c.workflow_id == workflow_id, nodes.c.id == node_id)
    return conn.execute(query.with_for_update()).first()


def admit_delivery(
    conn: sa.Connection,
    workflow_id: str,
    node: Any,
    node_id: str,
    delivery: str,
    token: str,
    dead_before: datetime,
    at: datetime,
) -> tuple[Admission, int]:
    """Whether a delivery may start an attempt, and the attempt it resumes.

    ``node`` is the row :func:`lock_node` read. A new message of the node's
    current dispatch may; a message of a dispatch that a resume or a
    recovery replaced may not. While an attempt runs, only the Celery retry
    that follows it may start (Celery publishes a retry before its
    ``task_retry`` signal is handled). A claim whose commit went through but
    whose reply was lost is replayed by the retry policy: its own token
    finds its attempt. Another delivery of a message that already started an
    attempt may only take over if that attempt is still RUNNING on a worker
    that stopped heartbeating: the attempt is then LOST (the broker
    redelivered after a crash).
    """
    base, retries = parse_delivery(delivery)
    if base < node.attempt_base:
        return Admission.DUPLICATE, 0
    previous = conn.execute(
        sa.select(
            attempts.c.number,
            attempts.c.state,
            attempts.c.claim_token,
            workers.c.heartbeat_at,
        )
        .select_from(attempts.outerjoin(workers, workers.c.id == attempts.c.worker_id))
        .where(
            attempts.c.workflow_id == workflow_id,
            attempts.c.node_id == node_id,
            attempts.c.delivery == delivery,
        )
        .order_by(attempts.c.number.desc())
        .limit(1)
    ).first()
    if previous is None:
        if node.state == _N.RUNNING and not _follows_current(
            conn, workflow_id, node, node_id, (base, retries)
        ):
            return Admission.DUPLICATE, 0
        return Admission.NEW, 0
    if previous.claim_token == token:
        return Admission.REPLAYED, previous.number
    heartbeat = aware(previous.heartbeat_at)
    alive = heartbeat is not None and heartbeat >= dead_before
    if previous.state != AttemptState.RUNNING or alive:
        return Admission.DUPLICATE, 0
    mark_lost(conn, workflow_id, node_id, previous.number, at)
    return Admission.NEW, 0


def _follows_current(
    conn: sa.Connection,
    workflow_id: str,
    node: Any,
    node_id: str,
    message: tuple[int, int],
) -> bool:
    """Whether message ``(base, retries)`` is Celery's retry of the running attempt."""
    current = conn.execute(
        sa.select(attempts.c.delivery).where(
            attempts.c.workflow_id == workflow_id,
            attempts.c.node_id == node_id,
            attempts.c.number == node.current_attempt,
        )
    ).scalar_one_or_none()
    running_base, running_retries = parse_delivery(current)
    return message == (running_base, running_retries + 1)


def mark_lost(
    conn: sa.Connection, workflow_id: str, node_id: str, number: int, at: datetime
) -> None:
    """Attempt ``number`` died with its worker."""
    conn.execute(
        sa.update(attempts)
        .where(
            attempts.c.workflow_id == workflow_id,
            attempts.c.node_id == node_id,
            attempts.c.number == number,
        )
        .values(state=AttemptState.LOST, finished_at=at)
    )
    add_event(
        conn, workflow_id, node_id, _N.RUNNING, _N.RUNNING, at, f"attempt {number} lost"
    )


def _running() -> sa.Update:
    """The node runs attempt ``b_number`` (bound ``b_wf``, ``b_node``, ``b_at``)."""
    return (
        sa.update(nodes)
        .where(
            nodes.c.workflow_id == sa.bindparam("b_wf"),
            nodes.c.id == sa.bindparam("b_node"),
        )
        .values(
            running_values(
                sa.bindparam("b_number"), sa.bindparam("b_at", type_=Timestamp)
            )
        )
    )


_RUNNING = _running()
# A task's first delivery, while its workflow runs (read under a share lock
# inside the statement, as the general claim reads it).
_CLAIM_FIRST = _running().where(
    nodes.c.state == _N.QUEUED,
    nodes.c.current_attempt == 0,
    nodes.c.kind == NodeKind.TASK,
    sa.exists(
        sa.select(workflows.c.id)
        .where(
            workflows.c.id == sa.bindparam("b_wf"),
            workflows.c.state == _TASK_STARTS_UNDER,
        )
        .with_for_update(read=True)
    ),
)
_INSERT_ATTEMPT = attempts.insert()


#: The columns of a running attempt's row besides its node's key.
ATTEMPT_COLUMNS = (
    "number",
    "state",
    "worker",
    "pid",
    "worker_id",
    "delivery",
    "claim_token",
    "started_at",
)


def running_attempt(
    number: int, delivery: str, token: str, lease: Lease, at: datetime
) -> dict[str, Any]:
    """Attempt ``number``'s row as it starts, by column (``ATTEMPT_COLUMNS``)."""
    values = (
        number,
        AttemptState.RUNNING,
        lease.hostname,
        lease.pid,
        lease.worker_id,
        delivery,
        token,
        at,
    )
    return dict(zip(ATTEMPT_COLUMNS, values, strict=True))


def attempt_event(number: int) -> str:
    """The detail of the event of a node starting attempt ``number``."""
    return f"attempt {number}"


def _claim_first_at_once() -> sa.Insert:
    """``_CLAIM_FIRST`` with the rows ``claim_first`` adds, in one statement.

    PostgreSQL's data-modifying CTEs: the node claimed, its attempt 1 and
    the event are written by one statement, which returns the node's id if
    it was claimed and nothing otherwise.
    """
    claimed = _CLAIM_FIRST.returning(nodes.c.id).cte("claimed")
    # the workflow id as a value, as each row a claim writes names it
    workflow_id = sa.bindparam("b_wf", type_=Id)
    started_at = sa.bindparam("b_at", type_=Timestamp)
    attempt = (
        attempts.insert()
        .from_select(
            ("workflow_id", "node_id", *ATTEMPT_COLUMNS),
            sa.select(
                workflow_id,
                claimed.c.id,
                *(
                    sa.bindparam(f"a_{name}", type_=attempts.c[name].type)
                    for name in ATTEMPT_COLUMNS
                ),
            ),
        )
        .cte("attempt")
    )
    return (
        events.insert()
        .from_select(
            ("workflow_id", "node_id", "from_state", "to_state", "at", "detail"),
            sa.select(
                workflow_id,
                claimed.c.id,
                sa.literal(_N.QUEUED.value, sa.String),
                sa.literal(_N.RUNNING.value, sa.String),
                started_at,
                sa.literal(attempt_event(1), sa.String),
            ),
        )
        .add_cte(attempt)
        .returning(events.c.node_id)
    )


_CLAIM_FIRST_AT_ONCE = _claim_first_at_once()


def claim_first(
    conn: sa.Connection,
    workflow_id: str,
    node_id: str,
    delivery: str,
    token: str,
    lease: Lease,
    at: datetime,
) -> bool:
    """The usual claim, in one statement: a task's first delivery, while it runs.

    The node must be QUEUED with no attempt yet and its workflow
    IN_PROGRESS, read under a share lock as the general claim reads it;
    every other case is left to the general claim (False).
    """
    started = conn.execute(
        _CLAIM_FIRST,
        {"b_wf": workflow_id, "b_node": node_id, "b_number": 1, "b_at": at},
    ).rowcount
    if started:
        _record_attempt(
            conn, workflow_id, node_id, 1, delivery, token, lease, at, _N.QUEUED
        )
    return bool(started)


def claim_first_at_once(
    conn: sa.Connection,
    workflow_id: str,
    node_id: str,
    delivery: str,
    token: str,
    lease: Lease,
    at: datetime,
) -> bool:
    """``claim_first`` as one statement, for PostgreSQL.

    Run on a connection that commits each statement (autocommit), it is the
    whole claim's transaction in one round trip, with no ``BEGIN`` and no
    ``COMMIT`` sent on their own.
    """
    flush_events(conn)  # it writes its own event: the pending ones go first
    claimed = direct.execute(
        conn,
        _CLAIM_FIRST_AT_ONCE,
        {
            "b_wf": workflow_id,
            "b_node": node_id,
            "b_number": 1,
            "b_at": at,
            **{
                f"a_{name}": value
                for name, value in running_attempt(
                    1, delivery, token, lease, at
                ).items()
            },
        },
    )
    return bool(claimed)


def start_attempt(
    conn: sa.Connection,
    workflow_id: str,
    node_id: str,
    number: int,
    delivery: str,
    token: str,
    lease: Lease,
    at: datetime,
    node_state: str,
) -> None:
    """Record attempt ``number`` as RUNNING and the node with it.

    ``node_state`` is the node's state when claimed: RUNNING when a Celery
    retry overtook the signal of the attempt before it.
    """
    conn.execute(
        _RUNNING,
        {"b_wf": workflow_id, "b_node": node_id, "b_number": number, "b_at": at},
    )
    if node_state == _N.RUNNING:
        # Celery publishes the next attempt before its task_retry signal
        # reaches us: an older attempt still RUNNING ended in a retry.
        conn.execute(
            sa.update(attempts)
            .where(
                attempts.c.workflow_id == workflow_id,
                attempts.c.node_id == node_id,
                attempts.c.number < number,
                attempts.c.state == AttemptState.RUNNING,
            )
            .values(state=AttemptState.RETRY, finished_at=at)
        )
    _record_attempt(
        conn, workflow_id, node_id, number, delivery, token, lease, at, node_state
    )


def _record_attempt(
    conn: sa.Connection,
    workflow_id: str,
    node_id: str,
    number: int,
    delivery: str,
    token: str,
    lease: Lease,
    at: datetime,
    from_state: str,
) -> None:
    conn.execute(
        _INSERT_ATTEMPT,
        {
            "node_id": node_id,
            "workflow_id": workflow_id,
            **running_attempt(number, delivery, token, lease, at),
        },
    )
    add_event(
        conn, workflow_id, node_id, from_state, _N.RUNNING, at, attempt_event(number)
    )
