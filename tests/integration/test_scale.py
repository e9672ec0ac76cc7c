"""Workflows above every bind-variable limit, on SQLite and PostgreSQL.

SQLite allows 32,766 variables in a statement and psycopg 65,535 parameters:
a workflow of 150,000 nodes is over both. One such workflow per test, with
several operations chained on it, each ending in the state a user expects.
The nodes never run (a worker would take minutes): the tests stop the worker
or publish to a broker that no worker reads.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import sqlalchemy as sa
from celery import Celery, chain, group

from celeriac import Engine, Workflow, WorkflowCancelled, WorkflowFailed
from celeriac.states import NodeState, WorkflowState
from celeriac.storage.recovery import REPUBLISHED
from celeriac.storage.schema import events
from tests.servers import free_port
from tests.tasks import make_app
from tests.waiting import wait_for

N = NodeState
W = WorkflowState
#: 15,000 chains of 10 tasks: the issue's shape.
CHAINS, LENGTH = 15_000, 10
TASKS = CHAINS * LENGTH


def task_counts(workflow: Workflow) -> dict[str, int]:
    """The workflow's TASK nodes by state."""
    counts = workflow._engine.store.count_nodes(workflow.id)
    return {state: count for (kind, state), count in counts.items() if kind == "TASK"}


def node_events(engine: Engine, workflow_id: str, **columns: str) -> int:
    """How many node events of the workflow have these column values."""
    query = sa.select(sa.func.count()).where(
        events.c.workflow_id == workflow_id,
        events.c.node_id.is_not(None),
        *(events.c[name] == value for name, value in columns.items()),
    )
    with engine.db.connect() as conn:
        return int(conn.execute(query).scalar_one())


def queued_messages(app: Celery) -> int:
    """Messages waiting in the app's default queue (in-memory broker)."""
    with app.connection_for_write() as connection:
        queue = str(app.conf.task_default_queue)
        declared = connection.default_channel.queue_declare(queue, passive=True)
        return int(declared.message_count)


def chains_behind(first: Any, identity: Any, chains: int, length: int) -> Any:
    """``first``, then a group of ``chains`` chains of ``length`` identity tasks."""
    return chain(
        first,
        group(chain(identity.s() for _ in range(length)) for _ in range(chains)),
    )


def test_waiting_on_a_workflow_reads_neither_its_canvas_nor_its_arguments(
    engine: Engine, tasks: Any
) -> None:
    workflow = engine.submit(group(tasks.identity.s(i) for i in range(500)))
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    sa.event.listen(engine.db, "before_cursor_execute", record)
    try:
        with pytest.raises(TimeoutError):
            workflow.get(timeout=0.3)  # no worker: it never finishes
        assert engine.workflow(workflow.id).name is None
        assert engine.store.list_workflows()
    finally:
        sa.event.remove(engine.db, "before_cursor_execute", record)
    assert statements
    assert not [s for s in statements if "canvas" in s or "kwargs" in s]


