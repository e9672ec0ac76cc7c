"""Celery's retry mechanisms keep a node's identity; attempts are recorded."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from celery import chain

from celeriac import WorkflowFailed, WorkflowState
from celeriac.storage.schema import attempts
from tests.waiting import wait_for


class Flaky:
    """Tasks that fail a given number of times, counted per key."""

    def __init__(self, app):
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()
        self.broken = {"step": True}

        def count(key: str) -> int:
            with self.lock:
                self.calls[key] = self.calls.get(key, 0) + 1
                return self.calls[key]

        @app.task(name="r.explicit", bind=True, shared=False, max_retries=5)
        def explicit(task, key: str, failures: int) -> int:
            if count(key) <= failures:
                raise task.retry(exc=KeyError(key), countdown=0)
            return self.calls[key]

        @app.task(
            name="r.auto",
            shared=False,
            autoretry_for=(ConnectionError,),
            retry_backoff=0.01,
            retry_jitter=True,
            max_retries=3,
        )
        def auto(key: str, failures: int) -> int:
            if count(key) <= failures:
                raise ConnectionError(f"down {key}")
            return self.calls[key]

        @app.task(
            name="r.default_delay",
            bind=True,
            shared=False,
            default_retry_delay=0.05,
            max_retries=1,
        )
        def default_delay(task, key: str) -> int:
            count(key)
            raise task.retry(exc=TimeoutError("slow"))

        @app.task(name="r.step", shared=False)
        def step(value: int, index: int) -> int:
            if index == 12 and self.broken["step"]:
                raise RuntimeError("step 12 is broken")
            return value + index

        self.explicit, self.auto, self.default_delay, self.step = (
            explicit,
            auto,
            default_delay,
            step,
        )


@pytest.fixture
def flaky(app):
    return Flaky(app)


def _recorded_nodes(workflow):
    """The nodes, once every retry's exception is recorded.

    With a zero countdown the next attempt may finish before Celery's
    task_retry signal for the previous one is handled: the attempt's state is
    known at once (the next claim sets it), its exception a moment later.
    """

    def recorded():
        nodes = workflow.nodes()
        retries = [a for n in nodes for a in n.attempts if a.state == "RETRY"]
        return nodes if all(a.exc_type for a in retries) else None

    return wait_for(recorded, what="retry records")


def _attempt_rows(engine, node_id):
    with engine.db.connect() as conn:
        return conn.execute(
            sa.select(attempts.c.number, attempts.c.state, attempts.c.exc_type)
            .where(attempts.c.node_id == node_id)
            .order_by(attempts.c.number)
        ).all()


def test_self_retry_with_countdown_zero_keeps_the_node_and_numbers_attempts(
    engine, flaky, worker
):
    workflow = engine.submit(flaky.explicit.s("a", 2))
    assert workflow.get(timeout=10) == 3
    (node,) = _recorded_nodes(workflow)
    assert node.state == "SUCCEEDED"
    assert [(a.number, a.state, a.exc_type) for a in node.attempts] == [
        (1, "RETRY", "KeyError"),
        (2, "RETRY", "KeyError"),
        (3, "SUCCEEDED", None),
    ]
    assert [tuple(row) for row in _attempt_rows(engine, node.id)] == [
        (1, "RETRY", "KeyError"),
        (2, "RETRY", "KeyError"),
        (3, "SUCCEEDED", None),
    ]


def test_autoretry_with_backoff_and_jitter_then_success(engine, flaky, worker):
    workflow = engine.submit(chain(flaky.auto.si("b", 2), flaky.explicit.si("c", 0)))
    assert workflow.get(timeout=10) == 1
    first, second = _recorded_nodes(workflow)
    assert [a.state for a in first.attempts] == ["RETRY", "RETRY", "SUCCEEDED"]
    assert {a.exc_type for a in first.attempts[:2]} == {"ConnectionError"}
    assert [a.state for a in second.attempts] == ["SUCCEEDED"]
    # the successor waited for the final outcome
    assert second.attempts[0].started_at >= first.attempts[-1].finished_at


def test_retries_spent_fail_the_workflow(engine, flaky, worker):
    workflow = engine.submit(flaky.auto.si("d", 10))
    with pytest.raises(WorkflowFailed) as raised:
        workflow.get(timeout=10)
    (node,) = workflow.nodes()
    assert raised.value.node_id == node.id
    assert raised.value.exc_type == "ConnectionError"
    assert [a.state for a in node.attempts] == ["RETRY"] * 3 + ["FAILED"]
    assert flaky.calls["d"] == 4


def test_default_retry_delay_and_max_retries(engine, flaky, worker):
    workflow = engine.submit(flaky.default_delay.si("e"))
    with pytest.raises(WorkflowFailed) as raised:
        workflow.get(timeout=10)
    assert raised.value.exc_type == "TimeoutError"
    (node,) = workflow.nodes()
    retry, failure = node.attempts
    assert (retry.state, failure.state) == ("RETRY", "FAILED")
    assert retry.retry_eta is not None
    # the second attempt waited for default_retry_delay after the first began
    assert (failure.started_at - retry.started_at).total_seconds() >= 0.05


def test_retry_of_a_failed_workflow_reruns_only_what_did_not_succeed(
    engine, flaky, worker
):
    canvas = chain(flaky.step.s(0, 1), *(flaky.step.s(i) for i in range(2, 21)))
    workflow = engine.submit(canvas)
    with pytest.raises(WorkflowFailed) as raised:
        workflow.get(timeout=20)
    nodes = workflow.nodes()
    assert raised.value.node_id == nodes[11].id
    assert raised.value.exc_type == "RuntimeError"
    assert workflow.state == WorkflowState.FAILED
    # the nodes after the failure can no longer run: SKIPPED until a retry
    assert [n.state for n in nodes[11:]] == ["FAILED"] + ["SKIPPED"] * 8

    flaky.broken["step"] = False
    workflow.retry()
    assert workflow.get(timeout=20) == sum(range(1, 21))
    nodes = workflow.nodes()
    assert all(len(n.attempts) == 1 for n in nodes[:11])
    assert [a.state for a in nodes[11].attempts] == ["FAILED", "SUCCEEDED"]
    assert all(len(n.attempts) == 1 for n in nodes[12:])
