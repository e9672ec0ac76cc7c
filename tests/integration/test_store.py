"""The Store's contract, on SQLite and on PostgreSQL alike.

The workflows are built by hand, as the compiler builds them: TASK nodes,
JOIN nodes that collect their parents' results in edge order, and one END
node after every leaf, whose completion finishes the workflow.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from celeriac.engine.machine import decider
from celeriac.errors import InvalidCanvas, InvalidTransition, WorkflowNotFound
from celeriac.records import (
    Claim,
    EdgeSink,
    Failure,
    Lease,
    NewEdge,
    NewGraph,
    NewNode,
    NewWorkflow,
    Outcome,
)
from celeriac.states import NodeKind, NodeState, WorkflowState
from celeriac.storage import Store, connect, migrate
from celeriac.storage.finishes import Finishes
from celeriac.storage.schema import attempts, edges, events, nodes, workflows

N = NodeState
W = WorkflowState


class Flow:
    """A workflow built node by node; ``flow["a"]`` is node a's id."""

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex
        self.nodes: list[NewNode] = []
        self.edges: list[NewEdge] = []

    def __getitem__(self, name: str) -> str:
        return f"{self.id}-{name}"

    def name_of(self, node_id: str) -> str:
        return node_id.removeprefix(f"{self.id}-")

    def task(self, name: str, node_id: str | None = None) -> str:
        signature = {"task": f"t.{name}", "args": [], "kwargs": {}, "options": {}}
        return self._add(name, NodeKind.TASK, signature, node_id)

    def join(self, name: str, *parents: str) -> str:
        node = self._add(name, NodeKind.JOIN, None)
        for parent in parents:
            self.edge(parent, node)
        return node

    def edge(self, parent: str, child: str) -> None:
        position = sum(1 for e in self.edges if e.child_id == child)
        self.edges.append(NewEdge(parent, child, position))

    def build(self, result: str, frozen_ids: tuple[str, ...] = ()) -> NewWorkflow:
        """Add END after every leaf, and give each node its parent count."""
        parents = {e.parent_id for e in self.edges}
        leaves = [n.id for n in self.nodes if n.id not in parents]
        end = self._add("end", NodeKind.END, None)
        for leaf in leaves:
            self.edge(leaf, end)
        waiting = {
            n.id: sum(1 for e in self.edges if e.child_id == n.id) for n in self.nodes
        }
        built = [
            NewNode(n.id, n.position, n.kind, n.task, n.signature, waiting[n.id])
            for n in self.nodes
        ]

        def walk(edge_sink: EdgeSink) -> NewGraph:
            for edge in self.edges:
                edge_sink(edge)
            return NewGraph(built, result, frozen_ids)

        return NewWorkflow(
            id=self.id,
            name="hand-made",
            canvas={"hand": "made"},
            args=[],
            kwargs={},
            metadata=None,
            walk=walk,
        )

    def _add(
        self, name: str, kind: str, signature: Any, node_id: str | None = None
    ) -> str:
        node = NewNode(
            node_id or self[name],
            len(self.nodes),
            kind,
            signature and signature["task"],
            signature,
            0,
        )
        self.nodes.append(node)
        return node.id


def chain_flow() -> tuple[Flow, NewWorkflow]:
    """a → b → END."""
    flow = Flow()
    a, b = flow.task("a"), flow.task("b")
    flow.edge(a, b)
    return flow, flow.build(result=b)


def group_flow() -> tuple[Flow, NewWorkflow]:
    """(a, b) → JOIN j → c → END."""
    flow = Flow()
    a, b = flow.task("a"), flow.task("b")
    c = flow.task("c")
    flow.edge(flow.join("j", a, b), c)
    return flow, flow.build(result=c)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    db = connect(database_url)
    migrate.upgrade(db)
    yield Store(db)
    db.dispose()


def states(store: Store, flow: Flow) -> dict[str, str]:
    """Every node's state, by name (JOIN and END included)."""
    with store.db.connect() as conn:
        rows = conn.execute(
            sa.select(nodes.c.id, nodes.c.state).where(nodes.c.workflow_id == flow.id)
        )
        return {flow.name_of(row.id): row.state for row in rows}


def node_row(store: Store, node_id: str) -> sa.Row[Any]:
    with store.db.connect() as conn:
        return conn.execute(sa.select(nodes).where(nodes.c.id == node_id)).one()


