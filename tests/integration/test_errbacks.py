"""Errbacks run as Celery documents them, and each run is recorded."""

from __future__ import annotations

import time
import warnings

import pytest
import sqlalchemy as sa
from celery import chain, chord, group

from celeriac import WorkflowFailed, WorkflowState
from celeriac.storage.schema import attempts, nodes
from tests.waiting import wait_for


@pytest.fixture
def slow_boom(app, tasks):
    @app.task(name="e.slow_boom", shared=False)
    def slow_boom(x):
        tasks.ran.append(("e.slow_boom", (x,)))
        time.sleep(0.3)  # every member has started before the first fails
        raise KeyError(f"member {x}")

    return slow_boom


def _errback_runs(engine, workflow, task_name):
    """(state, attempts) of every errback node of ``task_name`` that ran."""
    with engine.db.connect() as conn:
        rows = conn.execute(
            sa.select(nodes.c.id, nodes.c.state, sa.func.count(attempts.c.id))
            .select_from(nodes.outerjoin(attempts, attempts.c.node_id == nodes.c.id))
            .where(
                nodes.c.workflow_id == workflow.id,
                nodes.c.kind == "ERRBACK",
                nodes.c.task == task_name,
            )
            .group_by(nodes.c.id, nodes.c.state)
        ).all()
    runs = sorted((state, count) for _, state, count in rows if count)
    # an errback still on its way is not counted until it finished
    return runs if all(state in ("SUCCEEDED", "FAILED") for state, _ in runs) else []


def _failed(workflow):
    with pytest.raises(WorkflowFailed) as raised:
        workflow.get(timeout=15)
    return raised.value


def _ran(tasks, name):
    return [args for task, args in tasks.ran if task == name]


def test_old_style_errback_on_a_signature_is_sent_the_failed_node_id(
    engine, tasks, worker
):
    workflow = engine.submit(tasks.boom.s(1).on_error(tasks.on_error.s()))
    failure = _failed(workflow)
    wait_for(lambda: _ran(tasks, "t.on_error"), what="errback")
    assert _ran(tasks, "t.on_error") == [(failure.node_id,)]
    wait_for(
        lambda: _errback_runs(engine, workflow, "t.on_error") == [("SUCCEEDED", 1)]
    )
    errback = next(n for n in workflow.nodes() if n.kind == "ERRBACK")
    assert errback.result == failure.node_id


def test_new_style_errback_runs_in_the_worker_with_request_and_exception(
    engine, tasks, worker
):
    workflow = engine.submit(tasks.boom.s(1).on_error(tasks.on_error_request.s()))
    failure = _failed(workflow)
    assert (failure.exc_type, failure.exc_message) == ("ValueError", "boom [1]")
    wait_for(lambda: _errback_runs(engine, workflow, "t.on_error_request"))
    assert _ran(tasks, "t.on_error_request") == [("ValueError",)]
    errback = next(n for n in workflow.nodes() if n.kind == "ERRBACK")
    assert (errback.state, errback.result) == ("SUCCEEDED", "ValueError")


def test_errback_on_a_chain_runs_once_for_the_failing_step(engine, tasks, worker):
    canvas = chain(tasks.add.s(1, 1), tasks.boom.s(), tasks.add.s(5))
    canvas.link_error(tasks.on_error.s())
    workflow = engine.submit(canvas)
    failure = _failed(workflow)
    wait_for(lambda: _errback_runs(engine, workflow, "t.on_error"))
    assert _errback_runs(engine, workflow, "t.on_error") == [("SUCCEEDED", 1)]
    assert _ran(tasks, "t.on_error") == [(failure.node_id,)]
    assert [n.state for n in workflow.nodes() if n.kind == "TASK"] == [
        "SUCCEEDED",
        "FAILED",
        "SKIPPED",
    ]


def test_errback_on_a_group_runs_once_per_failing_member_by_default(
    engine, tasks, slow_boom, worker
):
    canvas = group(slow_boom.s(1), slow_boom.s(2), tasks.add.s(1, 1))
    canvas.link_error(tasks.on_error.s())
    workflow = engine.submit(canvas)
    _failed(workflow)
    runs = wait_for(
        lambda: len(_errback_runs(engine, workflow, "t.on_error")) == 2 or None,
        what="two errback runs",
    )
    assert runs
    assert _errback_runs(engine, workflow, "t.on_error") == [("SUCCEEDED", 1)] * 2
    assert len(_ran(tasks, "t.on_error")) == 2


def test_errback_on_a_group_runs_once_for_the_group_with_the_option(
    engine, tasks, slow_boom, worker
):
    canvas = group(slow_boom.s(1), slow_boom.s(2), tasks.add.s(1, 1))
    canvas.link_error(tasks.on_error.s())
    canvas.set(celeriac_errback_once=True)
    workflow = engine.submit(canvas)
    _failed(workflow)
    wait_for(lambda: _errback_runs(engine, workflow, "t.on_error"), what="errback")
    wait_for(
        lambda: all(n.state != "RUNNING" for n in workflow.nodes()),
        what="both members recorded",
    )
    assert [n.state for n in workflow.nodes() if n.task == "e.slow_boom"] == [
        "FAILED",
        "FAILED",
    ]
    assert _errback_runs(engine, workflow, "t.on_error") == [("SUCCEEDED", 1)]
    assert len(_ran(tasks, "t.on_error")) == 1


def test_chord_header_failure_runs_the_errback_once_and_never_the_body(
    engine, tasks, slow_boom, worker
):
    canvas = chord([slow_boom.s(1), slow_boom.s(2), tasks.add.s(1, 1)], tasks.tsum.s())
    with warnings.catch_warnings():  # Celery's notice about a future default
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        canvas.link_error(tasks.on_error.s())
    workflow = engine.submit(canvas)
    failure = _failed(workflow)
    header = [n.id for n in workflow.nodes() if n.task == "e.slow_boom"]
    assert failure.node_id in header
    assert failure.exc_type == "KeyError"
    wait_for(
        lambda: all(n.state != "RUNNING" for n in workflow.nodes()),
        what="the header recorded",
    )
    assert workflow.state == WorkflowState.FAILED
    assert _errback_runs(engine, workflow, "t.on_error") == [("SUCCEEDED", 1)]
    assert len(_ran(tasks, "t.on_error")) == 1
    assert _ran(tasks, "t.tsum") == []
    body = next(n for n in workflow.nodes() if n.task == "t.tsum")
    assert (body.state, body.attempts) == ("SKIPPED", [])
