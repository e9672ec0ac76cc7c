"""Lost messages, with real ``celery worker`` processes, Redis and PostgreSQL.

Several workers' recovery passes share the overdue nodes out (each batch is
claimed ``FOR UPDATE SKIP LOCKED``), so a node whose message was lost is
published once more, not once per worker. A Redis restarted empty is
noticed by its missing marker, and the work it lost goes on within seconds
with the default settings, not after ``recovery_delay``.
"""

from __future__ import annotations

import time
from collections import Counter
from types import ModuleType

import pytest
import redis
import sqlalchemy as sa
from celery import Celery, group

from celeriac import Engine, WorkflowState
from celeriac.engine.broker import MARKER_KEY, broker_emptied
from celeriac.storage.recovery import REPUBLISHED
from celeriac.storage.schema import events
from tests.integration.test_chaos import (  # noqa: F401 (a fixture)
    _fresh_broker_connections,
    chain_of_groups,
    engine_options,
    one_success_each,
)
from tests.servers import Server, free_port
from tests.tasks import make_app
from tests.waiting import wait_for
from tests.workers import Workers

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

W = WorkflowState
#: What the user waits at most, after Redis answers again, for the work it
#: lost to go on (the issue's bound; the default recovery_delay is 60 s).
RESUMED_WITHIN = 10.0


def republished(proc: ModuleType, workflow_id: str) -> Counter[str]:
    """How many times recovery published each node of the workflow again."""
    with proc.engine._db.connect() as conn:
        rows = conn.execute(
            sa.select(events.c.node_id).where(
                events.c.workflow_id == workflow_id, events.c.detail == REPUBLISHED
            )
        ).scalars()
        return Counter(rows)


def messages(client: redis.Redis[bytes], queue: str) -> int:
    """Messages waiting in a queue of the Redis broker (any priority)."""
    return sum(int(client.llen(key)) for key in client.scan_iter(f"{queue}*"))


def test_the_marker_tells_an_emptied_redis_from_one_that_kept_its_data(
    redis_url: str,
) -> None:
    app = make_app(broker=redis_url)
    client = redis.Redis.from_url(redis_url)
    try:
        assert broker_emptied(app)  # a new broker: nothing marked it yet
        assert not broker_emptied(app)  # it kept its data
        assert not broker_emptied(app)
        client.flushdb()  # what a restart without persistence does
        assert broker_emptied(app)
        assert client.exists(MARKER_KEY)
    finally:
        client.close()


def test_a_broker_that_keeps_its_messages_has_no_marker_to_lose() -> None:
    assert not broker_emptied(make_app())  # kombu's in-memory transport


def unreachable_producer(proc: ModuleType) -> Engine:
    """An engine on the test's database whose broker never answers.

    What it submits is stored and QUEUED, but every message is lost. Its
    app knows ``p.add`` by name only: the workers run the real one.
    """
    app = Celery(
        "producer", broker=f"redis://127.0.0.1:{free_port()}/0", set_as_current=False
    )

    @app.task(name="p.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    return Engine(app, proc.engine.database_url)


@pytest.mark.slow
@engine_options(engine={"recovery_delay": 10, "recovery_interval": 0.5})
def test_four_workers_publish_each_of_10000_lost_nodes_once_more(
    proc: ModuleType, workers: Workers
) -> None:
    workers.start(4)
    client = proc.client()
    # their first check marked the broker (it had nothing to recover then)
    wait_for(lambda: client.exists(MARKER_KEY), timeout=30, what="the marker")
    # a queue no worker reads: the nodes stay QUEUED, and overdue
    parked = f"{proc.app.conf.task_default_queue}-parked"
    nodes = 10_000
    producer = unreachable_producer(proc)
    try:
        workflow = producer.submit(
            group(proc.add.s(i, i).set(queue=parked) for i in range(nodes))
        )
    finally:
        producer.close()
    assert messages(client, parked) == 0

    # four workers' passes, every half second, share the overdue nodes out
    wait_for(
        lambda: messages(client, parked) >= nodes,
        timeout=90,
        interval=0.2,
        what="every lost node published again",
    )
    proc.engine.pause(workflow.id)  # no pass publishes a node of a pausing workflow
    counts = republished(proc, workflow.id)
    assert len(counts) == nodes
    assert set(counts.values()) == {1}
    assert messages(client, parked) == nodes
    proc.engine.cancel(workflow.id)
    shares = {
        name.partition("@")[0]: workers.log_path(name)
        .read_text()
        .count("recovery: publishing")
        for name in workers.processes
    }
    print(f"\nbatches published again by each worker: {shares}")


@pytest.mark.slow
def test_work_goes_on_within_seconds_of_redis_answering_again_empty(
    proc: ModuleType, workers: Workers, redis_server: Server
) -> None:
    """The default settings: ``recovery_delay`` 60 s, ``recovery_interval`` 30 s."""
    workers.start(2)
    # p.fold does not touch Redis: a body must not fail while Redis is away
    canvas, expected = chain_of_groups(proc.fold, levels=8, width=10, seconds=0.2)
    workflow = proc.engine.submit(canvas)

    def queued() -> set[str]:
        return {node.id for node in workflow.nodes() if node.state == "QUEUED"}

    # more nodes QUEUED than four pool processes hold: their messages wait
    # in Redis, and are lost with it
    wait_for(
        lambda: workflow.progress().done >= 20 and len(queued()) >= 5,
        timeout=30,
        interval=0.02,
        what="20 nodes done and 5 queued",
    )
    lost = queued()
    redis_server.stop(immediate=True)
    redis_server.start()
    answered = time.monotonic()

    def moved_on() -> bool:
        return not lost & queued()

    wait_for(
        moved_on,
        timeout=RESUMED_WITHIN - (time.monotonic() - answered),
        interval=0.1,
        what=f"the nodes queued when Redis died started ({len(lost)})\n"
        + workers.tails(),
    )
    assert workflow.get(timeout=90) == expected
    assert one_success_each(workflow) == []
    assert republished(proc, workflow.id), "no node needed the recovery pass"