def snapshot(store: Store, flow: Flow) -> dict[str, list[tuple[Any, ...]]]:
    """All rows that belong to the workflow, for before/after comparisons."""
    tables = {"workflows": workflows.c.id, "nodes": nodes.c.workflow_id}
    tables.update(edges=edges.c.workflow_id)
    tables.update(attempts=attempts.c.workflow_id, events=events.c.workflow_id)
    found = {}
    with store.db.connect() as conn:
        for name, column in tables.items():
            query = sa.select(column.table).where(column == flow.id)
            found[name] = sorted(map(tuple, conn.execute(query)), key=repr)
    return found


def transition(store: Store, flow: Flow, trigger: str) -> Any:
    """Apply ``trigger``; the dispatch includes the pages of nodes it queued."""
    result = store.transition_workflow(flow.id, trigger, decider(flow.id))
    if result is None or result.queued_at is None:
        return result
    queued, after = [], -1
    while after is not None:
        page, after = store.queued_page(flow.id, result.queued_at, after)
        queued += page
    return replace(result, dispatch=result.dispatch + queued)


def lease(worker: str = "w1", pid: int = 1, alive: bool = True) -> Lease:
    """A live worker's lease (or a dead one's: its heartbeat is too old)."""
    timeout = timedelta(seconds=30 if alive else -30)
    return Lease(f"{worker}-{pid}", worker, pid, datetime.now(UTC) - timeout)


def claim(
    store: Store,
    workflow_id: str,
    node_id: str,
    delivery: str = "0.0",
    worker: str = "w1",
    pid: int = 1,
) -> Claim:
    """Claim a delivery of a node from a live worker."""
    store.heartbeat(f"{worker}-{pid}", worker, pid)
    token = uuid.uuid4().hex
    return store.claim_node(workflow_id, node_id, delivery, lease(worker, pid), token)[
        0
    ]


def run(
    store: Store, flow: Flow, name: str, result: Any, delivery: str = "0.0"
) -> Outcome:
    """Claim node ``name`` and record its success."""
    store.heartbeat("w1-1", "w1", 1)
    claimed, number = store.claim_node(
        flow.id, flow[name], delivery, lease(), uuid.uuid4().hex
    )
    assert claimed is Claim.RUN
    return store.record_success(flow.id, flow[name], number, result)


def dispatched(outcome: Any, flow: Flow) -> list[tuple[str, tuple[Any, ...]]]:
    return [(flow.name_of(d.node_id), d.inputs) for d in outcome.dispatch]


# -- submission -----------------------------------------------------------------


def test_insert_workflow_returns_the_roots_and_marks_them_queued(store):
    flow, new = group_flow()
    roots = store.insert_workflow(new).dispatch

    assert [(d.node_id, d.inputs, d.kind) for d in roots] == [
        (flow["a"], (), NodeKind.TASK),
        (flow["b"], (), NodeKind.TASK),
    ]
    assert roots[0].signature == flow.nodes[0].signature
    assert roots[0].workflow_id == flow.id
    assert roots[0].attempt_base == 0
    assert states(store, flow) == {
        "a": N.QUEUED,
        "b": N.QUEUED,
        "j": N.PENDING,
        "c": N.PENDING,
        "end": N.PENDING,
    }
    assert store.workflow_state(flow.id) == W.IN_PROGRESS


def test_insert_workflow_with_colliding_node_ids_stores_nothing(store):
    flow = Flow()
    a = flow.task("a")
    flow.edge(a, flow.task("b", node_id=a))
    new = flow.build(result=a)

    with pytest.raises(sa.exc.IntegrityError):
        store.insert_workflow(new)

    with pytest.raises(WorkflowNotFound):
        store.get_workflow(flow.id)
    assert snapshot(store, flow) == {
        "workflows": [],
        "nodes": [],
        "edges": [],
        "attempts": [],
        "events": [],
    }


def test_insert_workflow_colliding_with_a_stored_one_leaves_both_as_they_were(store):
    first, first_new = chain_flow()
    store.insert_workflow(first_new)
    before = snapshot(store, first)
    second = Flow()
    second.task("a", node_id=first["b"])
    # node ids are keyed by workflow: a frozen task id (the one way a canvas
    # chooses a node's id) is checked against every workflow's nodes
    second_new = second.build(result=first["b"], frozen_ids=(first["b"],))

    with pytest.raises(InvalidCanvas, match="already a node of workflow"):
        store.insert_workflow(second_new)

    with pytest.raises(WorkflowNotFound):
        store.get_workflow(second.id)
    assert snapshot(store, first) == before
    assert snapshot(store, second)["events"] == []


# -- claims and outcomes --------------------------------------------------------


