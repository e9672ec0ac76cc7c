"""Store: every read and write celeriac makes, each a named domain method.

Each public method is one transaction. Writes that must respect the
workflow's state read the workflow row ``FOR SHARE`` (node outcomes, claims),
so that state changes, which take it ``FOR UPDATE``, wait for them and are
waited for: after ``pause()`` commits, no transaction dispatches a node.
SQLite has no row locks; there every write transaction is ``BEGIN IMMEDIATE``,
which serializes writers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import sqlalchemy as sa

from celeriac.errors import WorkflowNotFound
from celeriac.records import (
    Attempt,
    Dispatch,
    Node,
    NewWorkflow,
    Outcome,
    TransitionResult,
    WorkflowRecord,
)
from celeriac.states import AttemptState, NodeKind, NodeState, WorkflowState
from celeriac.storage.database import retry_transient
from celeriac.storage.schema import attempts, edges, events, nodes, workflows

Decide = Callable[[str, str], str]

_N = NodeState
_W = WorkflowState
_CLAIMABLE = (_N.QUEUED, _N.RETRYING, _N.RUNNING)
_UNFINISHED = (_N.PENDING, _N.QUEUED, _N.RETRYING)


class Claim(Enum):
    """The answer to a worker asking whether it may run a node's body."""

    RUN = "run"
    #: the workflow is pausing: the node went back to PENDING
    HOLD = "hold"
    #: a duplicate, or the workflow no longer runs this node
    DROP = "drop"


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Store:
    """All of celeriac's persistence, behind named methods."""

    def __init__(self, db: sa.Engine) -> None:
        self.db = db

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self.db.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with (
            self.db.connect().execution_options(celeriac_read_only=True) as conn,
            conn.begin(),
        ):
            yield conn

    # -- submission -------------------------------------------------------

    @retry_transient
    def insert_workflow(self, new: NewWorkflow) -> list[Dispatch]:
        """Store a compiled workflow and mark its first nodes QUEUED."""
        at = now()
        with self._write() as conn:
            conn.execute(
                workflows.insert(),
                {
                    "id": new.id,
                    "name": new.name,
                    "state": _W.IN_PROGRESS,
                    "canvas": new.canvas,
                    "args": new.args,
                    "kwargs": new.kwargs,
                    "metadata": new.metadata,
                    "result_node_id": new.result_node_id,
                    "created_at": at,
                    "updated_at": at,
                },
            )
            conn.execute(
                nodes.insert(),
                [
                    {
                        "id": n.id,
                        "workflow_id": new.id,
                        "position": n.position,
                        "kind": n.kind,
                        "task": n.task,
                        "label": n.label,
                        "signature": n.signature,
                        "state": _N.PENDING,
                        "waiting": n.waiting,
                        "created_at": at,
                    }
                    for n in new.nodes
                ],
            )
            if new.edges:
                conn.execute(
                    edges.insert(),
                    [
                        {
                            "workflow_id": new.id,
                            "parent_id": e.parent_id,
                            "child_id": e.child_id,
                            "position": e.position,
                            "on_error": e.on_error,
                        }
                        for e in new.edges
                    ],
                )
            _add_event(conn, new.id, None, None, _W.IN_PROGRESS, at)
            roots = [
                n.id
                for n in new.nodes
                if n.waiting == 0 and n.kind != NodeKind.ERRBACK
            ]
            dispatch, _ = _release(conn, new.id, _W.IN_PROGRESS, roots, (), at)
        return dispatch

    # -- worker side: the hot path ----------------------------------------

    @retry_transient
    def claim_node(
        self,
        workflow_id: str,
        node_id: str,
        number: int,
        worker: str | None,
        pid: int | None,
    ) -> Claim:
        """Decide whether attempt ``number`` of a node may run, and record it."""
        at = now()
        with self._write() as conn:
            state = _workflow_state(conn, workflow_id, lock="share")
            kind = conn.execute(
                sa.select(nodes.c.kind).where(nodes.c.id == node_id)
            ).scalar_one_or_none()
            if kind is None:
                return Claim.DROP
            runs_now = state == _W.IN_PROGRESS or (
                kind == NodeKind.ERRBACK and state != _W.CANCELLED
            )
            if not runs_now:
                back = _N.CANCELLED if state == _W.CANCELLED else _N.PENDING
                moved = _set_node_state(conn, workflow_id, [node_id], _UNFINISHED[1:], back, at)
                pausing = state in (_W.REQUESTING_PAUSE, _W.PAUSED)
                return Claim.HOLD if moved and pausing else Claim.DROP
            previous = conn.execute(
                sa.update(nodes)
                .where(
                    nodes.c.id == node_id,
                    nodes.c.state.in_(_CLAIMABLE),
                    nodes.c.current_attempt < number,
                )
                .values(
                    state=_N.RUNNING,
                    current_attempt=number,
                    celery_task_id=node_id,
                    started_at=sa.func.coalesce(nodes.c.started_at, at),
                )
                .returning(nodes.c.id)
            ).first()
            if previous is None:
                return Claim.DROP
            conn.execute(
                attempts.insert(),
                {
                    "node_id": node_id,
                    "workflow_id": workflow_id,
                    "number": number,
                    "state": AttemptState.RUNNING,
                    "worker": worker,
                    "pid": pid,
                    "started_at": at,
                },
            )
            _add_event(conn, workflow_id, node_id, None, _N.RUNNING, at, f"attempt {number}")
        return Claim.RUN

    @retry_transient
    def record_success(
        self, workflow_id: str, node_id: str, number: int, result: Any
    ) -> Outcome:
        """Record a node's result and release the successors it made ready."""
        at = now()
        with self._write() as conn:
            state = _workflow_state(conn, workflow_id, lock="share")
            if not _finish_node(conn, node_id, number, _N.SUCCEEDED, at, result=result):
                return Outcome(False, [], state)
            _finish_attempt(conn, node_id, number, AttemptState.SUCCEEDED, at)
            _add_event(conn, workflow_id, node_id, _N.RUNNING, _N.SUCCEEDED, at)
            children = _decrement_children(conn, node_id)
            dispatch, finished = _release(
                conn, workflow_id, state, children, (result,), at
            )
        return Outcome(
            True, dispatch, state, finished, settle=state == _W.REQUESTING_PAUSE
        )

    @retry_transient
    def record_failure(
        self,
        workflow_id: str,
        node_id: str,
        number: int,
        exc_type: str,
        exc_message: str,
        traceback: str | None,
    ) -> Outcome:
        """Record that a node failed for good, and queue the errbacks it triggers."""
        at = now()
        with self._write() as conn:
            state = _workflow_state(conn, workflow_id, lock="share")
            if not _finish_node(
                conn, node_id, number, _N.FAILED, at, exc=(exc_type, exc_message)
            ):
                return Outcome(False, [], state)
            _finish_attempt(
                conn, node_id, number, AttemptState.FAILED, at,
                exc_type=exc_type, exc_message=exc_message, traceback=traceback,
            )
            _add_event(conn, workflow_id, node_id, _N.RUNNING, _N.FAILED, at, exc_type)
            errbacks = _queue_errbacks(conn, workflow_id, node_id, at)
        return Outcome(True, errbacks, state, settle=state == _W.REQUESTING_PAUSE)

    @retry_transient
    def record_retry(
        self,
        workflow_id: str,
        node_id: str,
        number: int,
        exc_type: str,
        exc_message: str,
        eta: datetime | None,
    ) -> None:
        """Record that attempt ``number`` ended in a Celery retry."""
        at = now()
        with self._write() as conn:
            _finish_attempt(
                conn, node_id, number, AttemptState.RETRY, at,
                exc_type=exc_type, exc_message=exc_message, retry_eta=eta,
            )
            moved = conn.execute(
                sa.update(nodes)
                .where(
                    nodes.c.id == node_id,
                    nodes.c.state == _N.RUNNING,
                    nodes.c.current_attempt == number,
                )
                .values(state=_N.RETRYING)
            ).rowcount
            if moved:
                _add_event(conn, workflow_id, node_id, _N.RUNNING, _N.RETRYING, at, exc_type)

    @retry_transient
    def record_revoked(self, workflow_id: str, node_id: str, number: int) -> None:
        """Record that Celery revoked a node (cancel, terminate or expiry)."""
        at = now()
        with self._write() as conn:
            _finish_attempt(conn, node_id, number, AttemptState.REVOKED, at)
            _set_node_state(
                conn, workflow_id, [node_id], (*_UNFINISHED, _N.RUNNING), _N.CANCELLED, at
            )

    # -- workflow state changes -------------------------------------------

    @retry_transient
    def transition_workflow(
        self,
        workflow_id: str,
        trigger: str,
        decide: Decide,
        error: tuple[str | None, str, str] | None = None,
    ) -> TransitionResult | None:
        """Apply ``trigger`` to a workflow, with its side effects, atomically.

        ``decide(state, trigger)`` names the new state or raises
        ``InvalidTransition``; nothing is written then. Returns None when an
        internal trigger has nothing to do (``settle`` with nodes running).
        """
        at = now()
        with self._write() as conn:
            source = _workflow_state(conn, workflow_id, lock="update")
            dest = decide(source, trigger)
            counts = _running_and_queued(conn, workflow_id)
            if trigger == "settle" and counts[_N.RUNNING]:
                return None
            dispatch: list[Dispatch] = []
            revoke: list[str] = []
            values: dict[str, Any] = {"state": dest, "updated_at": at}
            _add_event(conn, workflow_id, None, source, dest, at, trigger)
            if trigger == "pause" and not counts[_N.RUNNING]:
                settled = decide(dest, "settle")
                _add_event(conn, workflow_id, None, dest, settled, at, "settle")
                values["state"] = dest = settled
            elif trigger in ("resume", "retry"):
                if trigger == "retry":
                    _reset_failed(conn, workflow_id, at)
                    values.update(failed_node_id=None, exc_type=None, exc_message=None)
                    values["finished_at"] = None
                dispatch = _redispatch_ready(conn, workflow_id, at)
            elif trigger == "cancel":
                revoke = _cancel_nodes(conn, workflow_id, at)
                values["finished_at"] = at
            elif trigger == "complete":
                values.update(result=_result_of(conn, workflow_id), finished_at=at)
                _set_node_state(conn, workflow_id, None, (_N.PENDING,), _N.SKIPPED, at, kind=NodeKind.ERRBACK)
            elif trigger == "fail" and error is not None:
                values.update(
                    failed_node_id=error[0],
                    exc_type=error[1],
                    exc_message=error[2],
                    finished_at=at,
                )
            conn.execute(
                sa.update(workflows).where(workflows.c.id == workflow_id).values(**values)
            )
        return TransitionResult(source, dest, dispatch, revoke)

    # -- reads ------------------------------------------------------------

    @retry_transient
    def get_workflow(self, workflow_id: str) -> WorkflowRecord:
        """The workflow row; raises ``WorkflowNotFound``."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(workflows).where(workflows.c.id == workflow_id)
            ).first()
        if row is None:
            raise WorkflowNotFound(workflow_id)
        return _workflow_record(row)

    @retry_transient
    def workflow_state(self, workflow_id: str) -> str:
        """The workflow's current state; raises ``WorkflowNotFound``."""
        with self._read() as conn:
            return _workflow_state(conn, workflow_id, lock=None)

    @retry_transient
    def list_workflows(
        self, state: str | None = None, name: str | None = None, limit: int = 50
    ) -> list[WorkflowRecord]:
        """Workflows, newest first, optionally filtered."""
        query = sa.select(workflows).order_by(workflows.c.created_at.desc()).limit(limit)
        if state:
            query = query.where(workflows.c.state == state)
        if name:
            query = query.where(workflows.c.name == name)
        with self._read() as conn:
            return [_workflow_record(row) for row in conn.execute(query)]

    @retry_transient
    def list_nodes(self, workflow_id: str) -> list[Node]:
        """The workflow's task and errback nodes in canvas order, with attempts."""
        with self._read() as conn:
            node_rows = conn.execute(
                sa.select(nodes)
                .where(
                    nodes.c.workflow_id == workflow_id,
                    nodes.c.kind.in_((NodeKind.TASK, NodeKind.ERRBACK)),
                )
                .order_by(nodes.c.position)
            ).all()
            attempt_rows = conn.execute(
                sa.select(attempts)
                .where(attempts.c.workflow_id == workflow_id)
                .order_by(attempts.c.number)
            ).all()
            edge_rows = conn.execute(
                sa.select(edges.c.parent_id, edges.c.child_id)
                .where(edges.c.workflow_id == workflow_id)
                .order_by(edges.c.position)
            ).all()
        by_node: dict[str, list[Attempt]] = {}
        for row in attempt_rows:
            by_node.setdefault(row.node_id, []).append(_attempt_record(row))
        parents: dict[str, list[str]] = {}
        for edge in edge_rows:
            parents.setdefault(edge.child_id, []).append(edge.parent_id)
        return [
            Node(
                id=row.id,
                task=row.task,
                state=row.state,
                kind=row.kind,
                position=row.position,
                attempts=by_node.get(row.id, []),
                result=row.result,
                error=f"{row.exc_type}: {row.exc_message}" if row.exc_type else None,
                exc_type=row.exc_type,
                label=row.label,
                parents=parents.get(row.id, []),
            )
            for row in node_rows
        ]

    @retry_transient
    def count_nodes(self, workflow_id: str, label: str | None = None) -> dict[tuple[str, str], int]:
        """How many nodes there are of each (kind, state)."""
        query = (
            sa.select(nodes.c.kind, nodes.c.state, sa.func.count())
            .where(nodes.c.workflow_id == workflow_id)
            .group_by(nodes.c.kind, nodes.c.state)
        )
        if label is not None:
            query = query.where(nodes.c.label == label)
        with self._read() as conn:
            return {(kind, state): count for kind, state, count in conn.execute(query)}


