"""Workflows above every bind-variable limit, on SQLite and PostgreSQL.

SQLite allows 32,766 variables in a statement and psycopg 65,535 parameters:
a workflow of 67,000 nodes, 66,001 of them ready at once, is over both. One
such workflow per database, with every operation chained on it (submit, a
failure, retry, pause, resume, recovery of 66,001 lost messages, cancel),
each ending in the state a user expects. Its nodes never run (a worker
would take minutes): the test stops the worker, or publishes to a broker
that no worker reads.
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
from tests.tasks import make_app
from tests.waiting import wait_for

N = NodeState
W = WorkflowState
#: Tasks behind the first one: over both limits.
TASKS = 67_000
#: Group members among them, whose messages a broker loses with the chain's head.
LOST = 66_000


def task_counts(workflow: Workflow) -> dict[str, int]:
    """The workflow's TASK nodes by state."""
    counts = workflow.node_counts()
    return {state: count for (kind, state), count in counts.items() if kind == "TASK"}


def node_events(engine: Engine, workflow_id: str, **columns: str) -> int:
    """How many node events of the workflow have these column values."""
    query = sa.select(sa.func.count()).where(
        events.c.workflow_id == workflow_id,
        events.c.node_id.is_not(None),
        *(events.c[name] == value for name, value in columns.items()),
    )
    with engine._db.connect() as conn:
        return int(conn.execute(query).scalar_one())


def queued_messages(app: Celery) -> int:
    """Messages waiting in the app's default queue (in-memory broker)."""
    with app.connection_for_write() as connection:
        queue = str(app.conf.task_default_queue)
        declared = connection.default_channel.queue_declare(queue, passive=True)
        return int(declared.message_count)


def test_waiting_on_a_workflow_reads_neither_its_canvas_nor_its_arguments(
    engine: Engine, tasks: Any
) -> None:
    workflow = engine.submit(group(tasks.identity.s(i) for i in range(500)))
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    sa.event.listen(engine._db, "before_cursor_execute", record)
    try:
        with pytest.raises(TimeoutError):
            workflow.get(timeout=0.3)  # no worker: it never finishes
        assert engine.workflow(workflow.id).name is None
        assert engine.list_workflows()
    finally:
        sa.event.remove(engine._db, "before_cursor_execute", record)
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
        page, after = workflow.node_page(after)
        sizes.append(len(page))
    assert sizes == [1_000, 1_000, 500]
    streamed = [(n.id, n.state, n.parents) for n in workflow.iter_nodes()]
    assert streamed == [(n.id, n.state, n.parents) for n in workflow.nodes()]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_67000_node_workflow_fails_retries_pauses_resumes_recovers_and_cancels(
    app: Celery, database_url: str
) -> None:
    """Every operation of the issue, in turn, on one workflow per database.

    Behind a first task, a group of 66,000 tasks and one chain of 1,000:
    resuming it queues 66,001 nodes at once. A producer whose broker
    cannot be used at all (an unknown transport: each publish fails at once,
    where an unreachable broker is retried for seconds per page) resumes it,
    so that their messages are lost, for one recovery pass to publish.
    """
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
    identity = app.test_tasks.identity
    try:
        canvas = chain(
            first.s(),
            group(
                [identity.s(i) for i in range(LOST)]
                + [chain(identity.s(0) for _ in range(TASKS - LOST))]
            ),
        )
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

            # pause while it runs: the 66,001 nodes it releases are held back
            workflow.pause()
            released.set()
            wait_for(lambda: workflow.state == W.PAUSED, timeout=60, what="PAUSED")
        assert task_counts(workflow) == {N.SUCCEEDED: 1, N.PENDING: TASKS}

        # resumed by a producer whose broker cannot be used: the 66,001 ready
        # nodes are QUEUED, their messages never sent
        heads = LOST + 1
        producer = Engine(make_app(broker="unusable://"), database_url)
        try:
            assert producer.resume(workflow.id).sent == 0
        finally:
            producer.close()
        assert workflow.state == W.IN_PROGRESS
        assert task_counts(workflow) == {
            N.SUCCEEDED: 1,
            N.QUEUED: heads,
            N.PENDING: TASKS - heads,
        }
        assert queued_messages(app) == 0

        # the broker lost them all: one pass publishes each once more
        delivery = engine.recover(broker_emptied=True)
        assert delivery.sent == heads
        assert queued_messages(app) == heads
        with engine._db.connect() as conn:
            republished = conn.execute(
                sa.select(events.c.node_id, sa.func.count())
                .where(events.c.workflow_id == workflow.id)
                .where(events.c.detail == REPUBLISHED)
                .group_by(events.c.node_id)
            ).all()
        assert len(republished) == heads
        assert {count for _, count in republished} == {1}
        # a pass with the default delay finds nothing overdue
        assert engine.recover().sent == 0

        workflow.cancel(terminate=True)
        assert workflow.state == W.CANCELLED
        assert task_counts(workflow) == {N.SUCCEEDED: 1, N.CANCELLED: TASKS}
        # one event per node: the tasks, the group's join and END
        assert node_events(engine, workflow.id, to_state=N.CANCELLED) == TASKS + 2
        with pytest.raises(WorkflowCancelled):
            workflow.get(timeout=5)
    finally:
        engine.close()
