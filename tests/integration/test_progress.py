"""Progress reported from inside task bodies, as ``Workflow.progress()`` sees it."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from celery import chain, chord, group

import celeriac
from celeriac.engine import progress as progress_module
from tests.waiting import wait_for

#: Calls the throttle test makes in a tight loop, and the writes it allows.
LOOP_CALLS = 10_000
MAX_LOOP_WRITES = 24


class ProgressTasks:
    """Tasks that report progress, then wait until the test releases them."""

    def __init__(self, app):
        self.release = threading.Event()
        self.plain_ran = threading.Event()

        @app.task(name="p.ok", shared=False)
        def ok(value):
            return value

        @app.task(name="p.halfway", shared=False)
        def halfway(steps):
            celeriac.report_progress(steps // 2, steps, "halfway")
            self.release.wait(30)
            return steps

        @app.task(name="p.loop", shared=False)
        def loop(calls):
            for done in range(1, calls + 1):
                celeriac.report_progress(done, calls)
            return calls

        @app.task(name="p.celery_style", bind=True, shared=False)
        def celery_style(task, total):
            meta = {"current": 3, "total": total, "message": "three"}
            task.update_state(state="PROGRESS", meta=meta)
            other = {"current": 1, "total": 100}
            task.update_state(task_id="another-task", state="PROGRESS", meta=other)
            task.update_state(state="PROGRESS", meta={"no": "numbers"})
            self.release.wait(30)
            return total

        @app.task(name="p.plain", shared=False)
        def plain():
            celeriac.report_progress(1, 2, "not a node")
            self.plain_ran.set()

        self.ok, self.halfway, self.loop = ok, halfway, loop
        self.celery_style, self.plain = celery_style, plain


@pytest.fixture
def ptasks(app):
    return ProgressTasks(app)


@pytest.fixture(autouse=True)
def _release_before_the_worker_stops(ptasks, worker):
    """Tasks still waiting are let go first, so the worker stops at once."""
    yield
    ptasks.release.set()


@pytest.fixture
def progress_writes(engine):
    """The progress UPDATE statements the engine's database runs."""
    seen: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("UPDATE") and (
            "progress_current" in statement
        ):
            seen.append(statement)

    sa.event.listen(engine._db, "before_cursor_execute", count)
    yield seen
    sa.event.remove(engine._db, "before_cursor_execute", count)


def _node(workflow, task):
    (node,) = [n for n in workflow.nodes() if n.task == task]
    return node


def test_report_progress_is_seen_by_progress_and_nodes_while_the_task_runs(
    engine, ptasks, worker
):
    workflow = engine.submit(group(ptasks.ok.si(1), ptasks.halfway.si(10)))

    def halfway_reported():
        progress = workflow.progress()
        return progress if progress.done == 1 and progress.partial else None

    progress = wait_for(halfway_reported, what="the halfway report")
    assert (progress.done, progress.total, progress.running) == (1, 2, 1)
    assert progress.failed == 0
    assert progress.partial == pytest.approx(0.5)
    assert progress.fraction == pytest.approx(0.75)

    halfway = _node(workflow, "p.halfway")
    assert halfway.state == "RUNNING"
    assert halfway.progress is not None
    assert (halfway.progress.current, halfway.progress.total) == (5, 10)
    assert halfway.progress.message == "halfway"
    assert halfway.progress.fraction == pytest.approx(0.5)
    assert halfway.progress.at is not None
    assert _node(workflow, "p.ok").progress is None

    ptasks.release.set()
    assert workflow.get(timeout=10) == [1, 10]
    done = workflow.progress()
    assert (done.done, done.total, done.running, done.partial) == (2, 2, 0, 0.0)
    assert done.fraction == 1.0


def test_a_tight_loop_of_reports_costs_a_few_writes_and_keeps_the_last(
    engine, ptasks, worker, progress_writes
):
    workflow = engine.submit(ptasks.loop.si(LOOP_CALLS))
    assert workflow.get(timeout=30) == LOOP_CALLS

    # the first report, the final one, and one per half second in between
    assert 2 <= len(progress_writes) <= MAX_LOOP_WRITES
    node = _node(workflow, "p.loop")
    assert node.progress is not None
    assert (node.progress.current, node.progress.total) == (LOOP_CALLS, LOOP_CALLS)
    assert node.progress.fraction == 1.0


def test_celery_update_state_with_current_and_total_is_captured(
    engine, ptasks, worker, monkeypatch
):
    # No throttle: a report about another task would be written if it counted.
    monkeypatch.setattr(progress_module, "MIN_INTERVAL", 0.0)
    workflow = engine.submit(ptasks.celery_style.si(6))

    node = wait_for(
        lambda: (n := _node(workflow, "p.celery_style")).progress and n,
        what="update_state's progress",
    )
    assert (node.progress.current, node.progress.total) == (3, 6)
    assert node.progress.message == "three"
    assert workflow.progress().fraction == pytest.approx(0.5)

    ptasks.release.set()
    assert workflow.get(timeout=10) == 6


def test_progress_by_label_counts_only_that_part_of_the_canvas(engine, ptasks, worker):
    # A label on a chord covers its header and its body. (Not on a group
    # followed by a task: Celery makes that a chord and drops the group's
    # options.)
    canvas = chain(
        chord([ptasks.ok.si(1), ptasks.ok.si(2)], ptasks.ok.s()).set(
            celeriac_label="load"
        ),
        ptasks.halfway.si(4).set(celeriac_label="report"),
    )
    workflow = engine.submit(canvas)
    wait_for(lambda: workflow.progress(label="report").partial, what="the report")

    load = workflow.progress(label="load")
    assert (load.done, load.total, load.running, load.fraction) == (3, 3, 0, 1.0)
    report = workflow.progress(label="report")
    assert (report.done, report.total, report.running) == (0, 1, 1)
    assert report.fraction == pytest.approx(0.5)
    whole = workflow.progress()
    assert (whole.done, whole.total, whole.running) == (3, 4, 1)
    assert whole.fraction == pytest.approx(3.5 / 4)
    assert workflow.progress(label="no such label").total == 0

    ptasks.release.set()
    assert workflow.get(timeout=10) == 4
    assert workflow.progress(label="report").fraction == 1.0


def test_report_progress_outside_a_node_does_nothing(
    engine, ptasks, worker, progress_writes
):
    celeriac.report_progress(1, 2, "in the test's own thread")
    ptasks.plain.delay()  # a Celery task, but not a workflow node
    assert ptasks.plain_ran.wait(10)
    # a node that reports nothing, on the same worker threads afterwards
    workflow = engine.submit(ptasks.ok.si(1))
    assert workflow.get(timeout=10) == 1
    assert progress_writes == []
    assert _node(workflow, "p.ok").progress is None