# -- helpers, each used inside one of the transactions above ---------------


def _workflow_state(conn: sa.Connection, workflow_id: str, lock: str | None) -> str:
    query = sa.select(workflows.c.state).where(workflows.c.id == workflow_id)
    if lock == "share":
        query = query.with_for_update(read=True)
    elif lock == "update":
        query = query.with_for_update()
    state = conn.execute(query).scalar_one_or_none()
    if state is None:
        raise WorkflowNotFound(workflow_id)
    return str(state)


def _add_event(
    conn: sa.Connection,
    workflow_id: str,
    node_id: str | None,
    from_state: str | None,
    to_state: str,
    at: datetime,
    detail: str | None = None,
) -> None:
    conn.execute(
        events.insert(),
        {
            "workflow_id": workflow_id,
            "node_id": node_id,
            "from_state": from_state,
            "to_state": to_state,
            "at": at,
            "detail": detail,
        },
    )


def _set_node_state(
    conn: sa.Connection,
    workflow_id: str,
    node_ids: Sequence[str] | None,
    sources: Sequence[str],
    dest: str,
    at: datetime,
    kind: str | None = None,
) -> list[str]:
    """Move nodes in one of ``sources`` to ``dest``, with an event each."""
    query = sa.select(nodes.c.id, nodes.c.state).where(
        nodes.c.workflow_id == workflow_id, nodes.c.state.in_(sources)
    )
    if node_ids is not None:
        query = query.where(nodes.c.id.in_(node_ids))
    if kind is not None:
        query = query.where(nodes.c.kind == kind)
    rows = conn.execute(query).all()
    if not rows:
        return []
    ids = [row.id for row in rows]
    finished = at if dest in (_N.CANCELLED, _N.SKIPPED) else None
    conn.execute(
        sa.update(nodes)
        .where(nodes.c.id.in_(ids))
        .values(state=dest, finished_at=finished)
    )
    conn.execute(
        events.insert(),
        [
            {
                "workflow_id": workflow_id,
                "node_id": row.id,
                "from_state": row.state,
                "to_state": dest,
                "at": at,
            }
            for row in rows
        ],
    )
    return ids