def test_claim_runs_an_attempt_once_and_drops_its_duplicate(store):
    flow, new = chain_flow()
    store.insert_workflow(new)

    assert claim(store, flow.id, flow["a"], "0.0", "w1", 11) is Claim.RUN
    assert claim(store, flow.id, flow["a"], "0.0", "w2", 22) is Claim.DROP

    assert states(store, flow)["a"] == N.RUNNING
    (node,) = [n for n in store.list_nodes(flow.id) if n.id == flow["a"]]
    assert [(t.number, t.state, t.worker, t.pid) for t in node.attempts] == [
        (1, "RUNNING", "w1", 11)
    ]


def test_claim_of_a_node_that_is_not_queued_is_dropped(store):
    flow, new = chain_flow()
    store.insert_workflow(new)

    assert claim(store, flow.id, flow["b"], "0.0", "w1", 1) is Claim.DROP
    assert claim(store, flow.id, "no-such-node", "0.0", "w1", 1) is Claim.DROP
    assert states(store, flow)["b"] == N.PENDING


def test_success_releases_the_child_with_the_parents_result(store):
    flow, new = chain_flow()
    store.insert_workflow(new)

    outcome = run(store, flow, "a", {"x": [1, 2]})

    assert outcome.recorded
    assert not outcome.finished
    assert outcome.workflow_state == W.IN_PROGRESS
    assert dispatched(outcome, flow) == [("b", ({"x": [1, 2]},))]
    assert states(store, flow)["a"] == N.SUCCEEDED
    assert states(store, flow)["b"] == N.QUEUED
    assert node_row(store, flow["a"]).result == {"x": [1, 2]}


def test_a_replayed_success_changes_nothing_but_offers_the_successor_again(store):
    """Only a replay (a lost commit reply) records one attempt's success twice."""
    flow, new = chain_flow()
    store.insert_workflow(new)
    run(store, flow, "a", 1)

    again = store.record_success(flow.id, flow["a"], 1, 2)

    assert again.recorded
    assert dispatched(again, flow) == [("b", (1,))]  # the stored result
    assert node_row(store, flow["a"]).result == 1
    assert states(store, flow)["b"] == N.QUEUED
    (node,) = [n for n in store.list_nodes(flow.id) if n.id == flow["a"]]
    assert [t.state for t in node.attempts] == ["SUCCEEDED"]


def test_a_success_of_an_older_attempt_is_not_recorded(store):
    flow, new = chain_flow()
    store.insert_workflow(new)
    assert claim(store, flow.id, flow["a"], "0.0") is Claim.RUN
    assert claim(store, flow.id, flow["a"], "0.1") is Claim.RUN  # a Celery retry

    late = store.record_success(flow.id, flow["a"], 1, "late")

    assert not late.recorded
    assert late.dispatch == []
    assert states(store, flow)["a"] == N.RUNNING


def test_join_completes_in_the_database_with_results_in_edge_order(store):
    flow, new = group_flow()
    store.insert_workflow(new)

    first = run(store, flow, "b", "B")
    assert first.dispatch == []
    assert states(store, flow)["j"] == N.PENDING
    second = run(store, flow, "a", "A")

    assert dispatched(second, flow) == [("c", (["A", "B"],))]
    assert states(store, flow)["j"] == N.SUCCEEDED
    assert node_row(store, flow["j"]).result == ["A", "B"]
    assert not second.finished


def test_end_completion_finishes_the_workflow_and_complete_stores_the_result(store):
    flow, new = chain_flow()
    store.insert_workflow(new)
    run(store, flow, "a", 1)

    outcome = run(store, flow, "b", [2, 3])

    assert outcome.finished
    assert outcome.dispatch == []
    assert states(store, flow)["end"] == N.SUCCEEDED
    assert store.workflow_state(flow.id) == W.IN_PROGRESS
    done = transition(store, flow, "complete")
    assert (done.source, done.dest) == (W.IN_PROGRESS, W.COMPLETED)
    record = store.get_workflow(flow.id)
    assert record.state == W.COMPLETED
    assert record.result == [2, 3]
    assert record.finished_at is not None