def test_iter_nodes_reads_the_nodes_a_page_at_a_time(
    engine: Engine, tasks: Any
) -> None:
    workflow = engine.submit(
        group(chain(tasks.identity.s(i), tasks.identity.s()) for i in range(1_250))
    )
    sizes, after = [], -1
    while after is not None:
        page, after = engine.store.node_page(workflow.id, after)
        sizes.append(len(page))
    assert sizes == [1_000, 1_000, 500]
    streamed = [(n.id, n.state, n.parents) for n in workflow.iter_nodes()]
    assert streamed == [(n.id, n.state, n.parents) for n in workflow.nodes()]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_150000_node_workflow_fails_retries_pauses_resumes_and_cancels(
    app: Celery, database_url: str
) -> None:
    released = threading.Event()
    runs: list[int] = []

    @app.task(name="s.first", shared=False)
    def first() -> int:
        """Fails on its first run; then waits until the test releases it."""
        runs.append(1)
        if len(runs) == 1:
            raise ValueError("first run fails")
        released.wait(60)
        return 1

    engine = Engine(app, database_url, recovery_interval=3600)
    engine.migrate()
    try:
        canvas = chains_behind(first.s(), app.test_tasks.identity, CHAINS, LENGTH)
        with engine.embedded_worker(concurrency=2):
            workflow = engine.submit(canvas)
            assert workflow.progress().total == TASKS + 1

            # a failure: every other node is skipped, in one statement or few
            with pytest.raises(WorkflowFailed):
                workflow.get(timeout=60)
            assert task_counts(workflow) == {N.FAILED: 1, N.SKIPPED: TASKS}

            # retry from the failure: all of them may run again
            workflow.retry()
            wait_for(
                lambda: task_counts(workflow).get(N.RUNNING) == 1,
                timeout=30,
                what="the first node running again",
            )
            assert task_counts(workflow) == {N.RUNNING: 1, N.PENDING: TASKS}

            # pause while it runs: the 15,000 chains it releases are held back
            workflow.pause()
            released.set()
            wait_for(lambda: workflow.state == W.PAUSED, timeout=60, what="PAUSED")
        assert task_counts(workflow) == {N.SUCCEEDED: 1, N.PENDING: TASKS}

        # resume queues the ready ones and publishes each once (no worker now)
        delivery = workflow.resume()
        assert workflow.state == W.IN_PROGRESS
        assert delivery.sent == CHAINS
        assert queued_messages(app) == CHAINS
        assert task_counts(workflow) == {
            N.SUCCEEDED: 1,
            N.QUEUED: CHAINS,
            N.PENDING: TASKS - CHAINS,
        }

        workflow.cancel(terminate=True)
        assert workflow.state == W.CANCELLED
        assert task_counts(workflow) == {N.SUCCEEDED: 1, N.CANCELLED: TASKS}
        # one event per node: the tasks, the group's join and END
        assert node_events(engine, workflow.id, to_state=N.CANCELLED) == TASKS + 2
        with pytest.raises(WorkflowCancelled):
            workflow.get(timeout=5)
    finally:
        engine.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_recovery_publishes_70000_lost_nodes_of_a_150000_node_workflow_once(
    database_url: str,
) -> None:
    # a producer whose broker is down: every first message is lost
    unreachable = make_app(broker=f"redis://127.0.0.1:{free_port()}/0")
    producer = Engine(unreachable, database_url, recovery_interval=3600)
    producer.migrate()
    app = make_app()
    engine = Engine(app, database_url, recovery_interval=3600)
    try:
        identity = unreachable.test_tasks.identity
        lost = 70_000
        canvas = group(
            [chain(identity.s(i), identity.s()) for i in range(lost)]
            + [chain(identity.s(0) for _ in range(TASKS - 2 * lost))]
        )
        workflow = engine.workflow(producer.submit(canvas).id)
        # one event per root queued, written in chunks as the submit went
        queued = node_events(engine, workflow.id, from_state=N.PENDING)
        assert queued == lost + 1
        assert task_counts(workflow) == {
            N.QUEUED: lost + 1,
            N.PENDING: TASKS - lost - 1,
        }

        # the broker lost them all: one pass publishes each once more
        delivery = engine.recover(broker_emptied=True)
        assert delivery.sent == lost + 1
        assert queued_messages(app) == lost + 1
        with engine.db.connect() as conn:
            republished = conn.execute(
                sa.select(events.c.node_id, sa.func.count())
                .where(events.c.workflow_id == workflow.id)
                .where(events.c.detail == REPUBLISHED)
                .group_by(events.c.node_id)
            ).all()
        assert len(republished) == lost + 1
        assert {count for _, count in republished} == {1}

        # a pass with the default delay finds nothing overdue
        assert engine.recover().sent == 0
        workflow.cancel()
        assert task_counts(workflow) == {N.CANCELLED: TASKS}
    finally:
        engine.close()
        producer.close()