def _finish_node(
    conn: sa.Connection,
    node_id: str,
    number: int,
    dest: str,
    at: datetime,
    result: Any = None,
    exc: tuple[str, str] | None = None,
) -> bool:
    """Record the outcome of the node's current attempt; False if stale."""
    values: dict[str, Any] = {"state": dest, "finished_at": at, "result": result}
    if exc is not None:
        values.update(exc_type=exc[0], exc_message=exc[1])
    updated = conn.execute(
        sa.update(nodes)
        .where(
            nodes.c.id == node_id,
            nodes.c.state == _N.RUNNING,
            nodes.c.current_attempt == number,
        )
        .values(**values)
    )
    return bool(updated.rowcount)


def _finish_attempt(
    conn: sa.Connection,
    node_id: str,
    number: int,
    state: str,
    at: datetime,
    **values: Any,
) -> None:
    conn.execute(
        sa.update(attempts)
        .where(attempts.c.node_id == node_id, attempts.c.number == number)
        .values(state=state, finished_at=at, **values)
    )


def _decrement_children(conn: sa.Connection, parent_id: str) -> list[str]:
    """Count one more finished parent for each child; return those now ready."""
    children = sa.select(edges.c.child_id).where(
        edges.c.parent_id == parent_id, edges.c.on_error.is_(False)
    )
    rows = conn.execute(
        sa.update(nodes)
        .where(nodes.c.id.in_(children))
        .values(waiting=nodes.c.waiting - 1)
        .returning(nodes.c.id, nodes.c.waiting, nodes.c.state)
    ).all()
    return [row.id for row in rows if row.waiting == 0 and row.state == _N.PENDING]