def test_parents_finishing_at_once_release_their_join_exactly_once(store):
    flow = Flow()
    members = [flow.task(f"m{i}") for i in range(8)]
    flow.edge(flow.join("j", *members), flow.task("c"))
    store.insert_workflow(flow.build(result=flow["c"]))
    for i, member in enumerate(members):
        assert claim(store, flow.id, member, "0.0", "w", i) is Claim.RUN
    barrier = threading.Barrier(len(members))
    outcomes: list[Outcome] = []

    def finish(index: int) -> None:
        barrier.wait()
        outcomes.append(store.record_success(flow.id, members[index], 1, index))

    threads = [threading.Thread(target=finish, args=(i,)) for i in range(len(members))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    released = [d for outcome in outcomes for d in outcome.dispatch]
    assert len(outcomes) == len(members)
    assert [(d.node_id, d.inputs) for d in released] == [(flow["c"], (list(range(8)),))]


# -- pause, resume, cancel ------------------------------------------------------


def test_pause_with_a_running_node_waits_for_it_then_settles(store):
    flow, new = chain_flow()
    store.insert_workflow(new)
    claim(store, flow.id, flow["a"], "0.0", "w1", 1)

    paused = transition(store, flow, "pause")
    assert (paused.source, paused.dest) == (W.IN_PROGRESS, W.REQUESTING_PAUSE)
    assert transition(store, flow, "settle") is None
    assert store.workflow_state(flow.id) == W.REQUESTING_PAUSE

    outcome = store.record_success(flow.id, flow["a"], 1, 5)
    assert outcome.settle
    assert outcome.dispatch == []
    assert states(store, flow)["b"] == N.PENDING

    settled = transition(store, flow, "settle")
    assert (settled.source, settled.dest) == (W.REQUESTING_PAUSE, W.PAUSED)
    assert store.workflow_state(flow.id) == W.PAUSED


def test_pause_with_nothing_running_pauses_at_once(store):
    flow, new = chain_flow()
    store.insert_workflow(new)

    paused = transition(store, flow, "pause")

    assert (paused.source, paused.dest) == (W.IN_PROGRESS, W.PAUSED)
    assert store.workflow_state(flow.id) == W.PAUSED


def test_a_claim_while_pausing_holds_the_node_back_as_pending(store):
    flow, new = group_flow()
    store.insert_workflow(new)
    claim(store, flow.id, flow["a"], "0.0", "w1", 1)
    transition(store, flow, "pause")

    assert claim(store, flow.id, flow["b"], "0.0", "w1", 1) is Claim.HOLD

    assert states(store, flow)["b"] == N.PENDING
    assert store.workflow_state(flow.id) == W.REQUESTING_PAUSE
    (node,) = [n for n in store.list_nodes(flow.id) if n.id == flow["b"]]
    assert node.attempts == []


def test_a_claim_while_paused_holds_the_node_back_as_pending(store):
    flow, new = chain_flow()
    store.insert_workflow(new)
    transition(store, flow, "pause")

    assert claim(store, flow.id, flow["a"], "0.0", "w1", 1) is Claim.HOLD
    assert states(store, flow)["a"] == N.PENDING


def test_resume_dispatches_every_ready_node_with_its_input(store):
    flow, new = group_flow()
    store.insert_workflow(new)
    claim(store, flow.id, flow["a"], "0.0", "w1", 1)
    transition(store, flow, "pause")
    claim(store, flow.id, flow["b"], "0.0", "w1", 1)
    store.record_success(flow.id, flow["a"], 1, "A")
    transition(store, flow, "settle")

    resumed = transition(store, flow, "resume")

    assert (resumed.source, resumed.dest) == (W.PAUSED, W.IN_PROGRESS)
    assert dispatched(resumed, flow) == [("b", ())]
    assert states(store, flow)["b"] == N.QUEUED
    assert run(store, flow, "b", "B").dispatch[0].inputs == (["A", "B"],)


def test_resume_dispatches_a_child_released_during_the_pause(store):
    flow, new = chain_flow()
    store.insert_workflow(new)
    claim(store, flow.id, flow["a"], "0.0", "w1", 1)
    transition(store, flow, "pause")
    store.record_success(flow.id, flow["a"], 1, {"k": "v"})
    transition(store, flow, "settle")

    resumed = transition(store, flow, "resume")

    assert dispatched(resumed, flow) == [("b", ({"k": "v"},))]
    assert resumed.dispatch[0].attempt_base == 0
    assert run(store, flow, "b", 2).finished


def test_cancel_returns_the_running_nodes_and_cancels_the_unfinished_ones(store):
    flow, new = group_flow()
    store.insert_workflow(new)
    claim(store, flow.id, flow["a"], "0.0", "w1", 1)

    cancelled = transition(store, flow, "cancel")

    assert (cancelled.source, cancelled.dest) == (W.IN_PROGRESS, W.CANCELLED)
    # b is QUEUED: its message is dropped when claimed, no revoke needed
    assert cancelled.revoke == [flow["a"]]
    assert cancelled.dispatch == []
    assert states(store, flow) == {
        "a": N.RUNNING,
        "b": N.CANCELLED,
        "j": N.CANCELLED,
        "c": N.CANCELLED,
        "end": N.CANCELLED,
    }
    assert store.get_workflow(flow.id).finished_at is not None
    assert claim(store, flow.id, flow["b"], "0.0", "w1", 1) is Claim.DROP


@pytest.mark.parametrize("trigger", ["resume", "settle", "retry", "no-such-trigger"])
def test_an_invalid_trigger_raises_and_changes_nothing(store, trigger):
    flow, new = chain_flow()
    store.insert_workflow(new)
    claim(store, flow.id, flow["a"], "0.0", "w1", 1)
    before = snapshot(store, flow)

    with pytest.raises(InvalidTransition) as raised:
        transition(store, flow, trigger)

    assert raised.value.workflow_id == flow.id
    assert snapshot(store, flow) == before


@pytest.mark.parametrize("trigger", ["pause", "resume", "cancel", "complete"])
def test_no_trigger_leaves_a_cancelled_workflow(store, trigger):
    flow, new = chain_flow()
    store.insert_workflow(new)
    transition(store, flow, "cancel")
    before = snapshot(store, flow)

    with pytest.raises(InvalidTransition):
        transition(store, flow, trigger)

    assert snapshot(store, flow) == before


# -- failure and retry ------------------------------------------------------------


def fail_b(store: Store, flow: Flow) -> None:
    """Run a, then fail b for good and fail the workflow."""
    run(store, flow, "a", 1)
    claim(store, flow.id, flow["b"], "0.0", "w1", 1)
    store.record_failure(flow.id, flow["b"], 1, "ValueError", "bad", "Traceback")
    error = Failure(flow["b"], "ValueError", "bad")
    store.transition_workflow(flow.id, "fail", decider(flow.id), error)


def test_fail_records_the_failing_node_and_its_error(store):
    flow, new = chain_flow()
    store.insert_workflow(new)

    fail_b(store, flow)

    record = store.get_workflow(flow.id)
    assert record.state == W.FAILED
    assert (record.failed_node_id, record.exc_type, record.exc_message) == (
        flow["b"],
        "ValueError",
        "bad",
    )
    (node,) = [n for n in store.list_nodes(flow.id) if n.id == flow["b"]]
    assert node.state == N.FAILED
    assert node.error == "ValueError: bad"
    assert [(t.state, t.exc_type, t.traceback) for t in node.attempts] == [
        ("FAILED", "ValueError", "Traceback")
    ]


def test_retry_runs_the_failed_node_again_after_its_last_attempt(store):
    flow, new = chain_flow()
    store.insert_workflow(new)
    fail_b(store, flow)

    retried = transition(store, flow, "retry")

    assert (retried.source, retried.dest) == (W.FAILED, W.IN_PROGRESS)
    assert dispatched(retried, flow) == [("b", (1,))]
    assert retried.dispatch[0].attempt_base == 1
    record = store.get_workflow(flow.id)
    assert (record.failed_node_id, record.exc_type, record.finished_at) == (
        None,
        None,
        None,
    )
    assert claim(store, flow.id, flow["b"], "0.0", "w1", 1) is Claim.DROP
    assert run(store, flow, "b", 3, delivery="1.0").finished


def test_a_node_that_succeeds_after_a_retry_reports_no_error(store):
    flow, new = chain_flow()
    store.insert_workflow(new)
    fail_b(store, flow)
    transition(store, flow, "retry")

    run(store, flow, "b", 3, delivery="1.0")

    (node,) = [n for n in store.list_nodes(flow.id) if n.id == flow["b"]]
    assert node.state == N.SUCCEEDED
    assert node.result == 3
    assert (node.error, node.exc_type) == (None, None)


def test_a_celery_retry_is_recorded_and_the_next_attempt_runs(store):
    flow, new = chain_flow()
    store.insert_workflow(new)
    claim(store, flow.id, flow["a"], "0.0", "w1", 1)

    store.record_retry(flow.id, flow["a"], 1, "OSError", "flaky", None)
    assert states(store, flow)["a"] == N.RETRYING
    assert claim(store, flow.id, flow["a"], "0.0", "w1", 1) is Claim.DROP
    assert run(store, flow, "a", "ok", delivery="0.1").dispatch[0].inputs == ("ok",)

    (node,) = [n for n in store.list_nodes(flow.id) if n.id == flow["a"]]
    assert [(t.number, t.state, t.exc_type) for t in node.attempts] == [
        (1, "RETRY", "OSError"),
        (2, "SUCCEEDED", None),
    ]


def test_a_revoked_running_node_is_cancelled(store):
    flow, new = chain_flow()
    store.insert_workflow(new)
    claim(store, flow.id, flow["a"], "0.0", "w1", 1)
    transition(store, flow, "cancel")

    assert not store.record_revoked(flow.id, flow["a"], "revoked").recorded

    (node,) = [n for n in store.list_nodes(flow.id) if n.id == flow["a"]]
    assert node.state == N.CANCELLED
    assert [t.state for t in node.attempts] == ["REVOKED"]
    assert store.get_workflow(flow.id).state == W.CANCELLED


@pytest.mark.parametrize("running", [True, False], ids=["running", "queued"])
def test_a_node_revoked_while_its_workflow_runs_fails_for_good(store, running):
    flow, new = chain_flow()
    store.insert_workflow(new)
    if running:
        claim(store, flow.id, flow["a"], "0.0", "w1", 1)

    outcome = store.record_revoked(flow.id, flow["a"], "expired")

    assert outcome.recorded
    assert outcome.dispatch == []
    (node, after) = store.list_nodes(flow.id)
    assert (node.state, node.exc_type, node.error) == (
        N.FAILED,
        "TaskRevokedError",
        "TaskRevokedError: expired",
    )
    assert [t.state for t in node.attempts] == (["REVOKED"] if running else [])
    assert after.state == N.PENDING
    # a second revoke of the same node (another delivery) changes nothing
    assert not store.record_revoked(flow.id, flow["a"], "expired").recorded


def test_a_redelivery_takes_over_only_from_a_dead_worker(store):
    flow, new = chain_flow()
    store.insert_workflow(new)
    store.heartbeat("w1-1", "w1", 1)
    assert store.claim_node(flow.id, flow["a"], "0.0", lease("w1", 1), "t1")[0] is (
        Claim.RUN
    )
    # the same message again while w1 heartbeats: a duplicate
    assert claim(store, flow.id, flow["a"], "0.0", "w2", 2) is Claim.DROP
    # w1 falls silent: the broker's redelivery runs the node again
    claimed, number = store.claim_node(
        flow.id, flow["a"], "0.0", lease("w2", 2, alive=False), "t2"
    )
    assert (claimed, number) == (Claim.RUN, 2)
    (node,) = [n for n in store.list_nodes(flow.id) if n.id == flow["a"]]
    assert [(t.number, t.state) for t in node.attempts] == [
        (1, "LOST"),
        (2, "RUNNING"),
    ]
    # the lost attempt's late result is not recorded; the new one's is
    assert not store.record_success(flow.id, flow["a"], 1, "late").recorded
    assert store.record_success(flow.id, flow["a"], 2, "ok").recorded


def test_a_replayed_claim_finds_its_own_attempt(store):
    """The retry policy replays a claim whose commit reply was lost."""
    flow, new = chain_flow()
    store.insert_workflow(new)
    store.heartbeat("w1-1", "w1", 1)
    first = store.claim_node(flow.id, flow["a"], "0.0", lease(), "token-1")
    replayed = store.claim_node(flow.id, flow["a"], "0.0", lease(), "token-1")
    assert first == replayed == (Claim.RUN, 1)
    (node,) = [n for n in store.list_nodes(flow.id) if n.id == flow["a"]]
    assert [t.number for t in node.attempts] == [1]


def test_recovery_requeues_the_running_nodes_of_a_dead_worker(store):
    flow, new = chain_flow()
    store.insert_workflow(new)
    assert claim(store, flow.id, flow["a"], "0.0", "w1", 1) is Claim.RUN
    assert store.requeue_lost(dead_after=30) == []  # w1 just heartbeat
    time.sleep(0.05)
    (again,) = store.requeue_lost(dead_after=0.01)
    assert (again.node_id, again.attempt_base) == (flow["a"], 1)
    assert states(store, flow)["a"] == N.QUEUED
    assert run(store, flow, "a", 1, delivery="1.0").recorded
    (node,) = [n for n in store.list_nodes(flow.id) if n.id == flow["a"]]
    assert [t.state for t in node.attempts] == ["LOST", "SUCCEEDED"]


def test_a_message_of_a_replaced_dispatch_is_dropped(store):
    """Recovery dispatched the node anew: the old message may not run it."""
    flow, new = chain_flow()
    store.insert_workflow(new)
    assert claim(store, flow.id, flow["a"], "0.0", "w1", 1) is Claim.RUN
    time.sleep(0.05)
    (again,) = store.requeue_lost(dead_after=0.01)
    assert again.attempt_base == 1
    # a Celery retry the lost attempt published, then its first message again
    assert claim(store, flow.id, flow["a"], "0.1", "w2", 2) is Claim.DROP
    assert claim(store, flow.id, flow["a"], "0.0", "w2", 2) is Claim.DROP
    assert states(store, flow)["a"] == N.QUEUED
    assert run(store, flow, "a", 1, delivery="1.0").recorded


def test_while_an_attempt_runs_only_its_celery_retry_may_start(store):
    flow, new = chain_flow()
    store.insert_workflow(new)
    assert claim(store, flow.id, flow["a"], "0.0", "w1", 1) is Claim.RUN
    # a retry that skips a count is no retry of the running attempt
    assert claim(store, flow.id, flow["a"], "0.2", "w2", 2) is Claim.DROP
    # Celery's retry overtook its task_retry signal: the running one retried
    assert claim(store, flow.id, flow["a"], "0.1", "w2", 2) is Claim.RUN
    (node,) = [n for n in store.list_nodes(flow.id) if n.id == flow["a"]]
    assert [(t.number, t.state) for t in node.attempts] == [
        (1, "RETRY"),
        (2, "RUNNING"),
    ]


def test_recovery_sends_again_a_celery_retry_that_never_came(store):
    flow, new = chain_flow()
    store.insert_workflow(new)
    assert claim(store, flow.id, flow["a"], "0.0", "w1", 1) is Claim.RUN
    due = datetime.now(UTC) + timedelta(seconds=0.2)
    store.record_retry(flow.id, flow["a"], 1, "OSError", "flaky", due)
    before_due = due - timedelta(seconds=0.1)
    assert store.requeue_stale(older_than=0, since=before_due) == []  # not due yet
    time.sleep(0.3)
    since = datetime.now(UTC)
    (again,) = store.requeue_stale(older_than=0.05, since=since)
    # the same message as Celery's retry: first dispatch, first retry
    assert (again.node_id, again.attempt_base, again.retries) == (flow["a"], 0, 1)
    assert states(store, flow)["a"] == N.RETRYING
    # the rest of the same pass does not send it twice
    assert store.requeue_stale(older_than=0.05, since=since) == []
    assert run(store, flow, "a", "ok", delivery="0.1").recorded
    # the original turns up after all: a duplicate
    assert claim(store, flow.id, flow["a"], "0.1", "w2", 2) is Claim.DROP
    (node,) = [n for n in store.list_nodes(flow.id) if n.id == flow["a"]]
    assert [t.state for t in node.attempts] == ["RETRY", "SUCCEEDED"]


def test_recovery_leaves_the_retry_of_a_paused_workflow_alone(store):
    flow, new = chain_flow()
    store.insert_workflow(new)
    assert claim(store, flow.id, flow["a"], "0.0", "w1", 1) is Claim.RUN
    store.record_retry(flow.id, flow["a"], 1, "OSError", "flaky", None)
    transition(store, flow, "pause")
    time.sleep(0.05)
    assert store.requeue_stale(older_than=0.01) == []
    transition(store, flow, "resume")
    (again,) = store.requeue_stale(older_than=0.01)
    assert again.node_id == flow["a"]


def test_a_node_published_again_waits_twice_as_long_each_time(store):
    """A message only waiting in a long queue is not sent again every pass."""
    flow, new = chain_flow()
    store.insert_workflow(new)
    delay = 1.0

    def queued_ago(seconds: float) -> None:
        with store.db.begin() as conn:
            conn.execute(
                sa.update(nodes)
                .where(nodes.c.id == flow["a"])
                .values(queued_at=datetime.now(UTC) - timedelta(seconds=seconds))
            )

    def republished() -> list[str]:
        return [d.node_id for d in store.requeue_stale(older_than=delay)]

    queued_ago(1.25)
    assert republished() == [flow["a"]]  # once overdue: published again
    queued_ago(1.25)
    assert republished() == []  # the second time it waits 2 delays
    queued_ago(2.25)
    assert republished() == [flow["a"]]
    queued_ago(3.5)
    assert republished() == []  # then 4
    assert node_row(store, flow["a"]).republished == 2
    # a new dispatch (here: a claim, a lost attempt, recovery) starts over
    assert claim(store, flow.id, flow["a"], "0.0", "w1", 1) is Claim.RUN
    time.sleep(0.05)
    (again,) = store.requeue_lost(dead_after=0.01)
    assert node_row(store, again.node_id).republished == 0


def test_a_node_waiting_in_a_backlog_is_not_sent_again_while_workers_take_older_ones(
    store,
):
    """Overdue by age, but the workers have not yet reached its message.

    It is sent again once they take a message queued ``delay`` after it
    (they went past it: it was lost), or when they take none at all.
    """
    waiting_flow, waiting_new = chain_flow()
    busy_flow, busy_new = chain_flow()
    store.insert_workflow(waiting_new)
    store.insert_workflow(busy_new)
    assert claim(store, busy_flow.id, busy_flow["a"]) is Claim.RUN
    delay = 1.0
    queued = datetime.now(UTC) - timedelta(seconds=30)

    def set_node(flow: Flow, **values: Any) -> None:
        with store.db.begin() as conn:
            conn.execute(
                sa.update(nodes)
                .where(nodes.c.workflow_id == flow.id, nodes.c.id == flow["a"])
                .values(**values)
            )

    def republished() -> list[str]:
        return [d.node_id for d in store.requeue_stale(older_than=delay)]

    set_node(waiting_flow, queued_at=queued)
    # the running node was queued just after it: the backlog is moving
    set_node(busy_flow, queued_at=queued + timedelta(seconds=0.5))
    assert republished() == []
    # the node the workers took last has finished already: still moving
    set_node(busy_flow, state="SUCCEEDED", finished_at=datetime.now(UTC))
    assert republished() == []
    # the workers took a message queued well after it: its own was lost
    set_node(busy_flow, queued_at=queued + timedelta(seconds=2))
    assert republished() == [waiting_flow["a"]]
    # and when the workers took nothing lately, age alone decides
    set_node(waiting_flow, queued_at=queued, republished=0)
    set_node(
        busy_flow,
        queued_at=queued,
        started_at=datetime.now(UTC) - timedelta(seconds=10),
    )
    assert republished() == [waiting_flow["a"]]


def test_list_workflows_filters_by_creation_time(store):
    made = []
    for age in (3, 2, 1):  # days old
        flow, new = chain_flow()
        store.insert_workflow(new)
        created = datetime.now(UTC) - timedelta(days=age)
        with store.db.begin() as conn:
            conn.execute(
                sa.update(workflows)
                .where(workflows.c.id == flow.id)
                .values(created_at=created)
            )
        made.append(flow.id)
    cutoff = datetime.now(UTC) - timedelta(days=2, hours=12)

    after = store.list_workflows(created_after=cutoff)
    before = store.list_workflows(created_before=cutoff)

    assert [w.id for w in after] == [made[2], made[1]]  # newest first
    assert [w.id for w in before] == [made[0]]
    assert [w.id for w in store.list_workflows(created_after=cutoff, limit=1)] == [
        made[2]
    ]


def test_list_nodes_with_bookkeeping_adds_joins_and_the_end(store):
    flow, new = group_flow()
    store.insert_workflow(new)

    plain = [flow.name_of(n.id) for n in store.list_nodes(flow.id)]
    full = store.list_nodes(flow.id, bookkeeping=True)

    assert plain == ["a", "b", "c"]
    assert [(flow.name_of(n.id), n.kind) for n in full] == [
        ("a", "TASK"),
        ("b", "TASK"),
        ("c", "TASK"),
        ("j", "JOIN"),
        ("end", "END"),
    ]
    parents = {flow.name_of(n.id): sorted(map(flow.name_of, n.parents)) for n in full}
    assert parents["j"] == ["a", "b"]
    assert parents["c"] == ["j"]
    assert parents["end"] == ["c"]


# -- the server going away --------------------------------------------------------


def test_the_store_carries_on_after_postgres_restarts(postgres_url, postgres_server):
    db = connect(postgres_url)
    store = Store(db)
    try:
        flow, new = chain_flow()
        store.insert_workflow(new)
        run(store, flow, "a", 1)

        postgres_server.restart(immediate=True)

        assert run(store, flow, "b", 2).finished
        assert states(store, flow)["end"] == N.SUCCEEDED
    finally:
        db.dispose()


def test_a_finish_wakes_a_waiter_from_another_connection(store, database_url):
    """On PostgreSQL the notice comes through LISTEN/NOTIFY; on SQLite only an
    engine's own announce() wakes a waiter, and its poll covers the rest."""
    flow, new = chain_flow()
    store.insert_workflow(new)
    finishes = Finishes(connect(database_url))
    mark = finishes.mark()
    woke = threading.Event()

    def wait() -> None:
        finishes.wait(mark, timeout=30)
        woke.set()

    waiter = threading.Thread(target=wait)
    waiter.start()
    try:
        if store.db.dialect.name != "postgresql":
            finishes.announce()
        else:
            finishes.wait(finishes.mark(), timeout=1.0)  # the listener is up
            transition(store, flow, "cancel")
        assert woke.wait(timeout=20), "no notice of the finish reached the waiter"
        assert finishes.mark() != mark
    finally:
        finishes.close()
        waiter.join()


def test_a_message_naming_a_join_or_the_end_is_dropped_and_changes_nothing(store):
    flow, new = group_flow()
    store.insert_workflow(new)
    before = snapshot(store, flow)
    for name in ("j", "end"):  # never published: such a message is forged
        assert claim(store, flow.id, flow[name]) is Claim.DROP
    assert snapshot(store, flow) == before
