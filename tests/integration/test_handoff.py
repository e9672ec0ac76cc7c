"""A node's one successor runs in the worker that ran the node (``engine.handoff``).

What a user checks: the results are those of published nodes, down to the
request the task sees; the successor is claimed in its parent's success
(its attempt starts at the instant its parent's ends, and no message goes
through the broker); pause stops such a chain between two nodes; a node
that must go elsewhere, later, or under a time limit is published; Celery's
retry of a node run in place works. A worker dying while it runs one is in
``test_worker_processes``; a success whose commit reply was lost, there too.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pytest
from celery import Celery, chain, group

from celeriac import Engine, WorkflowState
from celeriac.engine import handoff, scheduler
from celeriac.records import Dispatch, Node
from tests.waiting import wait_for
from tests.workers import QUICK_RECOVERY

W = WorkflowState
TIMEOUT = 20.0


def in_place(parent: Node, child: Node) -> bool:
    """Whether ``child`` was claimed in ``parent``'s success: run in place."""
    return child.attempts[0].started_at == parent.attempts[-1].finished_at


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the nodes handed to the broker, in order."""
    sent: list[str] = []
    publish = scheduler.publish

    def recording(app: Celery, dispatches: list[Dispatch]) -> Any:
        sent.extend(d.node_id for d in dispatches)
        return publish(app, dispatches)

    monkeypatch.setattr(scheduler, "publish", recording)
    return sent


@pytest.fixture
def request_report(app: Celery) -> Any:
    """``h.request``: its argument and what its request says, as data."""

    @app.task(name="h.request", bind=True, shared=False)
    def report(self: Any, value: Any) -> dict[str, Any]:
        request = self.request
        info = request.delivery_info or {}
        return {
            "value": value,
            "id": request.id,
            "parent_id": request.parent_id,
            "root_id": request.root_id,
            "retries": request.retries,
            "is_eager": request.is_eager,
            "called_directly": request.called_directly,
            "hostname": request.hostname,
            "delivery_info": {
                key: info.get(key)
                for key in ("exchange", "routing_key", "priority", "redelivered")
            },
            "custom_header": (request.headers or {}).get("custom")
            or getattr(request, "custom", None),
            "correlation_id_is_id": request.correlation_id == request.id,
            "reply_to": bool(request.reply_to),
            "eta": request.eta,
            "expires": request.expires,
            "timelimit": list(request.timelimit or (None, None)),
            "ignore_result": request.ignore_result,
            "group": request.group,
        }

    return report


def test_a_chain_runs_in_place_after_its_first_message(
    engine: Engine, worker: Any, published: list[str]
) -> None:
    t = engine.app.test_tasks
    workflow = engine.submit(chain(t.add.s(1, 1), *[t.add.s(1) for _ in range(9)]))
    assert workflow.get(timeout=TIMEOUT) == 11
    nodes = workflow.nodes()
    assert published == [nodes[0].id]
    assert all(in_place(a, b) for a, b in itertools.pairwise(nodes))
    assert [[a.state for a in n.attempts] for n in nodes] == [["SUCCEEDED"]] * 10


def test_with_no_time_to_run_in_place_every_node_is_published(
    app: Celery, database_url: str, published: list[str]
) -> None:
    engine = Engine(app, database_url, inline_successor_seconds=0)
    engine.migrate()
    t = app.test_tasks
    try:
        with engine.embedded_worker():
            workflow = engine.submit(chain(t.add.s(1, 1), t.add.s(1), t.add.s(1)))
            assert workflow.get(timeout=TIMEOUT) == 4
        nodes = workflow.nodes()
        assert published == [n.id for n in nodes]
        assert not any(in_place(a, b) for a, b in itertools.pairwise(nodes))
    finally:
        engine.close()


def test_a_node_run_in_place_sees_the_request_and_value_a_message_brings(
    app: Celery, database_url: str, request_report: Any
) -> None:
    """Run in place, then published: the same value and request, ids aside."""
    t = app.test_tasks
    # a value JSON changes: a tuple becomes a list, an int key a string
    canvas = chain(
        t.identity.s({1: (2, 3)}), request_report.s().set(headers={"custom": "x"})
    )
    reports = []
    for seconds in (1.0, 0.0):
        engine = Engine(app, database_url, inline_successor_seconds=seconds)
        engine.migrate()
        try:
            with engine.embedded_worker():
                workflow = engine.submit(canvas)
                report = workflow.get(timeout=TIMEOUT)
            first, second = workflow.nodes()
            assert in_place(first, second) == bool(seconds)
            names = {first.id: "first", second.id: "second", None: None}
            for key in ("id", "parent_id", "root_id"):
                report[key] = names[report[key]]
            reports.append(report)
        finally:
            engine.close()
    in_place_report, published_report = reports
    assert in_place_report == published_report
    assert in_place_report["value"] == {"1": [2, 3]}
    assert in_place_report["parent_id"] == "first"
    assert in_place_report["custom_header"] == "x"


@pytest.mark.parametrize(
    "options",
    [{"countdown": 0.2}, {"time_limit": 60}, {"soft_time_limit": 60}],
    ids=["countdown", "time-limit", "soft-time-limit"],
)
def test_a_successor_due_later_or_under_a_time_limit_is_published(
    engine: Engine, worker: Any, published: list[str], options: dict[str, Any]
) -> None:
    t = engine.app.test_tasks
    workflow = engine.submit(chain(t.add.s(1, 1), t.add.s(1).set(**options)))
    assert workflow.get(timeout=TIMEOUT) == 3
    first, second = workflow.nodes()
    assert published == [first.id, second.id]
    assert not in_place(first, second)


def test_a_successor_routed_to_another_queue_is_published_there(
    engine: Engine, worker: Any, published: list[str]
) -> None:
    t = engine.app.test_tasks
    elsewhere = f"elsewhere-{uuid.uuid4().hex}"  # no worker consumes it
    workflow = engine.submit(chain(t.add.s(1, 1), t.add.s(1).set(queue=elsewhere)))
    nodes = workflow.nodes
    wait_for(lambda: nodes()[1].state == "QUEUED", timeout=TIMEOUT, what="QUEUED")
    first, second = nodes()
    assert published == [first.id, second.id]
    assert ("t.add", (2, 1)) not in t.ran
    workflow.cancel()


def test_a_fan_out_is_published(
    engine: Engine, worker: Any, published: list[str]
) -> None:
    t = engine.app.test_tasks
    workflow = engine.submit(chain(t.add.s(1, 1), group(t.add.s(1), t.add.s(2))))
    assert workflow.get(timeout=TIMEOUT) == [3, 4]
    assert sorted(published) == sorted(n.id for n in workflow.nodes()[:3])


def test_a_pause_stops_a_chain_running_in_place_between_two_nodes(
    engine: Engine, gate: Any, worker: Any
) -> None:
    t = engine.app.test_tasks
    workflow = engine.submit(chain(t.add.s(1, 1), gate.wait.s(), t.add.s(10)))
    assert gate.started.wait(TIMEOUT)
    workflow.pause()
    gate.opened.set()
    wait_for(lambda: workflow.state == W.PAUSED, TIMEOUT, what="PAUSED")
    first, waited, last = workflow.nodes()
    assert in_place(first, waited)
    assert (last.state, last.attempts) == ("PENDING", [])
    assert ("t.add", (2, 10)) not in t.ran

    workflow.resume()
    assert workflow.get(timeout=TIMEOUT) == 12


@pytest.fixture
def flaky(app: Celery) -> Any:
    """``h.flaky``: Celery-retries itself twice, then returns its argument + 1."""

    @app.task(name="h.flaky", bind=True, shared=False, max_retries=3)
    def flaky(self: Any, value: int) -> int:
        if self.request.retries < 2:
            raise self.retry(countdown=0)
        return value + 1

    return flaky


def test_a_node_run_in_place_retries_as_a_published_one_does(
    engine: Engine, flaky: Any, worker: Any
) -> None:
    t = engine.app.test_tasks
    workflow = engine.submit(chain(t.add.s(1, 1), flaky.s(), t.add.s(1)))
    assert workflow.get(timeout=TIMEOUT) == 4
    first, retried, last = workflow.nodes()
    assert in_place(first, retried)
    assert [a.state for a in retried.attempts] == ["RETRY", "RETRY", "SUCCEEDED"]
    # the retry's success came in a message: it runs its successor in place
    assert in_place(retried, last)


def test_a_node_claimed_to_run_in_place_that_could_not_run_is_run_by_recovery(
    app: Celery, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker gives its claim up; the recovery pass runs the node again."""
    trace = handoff._trace
    failed: list[str] = []

    def fails_once(app: Celery, message: handoff.CarriedMessage) -> None:
        if not failed:
            failed.append(message.node_id)
            raise RuntimeError("injected: the tracer could not start")
        trace(app, message)

    monkeypatch.setattr(handoff, "_trace", fails_once)
    engine = Engine(app, database_url, **QUICK_RECOVERY)
    engine.migrate()
    t = app.test_tasks
    try:
        with engine.embedded_worker():
            workflow = engine.submit(chain(t.add.s(1, 1), t.add.s(1)))
            assert workflow.get(timeout=TIMEOUT) == 3
        _first, second = workflow.nodes()
        assert failed == [second.id]
        assert [a.state for a in second.attempts] == ["LOST", "SUCCEEDED"]
        assert t.ran.count(("t.add", (2, 1))) == 1
    finally:
        engine.close()