def _release(
    conn: sa.Connection,
    workflow_id: str,
    state: str,
    ready: list[str],
    inputs: tuple[Any, ...],
    at: datetime,
) -> tuple[list[Dispatch], bool]:
    """Act on nodes whose parents all finished.

    Joins and END complete here, in the database; task nodes are marked
    QUEUED for dispatch, only while the workflow is IN_PROGRESS. ``inputs``
    is what the finished parent hands its children: ``(result,)``, or ``()``
    for the roots of a workflow.
    """
    if not ready:
        return [], False
    rows = conn.execute(
        sa.select(nodes.c.id, nodes.c.kind, nodes.c.signature, nodes.c.current_attempt)
        .where(nodes.c.id.in_(ready))
        .order_by(nodes.c.position)
    ).all()
    dispatch: list[Dispatch] = []
    finished = False
    tasks = []
    for row in rows:
        if row.kind == NodeKind.TASK:
            tasks.append(row)
            continue
        joined = _join_value(conn, row.id) if row.kind == NodeKind.JOIN else None
        conn.execute(
            sa.update(nodes)
            .where(nodes.c.id == row.id)
            .values(state=_N.SUCCEEDED, result=joined, finished_at=at)
        )
        if row.kind == NodeKind.END:
            finished = True
            continue
        more, done = _release(
            conn, workflow_id, state, _decrement_children(conn, row.id), (joined,), at
        )
        dispatch.extend(more)
        finished = finished or done
    if tasks and state == _W.IN_PROGRESS:
        _mark_queued(conn, workflow_id, [row.id for row in tasks], _N.PENDING, at)
        dispatch.extend(
            Dispatch(row.id, workflow_id, row.signature, inputs, row.current_attempt, row.kind)
            for row in tasks
        )
    return dispatch, finished


