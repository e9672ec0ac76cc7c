"""What a transaction finds when its first try, or an earlier call, committed.

The transient-error retry replays a whole transaction when its COMMIT reply
was lost, although the server may have committed it. A submit and a state
change look for what their first try stored and answer with it, and so
does an outcome; a submit with a key looks for the workflow that key
already named.

Every function takes the open connection of the caller's transaction.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

import sqlalchemy as sa
from kombu.utils.json import dumps

from celeriac.errors import SubmitKeyReused
from celeriac.records import Dispatch, NewWorkflow, Outcome, TransitionResult
from celeriac.states import NodeKind, NodeState, WorkflowState
from celeriac.storage.attempt_ends import finished_by
from celeriac.storage.dispatches import DISPATCH_COLUMNS, load_dispatches
from celeriac.storage.releases import replay_release
from celeriac.storage.schema import nodes, transitions, workflows

_N = NodeState


def fingerprint(new: NewWorkflow) -> str:
    """SHA-256 of the canvas, args and kwargs, as Celery's JSON serializer writes them.

    Dict keys are sorted where they can be, so that two equal canvases built
    in another order match.
    """
    value = [new.canvas, new.args, new.kwargs]
    try:
        text = dumps(value, sort_keys=True)
    except TypeError:  # keys of mixed types cannot be sorted
        text = dumps(value)
    return hashlib.sha256(text.encode()).hexdigest()


def stored_submission(
    conn: sa.Connection, new: NewWorkflow, digest: str | None
) -> Outcome | None:
    """The outcome of a submission already stored, or None to store ``new``.

    ``new.id`` is made afresh for each call of ``submit``: finding it stored
    means this call's first try committed, and the outcome offers its first
    nodes again (``recorded``). Finding ``new.key`` on another workflow with
    the same fingerprint gives that workflow's state, not ``recorded``.

    Raises:
        SubmitKeyReused: the key names a workflow of another canvas.
    """
    match = workflows.c.id == new.id
    if new.key is not None:
        match = sa.or_(match, workflows.c.submit_key == new.key)
    row = conn.execute(
        sa.select(workflows.c.id, workflows.c.state, workflows.c.fingerprint)
        .where(match)
        .order_by((workflows.c.id == new.id).desc())
    ).first()
    if row is None:
        return None
    if row.id == new.id:
        dispatch, finished = unstarted(conn, new.id)
        return Outcome(True, dispatch, row.state, finished)
    if row.fingerprint != digest:
        raise SubmitKeyReused(str(new.key), row.id)
    return Outcome(False, [], row.state)


def unstarted(conn: sa.Connection, workflow_id: str) -> tuple[list[Dispatch], bool]:
    """The task nodes QUEUED and not started since, and whether END is done.

    What a replayed submit, resume or retry publishes again: a node
    published twice runs once (the second delivery is dropped when it is
    claimed).
    """
    rows = conn.execute(
        sa.select(*DISPATCH_COLUMNS, nodes.c.attempt_base.label("base"))
        .where(
            nodes.c.workflow_id == workflow_id,
            nodes.c.state == _N.QUEUED,
            nodes.c.kind == NodeKind.TASK,
            nodes.c.current_attempt == nodes.c.attempt_base,
        )
        .order_by(nodes.c.position)
    ).all()
    finished = conn.execute(
        sa.select(nodes.c.id).where(
            nodes.c.workflow_id == workflow_id,
            nodes.c.kind == NodeKind.END,
            nodes.c.state == _N.SUCCEEDED,
        )
    ).first()
    return (load_dispatches(conn, rows) if rows else []), finished is not None


def recorded_transition(
    conn: sa.Connection, token: str, workflow_id: str
) -> TransitionResult | None:
    """What the state change of ``token`` did, if its first try committed.

    The running tasks a cancel revoked are the ones it stored; a resume or a
    retry offers again the nodes it queued that have not started.
    """
    row = conn.execute(
        sa.select(transitions).where(
            transitions.c.workflow_id == workflow_id, transitions.c.token == token
        )
    ).first()
    if row is None:
        return None
    dispatch: list[Dispatch] = []
    if row.trigger in ("resume", "retry"):
        dispatch, _ = unstarted(conn, workflow_id)
    revoke: list[str] = json.loads(row.revoke)
    return TransitionResult(row.from_state, row.to_state, dispatch, revoke)


def record_transition(
    conn: sa.Connection,
    token: str,
    workflow_id: str,
    trigger: str,
    change: tuple[str, str, list[str]],
    at: datetime,
) -> None:
    """Keep what the state change of ``token`` did: (from, to, tasks revoked)."""
    source, dest, revoke = change
    conn.execute(
        transitions.insert(),
        {
            "token": token,
            "workflow_id": workflow_id,
            "trigger": trigger,
            "from_state": source,
            "to_state": dest,
            "revoke": json.dumps(revoke),
            "at": at,
        },
    )


def no_longer_running(
    conn: sa.Connection,
    workflow_id: str,
    node_id: str,
    number: int,
    state: str,
    dest: str,
) -> Outcome:
    """The outcome of attempt ``number``, found no longer running.

    A replay of this very outcome (its first commit went through unseen)
    offers again what it released; any other is not recorded.
    """
    if not finished_by(conn, workflow_id, node_id, number, dest):
        return Outcome(False, [], state)
    failed = dest == NodeState.FAILED
    dispatch, finished = replay_release(conn, workflow_id, node_id, failed)
    pausing = state == WorkflowState.REQUESTING_PAUSE
    return Outcome(True, dispatch, state, finished and not failed, settle=pausing)
