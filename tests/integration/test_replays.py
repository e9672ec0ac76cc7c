"""A call whose COMMIT reply was lost returns what its first try did.

PostgreSQL commits the transaction, then the connection breaks before the
client hears so (``tests.faults.lose_commit_reply``): the transient-error
retry replays the whole transaction. A submit, pause, resume, cancel and
retry must each return normally, with its effect made once.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa
from celery import chain, group

from celeriac import Engine, WorkflowState
from celeriac.storage.schema import events
from tests import faults
from tests.tasks import make_app
from tests.waiting import wait_for
from tests.workers import Workers

pytestmark = pytest.mark.postgres

W = WorkflowState
TIMEOUT = 20.0


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    engine = Engine(make_app(), postgres_url)
    engine.migrate()
    yield engine
    engine.close()


def lose_next_reply(engine: Engine, method: str) -> list[str]:
    """The next COMMIT inside Store.``method`` loses its reply; the list says when."""
    lost: list[str] = []

    def first(name: str) -> bool:
        if lost:
            return False
        lost.append(name)
        return True

    faults.lose_commit_reply(engine._db, method, first)
    return lost


def workflow_events(engine: Engine, workflow_id: str) -> list[tuple[Any, ...]]:
    """The workflow's own state changes: (from, to, detail)."""
    with engine._db.connect() as conn:
        rows = conn.execute(
            sa.select(events.c.from_state, events.c.to_state, events.c.detail)
            .where(events.c.workflow_id == workflow_id, events.c.node_id.is_(None))
            .order_by(events.c.id)
        ).all()
    return [tuple(row) for row in rows]


@pytest.mark.parametrize("key", [None, "order-1234"], ids=["plain", "keyed"])
def test_a_submit_whose_commit_reply_was_lost_returns_the_stored_workflow(engine, key):
    tasks = engine.app.test_tasks
    lost = lose_next_reply(engine, "insert_workflow")
    with engine.embedded_worker():
        workflow = engine.submit(
            chain(tasks.add.s(1, 2), tasks.add.s(3)), name="replayed", key=key
        )
        assert lost == ["insert_workflow"]
        assert workflow.get(timeout=TIMEOUT) == 6
    (stored,) = engine.list_workflows(name="replayed")
    assert (stored.id, stored.key) == (workflow.id, key)
    assert [len(node.attempts) for node in workflow.nodes()] == [1, 1]
    assert workflow_events(engine, workflow.id) == [
        (None, W.IN_PROGRESS, None),
        (W.IN_PROGRESS, W.COMPLETED, "complete"),
    ]


def test_a_pause_and_a_resume_whose_commit_replies_were_lost_take_effect_once(
    engine,
):
    tasks = engine.app.test_tasks
    with engine.embedded_worker():
        workflow = engine.submit(chain(tasks.sleep.s(1, 3), tasks.add.s(4)))
        wait_for(lambda: workflow.progress().running, timeout=TIMEOUT, what="start")
        lost = lose_next_reply(engine, "transition_workflow")
        workflow.pause()
        assert lost == ["transition_workflow"]
        wait_for(lambda: workflow.state == W.PAUSED, timeout=TIMEOUT, what="PAUSED")

        lost.clear()
        workflow.resume()
        assert lost == ["transition_workflow"]
        assert workflow.get(timeout=TIMEOUT) == 7
    assert [len(node.attempts) for node in workflow.nodes()] == [1, 1]
    assert workflow_events(engine, workflow.id) == [
        (None, W.IN_PROGRESS, None),
        (W.IN_PROGRESS, W.REQUESTING_PAUSE, "pause"),
        (W.REQUESTING_PAUSE, W.PAUSED, "settle"),
        (W.PAUSED, W.IN_PROGRESS, "resume"),
        (W.IN_PROGRESS, W.COMPLETED, "complete"),
    ]


def test_a_retry_whose_commit_reply_was_lost_runs_the_failed_node_again(
    postgres_url,
):
    app = make_app()
    runs: list[int] = []

    @app.task(name="t.fails_once", shared=False)
    def fails_once(value: int) -> int:
        runs.append(value)
        if len(runs) == 1:
            raise ValueError("first run fails")
        return value * 10

    engine = Engine(app, postgres_url)
    engine.migrate()
    try:
        with engine.embedded_worker():
            workflow = engine.submit(chain(app.test_tasks.add.s(1, 2), fails_once.s()))
            wait_for(lambda: workflow.state == W.FAILED, timeout=TIMEOUT, what="FAILED")
            lost = lose_next_reply(engine, "transition_workflow")
            workflow.retry()
            assert lost == ["transition_workflow"]
            assert workflow.get(timeout=TIMEOUT) == 30
        assert runs == [3, 3]
        assert [len(node.attempts) for node in workflow.nodes()] == [1, 2]
        retries = [e for e in workflow_events(engine, workflow.id) if e[2] == "retry"]
        assert retries == [(W.FAILED, W.IN_PROGRESS, "retry")]
    finally:
        engine.close()


@pytest.mark.redis
@pytest.mark.slow
def test_a_cancel_whose_commit_reply_was_lost_still_terminates_the_running_tasks(
    proc: ModuleType, workers: Workers
) -> None:
    workers.start(1)
    workflow = proc.engine.submit(group(proc.stamp.s(f"s{i}", 60) for i in range(2)))
    wait_for(lambda: workflow.progress().running == 2, timeout=20, what="both running")
    proc.lose_commit_reply(proc.engine._db, "transition_workflow")

    proc.engine.cancel(workflow.id, terminate=True)

    assert proc.reply_lost() == "transition_workflow"
    # bodies that sleep a minute end within seconds: their processes were killed
    wait_for(
        lambda: workflow.progress().running == 0, timeout=15, what="tasks terminated"
    )
    assert workflow.state == W.CANCELLED
    for node in workflow.nodes():
        assert node.state == "CANCELLED"
        assert [a.state for a in node.attempts] == ["REVOKED"]
    cancels = [e for e in workflow_events(proc.engine, workflow.id) if e[2] == "cancel"]
    assert cancels == [(W.IN_PROGRESS, W.CANCELLED, "cancel")]