def _mark_queued(
    conn: sa.Connection, workflow_id: str, ids: list[str], source: str, at: datetime
) -> None:
    conn.execute(
        sa.update(nodes)
        .where(nodes.c.id.in_(ids))
        .values(
            state=_N.QUEUED,
            queued_at=at,
            attempt_base=nodes.c.current_attempt,
            celery_task_id=nodes.c.id,
        )
    )
    conn.execute(
        events.insert(),
        [
            {
                "workflow_id": workflow_id,
                "node_id": node_id,
                "from_state": source,
                "to_state": _N.QUEUED,
                "at": at,
            }
            for node_id in ids
        ],
    )


def _join_value(conn: sa.Connection, node_id: str) -> list[Any]:
    parent = nodes.alias("parent")
    query = (
        sa.select(parent.c.result)
        .select_from(edges.join(parent, parent.c.id == edges.c.parent_id))
        .where(edges.c.child_id == node_id, edges.c.on_error.is_(False))
        .order_by(edges.c.position)
    )
    return [row.result for row in conn.execute(query)]


def _queue_errbacks(
    conn: sa.Connection, workflow_id: str, failed_id: str, at: datetime
) -> list[Dispatch]:
    """Queue the errbacks guarding ``failed_id`` that have not run yet."""
    rows = conn.execute(
        sa.select(nodes.c.id, nodes.c.signature, nodes.c.current_attempt, nodes.c.kind)
        .select_from(nodes.join(edges, edges.c.child_id == nodes.c.id))
        .where(
            edges.c.parent_id == failed_id,
            edges.c.on_error.is_(True),
            nodes.c.state == _N.PENDING,
        )
        .order_by(nodes.c.position)
    ).all()
    if not rows:
        return []
    _mark_queued(conn, workflow_id, [row.id for row in rows], _N.PENDING, at)
    return [
        Dispatch(row.id, workflow_id, row.signature, (failed_id,), row.current_attempt, row.kind)
        for row in rows
    ]


