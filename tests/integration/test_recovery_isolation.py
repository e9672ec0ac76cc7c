"""A workflow that cannot be recovered does not hold the others back."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from celeriac import Engine, Workflow, WorkflowState
from celeriac.records import Claim, Lease


def finished_but_not_settled(engine: Engine, workflow: Workflow) -> str:
    """Run the workflow's one node through the store, as a worker that died
    right after recording it would: its END is done, the workflow still
    IN_PROGRESS. Returns the node's id."""
    (node,) = workflow.nodes()
    engine._store.heartbeat("w-1", "w", 1)
    lease = Lease("w-1", "w", 1, datetime.now(UTC))
    claim, number = engine._store.claim_node(
        workflow.id, node.id, "0.0", lease, uuid.uuid4().hex
    )
    assert claim is Claim.RUN
    assert engine._store.record_success(workflow.id, node.id, number, 3).finished
    return node.id


def test_a_workflow_whose_recovery_fails_is_logged_and_skipped(
    engine: Engine, tasks: object, caplog: pytest.LogCaptureFixture
) -> None:
    add = tasks.add  # type: ignore[attr-defined]
    broken, sound = engine.submit(add.s(1, 2)), engine.submit(add.s(1, 2))
    broken_node = finished_but_not_settled(engine, broken)
    finished_but_not_settled(engine, sound)
    # the broken one's stored result is no longer Celery's JSON text: its
    # completion cannot read it
    with engine._db.begin() as conn:
        conn.execute(
            sa.text("UPDATE celeriac_nodes SET result = 'not json {' WHERE id = :id"),
            {"id": broken_node},
        )

    with caplog.at_level(logging.ERROR, "celeriac.engine"):
        engine.recover()

    assert sound.state == WorkflowState.COMPLETED
    assert sound.get(timeout=5) == 3
    assert broken.state == WorkflowState.IN_PROGRESS
    (skipped,) = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert skipped.getMessage() == (
        f"recovery: complete of workflow {broken.id} failed; skipped"
    )
