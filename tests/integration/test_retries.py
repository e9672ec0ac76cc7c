"""Celery's retry mechanisms keep a node's identity; attempts are recorded."""

from __future__ import annotations

import itertools
import os
import threading
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from celery import chain
from celery.utils.time import get_exponential_backoff_interval

from celeriac import WorkflowFailed, WorkflowState
from celeriac.storage.schema import attempts
from tests.tasks import raise_at_the_bottom
from tests.waiting import wait_for

if TYPE_CHECKING:
    from celery import Celery

    from celeriac import Engine, Node, Workflow

#: How far apart two clock readings of one retry may be: its eta is computed
#: when Celery's task_retry signal arrives, and with a zero countdown the next
#: attempt may be claimed, and the previous one ended, just before that.
CLOCK_SLACK = 0.25
#: rounds of quick retries a race test runs on PostgreSQL (see its reason)
ROUNDS = 100
#: The hooks keep the last 4000 characters of a failed attempt's traceback.
TRACEBACK_KEPT = 4000

#: (lowest, highest) countdown Celery may choose for the retry of the attempt
#: that ran with ``request.retries == retries``
Countdowns = Callable[[int], tuple[float, float]]


class Flaky:
    """Tasks that fail a given number of times, counted per key."""

    #: what ``r.explicit`` passes to ``self.retry(countdown=...)``
    COUNTDOWN = 0

    def __init__(self, app: Celery) -> None:
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()
        self.broken = {"step": True}

        def count(key: str) -> int:
            with self.lock:
                self.calls[key] = self.calls.get(key, 0) + 1
                return self.calls[key]

        @app.task(name="r.explicit", bind=True, shared=False, max_retries=5)
        def explicit(task: Any, key: str, failures: int) -> int:
            if count(key) <= failures:
                raise task.retry(exc=KeyError(key), countdown=Flaky.COUNTDOWN)
            return self.calls[key]

        @app.task(
            name="r.auto",
            shared=False,
            autoretry_for=(ConnectionError,),
            retry_backoff=0.01,
            retry_backoff_max=60,
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
        def default_delay(task: Any, key: str) -> int:
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

    def backoff(self, retries: int) -> tuple[float, float]:
        """``r.auto``'s countdowns, as Celery's autoretry computes them."""
        highest = get_exponential_backoff_interval(
            factor=int(max(1.0, self.auto.retry_backoff)),
            retries=retries,
            maximum=self.auto.retry_backoff_max,
            full_jitter=False,
        )
        return 0.0, float(highest)


@pytest.fixture
def flaky(app: Celery) -> Flaky:
    return Flaky(app)


@pytest.fixture
def whereabouts(engine: Engine, tasks: SimpleNamespace, worker: Any) -> tuple[str, int]:
    """The host name and pid Celery gives tasks in the embedded worker."""
    host, pid = engine.submit(tasks.whereabouts.s()).get(timeout=10)
    return host, pid


def _recorded_nodes(workflow: Workflow) -> list[Node]:
    """The nodes, once every retry's exception is recorded.

    With a zero countdown the next attempt may finish before Celery's
    task_retry signal for the previous one is handled: the attempt's state is
    known at once (the next claim sets it), its exception a moment later.
    """

    def recorded() -> list[Node]:
        nodes = workflow.nodes()
        retries = [a for n in nodes for a in n.attempts if a.state == "RETRY"]
        return nodes if all(a.exc_type for a in retries) else []

    return wait_for(recorded, what="retry records")


def _attempt_rows(engine: Engine, node_id: str) -> list[Any]:
    """The node's rows of celeriac_attempts, by number."""
    with engine._db.connect() as conn:
        return list(
            conn.execute(
                sa.select(attempts)
                .where(attempts.c.node_id == node_id)
                .order_by(attempts.c.number)
            ).all()
        )


def _outcomes(recorded: Sequence[Any]) -> list[tuple[Any, ...]]:
    """(number, state, exc_type, exc_message) of attempts or attempt rows."""
    return [(a.number, a.state, a.exc_type, a.exc_message) for a in recorded]


def _assert_attempts(
    engine: Engine, node: Node, expected: list[tuple[Any, ...]]
) -> list[Any]:
    """``node``'s attempts are ``expected`` in nodes() and in SQL; the rows."""
    rows = _attempt_rows(engine, node.id)
    assert _outcomes(node.attempts) == expected
    assert _outcomes(rows) == expected
    return rows


def _assert_retry_etas(rows: Sequence[Any], countdowns: Countdowns) -> None:
    """Each retry's eta is its countdown after Celery raised Retry, and was kept.

    Retry was raised after the attempt started and before its end was written.
    """
    slack = timedelta(seconds=CLOCK_SLACK)
    for retries, (row, after) in enumerate(itertools.pairwise(rows)):
        assert row.state == "RETRY"
        lowest, highest = (timedelta(seconds=s) for s in countdowns(retries))
        assert row.started_at + lowest <= row.retry_eta
        assert row.retry_eta <= row.finished_at + highest + slack
        assert after.started_at >= row.retry_eta - slack
    assert rows[-1].retry_eta is None


def _assert_ran_here(rows: Sequence[Any], whereabouts: tuple[str, int]) -> None:
    """Every attempt names the embedded worker's host, and this process."""
    assert whereabouts[1] == os.getpid()
    assert {(row.worker, row.pid) for row in rows} == {whereabouts}


def _raised(function: Callable[..., Any], *args: Any) -> tuple[Exception, str]:
    """Run a task's body here: its exception and its whole traceback."""
    try:
        function(*args)
    except Exception as exc:
        return exc, "".join(traceback.format_exception(exc))
    raise AssertionError(f"{function} did not raise")


def test_self_retry_with_countdown_zero_keeps_the_node_and_numbers_attempts(
    engine: Engine, flaky: Flaky, whereabouts: tuple[str, int]
) -> None:
    workflow = engine.submit(flaky.explicit.s("a", 2))
    assert workflow.get(timeout=10) == 3
    (node,) = _recorded_nodes(workflow)
    assert node.state == "SUCCEEDED"
    message = str(KeyError("a"))
    rows = _assert_attempts(
        engine,
        node,
        [
            (1, "RETRY", "KeyError", message),
            (2, "RETRY", "KeyError", message),
            (3, "SUCCEEDED", None, None),
        ],
    )
    _assert_retry_etas(rows, lambda _: (Flaky.COUNTDOWN, Flaky.COUNTDOWN))
    _assert_ran_here(rows, whereabouts)


def test_each_attempt_of_quick_retries_ends_before_the_next_starts(
    engine: Engine, flaky: Flaky, worker: Any
) -> None:
    # Two workflows at a time meet the race in about one round in ten on
    # PostgreSQL; SQLite serializes its writers, so a few rounds show it there.
    rounds = ROUNDS if engine._db.dialect.name == "postgresql" else 5
    slack = timedelta(seconds=CLOCK_SLACK)
    failures = flaky.explicit.max_retries - 1
    for round_ in range(rounds):
        workflows = [
            engine.submit(flaky.explicit.s(f"quick-{round_}-{n}", failures))
            for n in range(2)
        ]
        # both finished (and every retry recorded) before anything is asserted:
        # a worker thread formatting a retry's traceback while a failed
        # assertion's is formatted here trips Python 3.11's ast.parse
        assert [w.get(timeout=10) for w in workflows] == [failures + 1] * 2
        recorded = [_recorded_nodes(workflow) for workflow in workflows]
        for (node,) in recorded:
            rows = _attempt_rows(engine, node.id)
            assert len(rows) == failures + 1
            for before, after in itertools.pairwise(rows):
                assert before.finished_at <= after.started_at + slack


def test_autoretry_with_backoff_and_jitter_then_success(
    engine: Engine, flaky: Flaky, whereabouts: tuple[str, int]
) -> None:
    workflow = engine.submit(chain(flaky.auto.si("b", 2), flaky.explicit.si("c", 0)))
    assert workflow.get(timeout=10) == 1
    first, second = _recorded_nodes(workflow)
    rows = _assert_attempts(
        engine,
        first,
        [
            (1, "RETRY", "ConnectionError", "down b"),
            (2, "RETRY", "ConnectionError", "down b"),
            (3, "SUCCEEDED", None, None),
        ],
    )
    _assert_retry_etas(rows, flaky.backoff)
    _assert_ran_here(rows, whereabouts)
    _assert_attempts(engine, second, [(1, "SUCCEEDED", None, None)])
    # the successor waited for the final outcome
    assert second.attempts[0].started_at >= first.attempts[-1].finished_at


def test_retries_spent_fail_the_workflow(
    engine: Engine, flaky: Flaky, whereabouts: tuple[str, int]
) -> None:
    workflow = engine.submit(flaky.auto.si("d", 10))
    with pytest.raises(WorkflowFailed) as raised:
        workflow.get(timeout=15)
    (node,) = _recorded_nodes(workflow)
    assert raised.value.node_id == node.id
    assert (raised.value.exc_type, raised.value.exc_message) == (
        "ConnectionError",
        "down d",
    )
    retries = flaky.auto.max_retries
    rows = _assert_attempts(
        engine,
        node,
        [(n, "RETRY", "ConnectionError", "down d") for n in range(1, retries + 1)]
        + [(retries + 1, "FAILED", "ConnectionError", "down d")],
    )
    assert flaky.calls["d"] == retries + 1
    _assert_retry_etas(rows, flaky.backoff)
    _assert_ran_here(rows, whereabouts)
    # the failure's traceback leads to the task body that raised
    assert "in auto\n" in rows[-1].traceback
    assert rows[-1].traceback.rstrip().endswith("ConnectionError: down d")


def test_default_retry_delay_and_max_retries(
    engine: Engine, flaky: Flaky, worker: Any
) -> None:
    workflow = engine.submit(flaky.default_delay.si("e"))
    with pytest.raises(WorkflowFailed) as raised:
        workflow.get(timeout=10)
    assert raised.value.exc_type == "TimeoutError"
    (node,) = _recorded_nodes(workflow)
    rows = _assert_attempts(
        engine,
        node,
        [(1, "RETRY", "TimeoutError", "slow"), (2, "FAILED", "TimeoutError", "slow")],
    )
    delay = flaky.default_delay.default_retry_delay
    _assert_retry_etas(rows, lambda _: (delay, delay))
    retry, failure = node.attempts
    assert retry.retry_eta is not None
    # the second attempt waited for default_retry_delay after the first began
    assert (failure.started_at - retry.started_at).total_seconds() >= delay


def test_a_failed_attempt_records_where_when_and_a_trimmed_traceback(
    engine: Engine, tasks: SimpleNamespace, whereabouts: tuple[str, int]
) -> None:
    depth, seconds = 50, 0.2
    exc, whole = _raised(tasks.deep_boom.run, depth)
    assert len(whole) > TRACEBACK_KEPT  # deep enough to be trimmed
    before = datetime.now(UTC)
    workflow = engine.submit(tasks.deep_boom.s(depth, seconds))
    with pytest.raises(WorkflowFailed):
        workflow.get(timeout=10)
    after = datetime.now(UTC)
    (node,) = workflow.nodes()
    (attempt,) = node.attempts
    (row,) = _assert_attempts(
        engine, node, [(1, "FAILED", type(exc).__name__, str(exc))]
    )
    _assert_ran_here([row], whereabouts)
    assert (attempt.worker, attempt.pid) == whereabouts
    assert attempt.started_at is not None
    assert attempt.finished_at is not None
    assert before <= attempt.started_at < attempt.finished_at <= after
    assert attempt.runtime is not None
    assert attempt.runtime >= seconds
    assert (row.finished_at - row.started_at).total_seconds() >= seconds
    # the last characters are kept: the raising frame and the exception
    assert attempt.traceback == row.traceback
    assert len(row.traceback) == TRACEBACK_KEPT
    assert whole.endswith(row.traceback)
    assert f"in {raise_at_the_bottom.__name__}\n" in row.traceback


def _twenty_steps(flaky: Flaky) -> Any:
    return chain(flaky.step.s(0, 1), *(flaky.step.s(i) for i in range(2, 21)))


def test_retry_of_a_failed_workflow_reruns_only_what_did_not_succeed(
    engine: Engine, flaky: Flaky, worker: Any
) -> None:
    workflow = engine.submit(_twenty_steps(flaky))
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
    # native Celery runs the same canvas eagerly, here, for the expected value
    expected = _twenty_steps(flaky).apply().get()
    assert workflow.get(timeout=20) == expected
    nodes = workflow.nodes()
    assert all(len(n.attempts) == 1 for n in nodes[:11])
    assert [a.state for a in nodes[11].attempts] == ["FAILED", "SUCCEEDED"]
    assert all(len(n.attempts) == 1 for n in nodes[12:])
