"""Recovery steps: find what a crash left behind, inside the store's transactions.

Every function takes the open connection of the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from celeriac.records import Dispatch, FailedCall, Failure
from celeriac.states import (
    AttemptState,
    NodeKind,
    NodeState,
    WorkflowState,
    held_back_as,
    may_start,
    starts_under,
)
from celeriac.storage.claims import mark_lost, parse_delivery
from celeriac.storage.dispatches import DISPATCH_COLUMNS, load_dispatches
from celeriac.storage.event_log import add_event
from celeriac.storage.moves import mark_queued, set_node_state
from celeriac.storage.rows import aware
from celeriac.storage.schema import (
    attempts,
    is_current_attempt,
    nodes,
    workers,
    workflows,
)

_N = NodeState
_W = WorkflowState
#: The detail of the event a node gets when recovery publishes it again.
REPUBLISHED = "published again by recovery"


def may_start_sql(
    kind: sa.ColumnElement[Any], state: sa.ColumnElement[Any]
) -> sa.ColumnElement[bool]:
    """``states.may_start(kind, state)`` in SQL, built from the node table."""
    return sa.or_(
        *(
            sa.and_(kind == node_kind, state.in_(starts_under(node_kind)))
            for node_kind in NodeKind
            if starts_under(node_kind)
        )
    )


def _may_run() -> sa.ColumnElement[bool]:
    """:func:`may_start_sql` for nodes joined with their workflow."""
    return may_start_sql(nodes.c.kind, workflows.c.state)


#: A node published again k times waits delay * 2**k before the next time,
#: k at most this: a message only waiting in a long queue is not sent over
#: and over (each copy would cost a claim to drop).
BACKOFF_STEPS = 7
#: How many of the nodes that started last tell where the workers are in
#: the queue: their messages were taken nearly in order, a few at a time.
FRONT_SAMPLE = 64


def _overdue(delay: timedelta, at: datetime) -> sa.ColumnElement[bool]:
    """Queued longer than ``delay`` times 2 to the power of its republish count."""

    def older(steps: int) -> sa.ColumnElement[bool]:
        return nodes.c.queued_at < at - delay * (1 << steps)

    return sa.or_(
        *(
            sa.and_(nodes.c.republished == steps, older(steps))
            for steps in range(BACKOFF_STEPS)
        ),
        sa.and_(nodes.c.republished >= BACKOFF_STEPS, older(BACKOFF_STEPS)),
    )


def _delivery_front(
    conn: sa.Connection, delay: timedelta, since: datetime
) -> datetime | None:
    """When the newest message the workers took lately was queued.

    The latest ``queued_at`` of the :data:`FRONT_SAMPLE` nodes that started
    last, within ``delay`` before ``since``, whatever their state now; None
    when none did (the workers are idle, or busy with long tasks). Read from
    the index of started nodes, newest first: a few rows, however many ran.
    """
    latest = (
        sa.select(nodes.c.queued_at)
        .where(nodes.c.started_at >= since - delay)
        .order_by(nodes.c.started_at.desc())
        .limit(FRONT_SAMPLE)
        .subquery()
    )
    front: datetime | None = conn.execute(
        sa.select(sa.func.max(latest.c.queued_at))
    ).scalar()
    return aware(front)


def requeue_stale(
    conn: sa.Connection,
    delay: timedelta,
    since: datetime,
    at: datetime,
    limit: int,
    skip: Collection[str] = (),
) -> list[Dispatch]:
    """Up to ``limit`` QUEUED nodes whose message is overdue, to publish again.

    Overdue: not started ``delay`` after queued. Their message may be lost
    (a producer died between commit and publish, a broker lost its queues)
    or just waiting in a long queue: publishing again is safe because a
    second delivery of the same attempt is dropped when it is claimed, and
    each time a node is published again it waits twice as long for the next
    (:data:`BACKOFF_STEPS`). Overdue is measured at ``since``, the start of
    the pass, so that a node published again at ``at`` is not taken twice in
    one pass; ``delay`` zero takes every node queued before it (the broker
    lost its messages). On PostgreSQL the nodes are claimed ``FOR
    UPDATE SKIP LOCKED``: passes running at once take different nodes, and
    a node one pass took is no longer overdue for the others. Workflows in
    ``skip`` (whose rows cannot be read) are left out.

    A node only waiting in a backlog is not overdue, however old: while the
    workers take messages (:func:`_delivery_front`), a node is overdue only
    once they took one queued ``delay`` after it. A queue delivers in order,
    so they went past its message: it was lost.
    """
    query = (
        sa.select(*DISPATCH_COLUMNS, nodes.c.attempt_base.label("base"))
        .select_from(nodes.join(workflows, workflows.c.id == nodes.c.workflow_id))
        .where(nodes.c.state == _N.QUEUED, _overdue(delay, since), _may_run())
        .limit(limit)
        .with_for_update(of=nodes, skip_locked=True)
    )
    front = _delivery_front(conn, delay, since) if delay else None
    if front is not None:
        query = query.where(nodes.c.queued_at < front - delay)
    rows = conn.execute(_skipping(query, skip)).all()
    return _publish_again(conn, rows, _N.QUEUED, at)


def requeue_retrying(
    conn: sa.Connection,
    delay: timedelta,
    since: datetime,
    at: datetime,
    limit: int,
    skip: Collection[str] = (),
) -> list[Dispatch]:
    """Up to ``limit`` RETRYING nodes whose retry was due ``delay`` ago but never came.

    The retry's message can be lost: a worker that held it until its ETA was
    killed (Redis gives it back only after the visibility timeout), or the
    broker lost its queues. The same message is sent again: the node's
    dispatch with Celery's next retry count, so ``max_retries`` keeps
    counting, and the original, should it turn up, is a duplicate.
    """
    current = attempts.alias("current")
    query = (
        sa.select(
            *DISPATCH_COLUMNS,
            nodes.c.attempt_base.label("base"),
            current.c.delivery,
        )
        .select_from(
            nodes.join(workflows, workflows.c.id == nodes.c.workflow_id).join(
                current, is_current_attempt(current)
            )
        )
        .where(
            nodes.c.state == _N.RETRYING,
            current.c.state == AttemptState.RETRY,
            sa.func.coalesce(current.c.retry_eta, current.c.finished_at)
            < since - delay,
            _overdue(delay, since),
            _may_run(),
        )
        .limit(limit)
        .with_for_update(of=nodes, skip_locked=True)
    )
    rows = conn.execute(_skipping(query, skip)).all()
    dispatches = _publish_again(conn, rows, _N.RETRYING, at)
    return [
        replace(dispatch, retries=parse_delivery(row.delivery)[1] + 1)
        for dispatch, row in zip(dispatches, rows, strict=True)
    ]


def _skipping(query: sa.Select[Any], skip: Collection[str]) -> sa.Select[Any]:
    """``query`` without the nodes of the workflows in ``skip``, if any."""
    return query.where(nodes.c.workflow_id.not_in(skip)) if skip else query


def _publish_again(
    conn: sa.Connection, rows: Sequence[Any], state: str, at: datetime
) -> list[Dispatch]:
    """Record that recovery publishes ``rows`` again, and what to publish."""
    if not rows:
        return []
    by_workflow: dict[str, list[str]] = {}
    for row in rows:  # a batch holds the nodes of several workflows
        by_workflow.setdefault(row.workflow_id, []).append(row.id)
    for workflow_id, ids in by_workflow.items():
        conn.execute(
            sa.update(nodes)
            .where(nodes.c.workflow_id == workflow_id, nodes.c.id.in_(ids))
            .values(queued_at=at, republished=nodes.c.republished + 1)
        )
    for row in rows:
        add_event(conn, row.workflow_id, row.id, state, state, at, REPUBLISHED)
    return load_dispatches(conn, rows)


def unsettled_workflows(
    conn: sa.Connection, failed_before: datetime
) -> list[tuple[str, str]]:
    """Workflows whose state lags behind their nodes, and the trigger they need.

    A process that died between a node's commit and the follow-up state
    change leaves these: the END node done but the workflow not COMPLETED,
    a task FAILED but the workflow not FAILED, a pause with nothing running.
    A failed workflow that still runs other nodes (``on_failure="continue"``)
    is found too: its ``fail`` keeps the error and changes nothing else
    while a node can still run.

    A task that failed at ``failed_before`` or later is left to the process
    that recorded it: only that process knows the exception's class and
    arguments (``get()`` raises the task's own exception from them), which
    recovery, from the node's row, cannot give.
    """
    open_states = (_W.IN_PROGRESS, _W.REQUESTING_PAUSE, _W.PAUSED)
    end_done = sa.exists().where(
        nodes.c.workflow_id == workflows.c.id,
        nodes.c.kind == NodeKind.END,
        nodes.c.state == _N.SUCCEEDED,
    )
    task_failed = sa.exists().where(
        nodes.c.workflow_id == workflows.c.id,
        nodes.c.kind == NodeKind.TASK,
        nodes.c.state == _N.FAILED,
        nodes.c.finished_at < failed_before,
    )
    running = sa.exists().where(
        nodes.c.workflow_id == workflows.c.id, nodes.c.state == _N.RUNNING
    )
    found: list[tuple[str, str]] = []
    for trigger, condition in (
        ("complete", sa.and_(workflows.c.state.in_(open_states), end_done)),
        ("fail", sa.and_(workflows.c.state.in_(open_states), task_failed)),
        ("settle", sa.and_(workflows.c.state == _W.REQUESTING_PAUSE, ~running)),
    ):
        ids = conn.execute(sa.select(workflows.c.id).where(condition)).scalars()
        found.extend((workflow_id, trigger) for workflow_id in ids)
    return found


def first_failure(conn: sa.Connection, workflow_id: str) -> Failure | None:
    """The earliest failed task node: (node id, exception type, message)."""
    row = conn.execute(
        sa.select(nodes.c.id, nodes.c.exc_type, nodes.c.exc_message)
        .where(
            nodes.c.workflow_id == workflow_id,
            nodes.c.kind == NodeKind.TASK,
            nodes.c.state == _N.FAILED,
        )
        .order_by(nodes.c.finished_at)
        .limit(1)
    ).first()
    if row is None:
        return None
    return Failure(row.id, row.exc_type or "", row.exc_message or "")


def failed_call(
    conn: sa.Connection, workflow_id: str, node_id: str
) -> FailedCall | None:
    """What failed node ``node_id`` was called with and how it failed, as stored.

    For an errback that takes ``(request, exc, traceback)`` run without the
    worker that recorded the failure. None if the node is not FAILED.
    """
    row = conn.execute(
        sa.select(
            *DISPATCH_COLUMNS,
            nodes.c.task,
            nodes.c.state,
            nodes.c.exc_type,
            nodes.c.exc_message,
            nodes.c.current_attempt.label("base"),
        ).where(nodes.c.workflow_id == workflow_id, nodes.c.id == node_id)
    ).first()
    if row is None or row.state != _N.FAILED or row.signature is None:
        return None
    traceback = conn.execute(
        sa.select(attempts.c.traceback).where(
            attempts.c.workflow_id == workflow_id,
            attempts.c.node_id == node_id,
            attempts.c.number == row.base,
        )
    ).scalar_one_or_none()
    (dispatch,) = load_dispatches(conn, [row])
    return FailedCall(
        dispatch,
        row.task,
        row.exc_type or "",
        row.exc_message or "",
        traceback,
    )


def requeue_lost(
    conn: sa.Connection,
    dead_before: datetime,
    at: datetime,
    limit: int,
    skip: Collection[str] = (),
) -> list[Dispatch]:
    """Up to ``limit`` RUNNING nodes whose worker stopped heartbeating: LOST.

    They are queued again when they may start (``states.may_start``), put
    aside otherwise (``states.held_back_as``: PENDING while the workflow
    pauses, SKIPPED once it failed, CANCELLED with it).
    """
    current = attempts.alias("current")
    query = (
        sa.select(
            *DISPATCH_COLUMNS,
            nodes.c.current_attempt.label("base"),
            workflows.c.state.label("workflow_state"),
        )
        .select_from(
            nodes.join(workflows, workflows.c.id == nodes.c.workflow_id)
            .join(current, is_current_attempt(current))
            .outerjoin(workers, workers.c.id == current.c.worker_id)
        )
        .where(
            nodes.c.state == _N.RUNNING,
            current.c.state == AttemptState.RUNNING,
            sa.or_(
                workers.c.heartbeat_at.is_(None), workers.c.heartbeat_at < dead_before
            ),
        )
        .limit(limit)
        .with_for_update(of=nodes, skip_locked=True)
    )
    rows = conn.execute(_skipping(query, skip)).all()
    requeue = []
    for row in rows:
        mark_lost(conn, row.workflow_id, row.id, row.base, at)
        if may_start(row.kind, row.workflow_state):
            if mark_queued(conn, row.workflow_id, [row.id], _N.RUNNING, at):
                requeue.append(row)
        else:
            back = held_back_as(row.workflow_state)
            set_node_state(conn, row.workflow_id, [row.id], (_N.RUNNING,), back, at)
    return load_dispatches(conn, requeue) if requeue else []
