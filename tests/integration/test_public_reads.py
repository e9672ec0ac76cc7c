"""The public reads the CLI (and any tool) builds on: workflows, records, the DAG."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from celery import chord

from celeriac import (
    Clustered,
    Engine,
    NodeState,
    Outline,
    WorkflowCursor,
    WorkflowFilter,
    WorkflowRecord,
    WorkflowState,
)
from celeriac.states import NodeKind


def test_list_workflows_filters_newest_first(
    engine: Engine, worker: Any, tasks: SimpleNamespace
) -> None:
    first = engine.submit(tasks.add.si(1, 1), name="orders", key="order-1")
    second = engine.submit(tasks.add.si(2, 2), name="orders")
    other = engine.submit(tasks.add.si(3, 3), name="reports")
    for workflow in (first, second, other):
        workflow.get(timeout=30)

    listed = engine.list_workflows(name="orders")
    assert [record.id for record in listed] == [second.id, first.id]
    assert all(isinstance(record, WorkflowRecord) for record in listed)
    assert [r.id for r in engine.list_workflows(key="order-1")] == [first.id]
    assert len(engine.list_workflows(limit=2)) == 2
    done = engine.list_workflows(state=WorkflowState.COMPLETED)
    assert {r.id for r in done} == {first.id, second.id, other.id}
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert engine.list_workflows(created_after=later) == []
    assert len(engine.list_workflows(created_before=later)) == 3


def test_record_and_graph_nodes_of_a_chord(
    engine: Engine, worker: Any, tasks: SimpleNamespace
) -> None:
    workflow = engine.submit(
        chord([tasks.add.si(1, 1), tasks.add.si(2, 2)], tasks.tsum.s()),
        name="sums",
        metadata={"customer": 7},
    )
    assert workflow.get(timeout=30) == 6

    record = workflow.record()
    assert (record.id, record.name, record.state) == (
        workflow.id,
        "sums",
        WorkflowState.COMPLETED,
    )
    assert record.metadata == {"customer": 7}
    assert record.result == 6
    assert record.finished_at is not None

    drawn = workflow.graph_nodes()
    kinds = [node.kind for node in drawn]
    assert NodeKind.END not in kinds
    (join,) = [node for node in drawn if node.kind == NodeKind.JOIN]
    header = [node for node in drawn if node.task == "t.add"]
    (body,) = [node for node in drawn if node.task == "t.tsum"]
    assert set(join.parents) == {node.id for node in header}
    assert body.parents == [join.id]
    # nodes() is the same DAG without the joins
    assert [node.id for node in workflow.nodes()] == [
        node.id for node in drawn if node.kind != NodeKind.JOIN
    ]


def test_workflow_pages_counts_and_ids_of_a_filter(
    engine: Engine, worker: Any, tasks: SimpleNamespace
) -> None:
    made = [engine.submit(tasks.add.si(n, n), name="pages") for n in range(3)]
    for workflow in made:
        workflow.get(timeout=30)
    engine.submit(tasks.add.si(9, 9), name="other").get(timeout=30)
    newest = [workflow.id for workflow in reversed(made)]
    where = WorkflowFilter(name="pages")

    first = engine.workflow_page(where, 2)
    last = first[-1]
    rest = engine.workflow_page(where, 2, WorkflowCursor(last.created_at, last.id))
    assert [r.id for r in first + rest] == newest
    assert len(engine.workflow_page()) == 4
    assert engine.count_workflows(where) == {WorkflowState.COMPLETED: 3}
    failed = WorkflowFilter(name="pages", state=WorkflowState.FAILED)
    assert engine.count_workflows(failed) == {WorkflowState.COMPLETED: 3}
    assert engine.count_workflows() == {WorkflowState.COMPLETED: 4}
    assert engine.matching_workflow_ids(where, 2) == newest[:2]


def test_node_pages_errbacks_counts_and_outline(
    engine: Engine, worker: Any, tasks: SimpleNamespace
) -> None:
    header = [tasks.add.si(1, 1), tasks.add.si(2, 2)]
    workflow = engine.submit(chord(header, tasks.tsum.s()))
    assert workflow.get(timeout=30) == 6
    nodes = workflow.nodes()

    page, after = workflow.node_page(limit=2)
    assert [n.id for n in page] == [n.id for n in nodes[:2]]
    rest, end = workflow.node_page(after if after is not None else -1)
    assert [n.id for n in page + rest] == [n.id for n in nodes]
    assert end is None
    node, errbacks = workflow.node_with_errbacks(nodes[0].id) or (None, None)
    assert node is not None
    assert (node.id, errbacks) == (nodes[0].id, [])
    assert workflow.node_with_errbacks("no-such-node") is None

    counts = workflow.node_counts()
    assert counts[(NodeKind.TASK, NodeState.SUCCEEDED)] == 3
    assert counts[(NodeKind.JOIN, NodeState.SUCCEEDED)] == 1
    outline = workflow.outline(100, 10)
    assert isinstance(outline, Outline)
    assert [n.id for n in outline.nodes if n.kind == NodeKind.TASK] == [
        n.id for n in nodes
    ]
    clustered = workflow.outline(1, 10)
    assert isinstance(clustered, Clustered)
    assert clustered.total == 4
