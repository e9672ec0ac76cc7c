"""The public reads the CLI (and any tool) builds on: workflows, records, the DAG."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from celery import chord

from celeriac import Engine, WorkflowRecord, WorkflowState
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