def _running_and_queued(conn: sa.Connection, workflow_id: str) -> dict[str, int]:
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


def _redispatch_ready(conn: sa.Connection, workflow_id: str, at: datetime) -> list[Dispatch]:
    """Queue every task node whose parents all succeeded but that was held back."""
    rows = conn.execute(
        sa.select(nodes.c.id, nodes.c.signature, nodes.c.current_attempt, nodes.c.kind)
        .where(
            nodes.c.workflow_id == workflow_id,
            nodes.c.state == _N.PENDING,
            nodes.c.waiting == 0,
            nodes.c.kind == NodeKind.TASK,
        )
        .order_by(nodes.c.position)
    ).all()
    if not rows:
        return []
    ids = [row.id for row in rows]
    parent = nodes.alias("parent")
    inputs = {
        child: (result,)
        for child, result in conn.execute(
            sa.select(edges.c.child_id, parent.c.result)
            .select_from(edges.join(parent, parent.c.id == edges.c.parent_id))
            .where(edges.c.child_id.in_(ids), edges.c.on_error.is_(False))
        )
    }
    _mark_queued(conn, workflow_id, ids, _N.PENDING, at)
    return [
        Dispatch(row.id, workflow_id, row.signature, inputs.get(row.id, ()), row.current_attempt, row.kind)
        for row in rows
    ]


def _reset_failed(conn: sa.Connection, workflow_id: str, at: datetime) -> None:
    """Failed task nodes (and unneeded-yet errbacks) become runnable again."""
    _set_node_state(conn, workflow_id, None, (_N.FAILED,), _N.PENDING, at, kind=NodeKind.TASK)


def _cancel_nodes(conn: sa.Connection, workflow_id: str, at: datetime) -> list[str]:
    """Cancel every node that has not finished; return the ids to revoke."""
    running = conn.execute(
        sa.select(nodes.c.id).where(
            nodes.c.workflow_id == workflow_id,
            nodes.c.state.in_((_N.RUNNING, _N.QUEUED, _N.RETRYING)),
        )
    ).scalars().all()
    _set_node_state(conn, workflow_id, None, _UNFINISHED, _N.CANCELLED, at)
    return list(running)


def _result_of(conn: sa.Connection, workflow_id: str) -> Any:
    query = (
        sa.select(nodes.c.result)
        .select_from(workflows.join(nodes, nodes.c.id == workflows.c.result_node_id))
        .where(workflows.c.id == workflow_id)
    )
    return conn.execute(query).scalar_one_or_none()


def _aware(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; every stored time is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _workflow_record(row: sa.Row[Any]) -> WorkflowRecord:
    return WorkflowRecord(
        id=row.id,
        name=row.name,
        state=row.state,
        result=row.result,
        failed_node_id=row.failed_node_id,
        exc_type=row.exc_type,
        exc_message=row.exc_message,
        metadata=row.metadata,
        created_at=_aware(row.created_at) or now(),
        updated_at=_aware(row.updated_at) or now(),
        finished_at=_aware(row.finished_at),
    )


def _attempt_record(row: sa.Row[Any]) -> Attempt:
    return Attempt(
        number=row.number,
        state=row.state,
        worker=row.worker,
        started_at=_aware(row.started_at),
        finished_at=_aware(row.finished_at),
        exc_type=row.exc_type,
        exc_message=row.exc_message,
        pid=row.pid,
        traceback=row.traceback,
        retry_eta=_aware(row.retry_eta),
    )
