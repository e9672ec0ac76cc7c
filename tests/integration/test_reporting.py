"""The reporting views and every example query of docs/reporting.md, on both dialects.

The queries are read from the markdown, so the documentation and the tests
cannot drift apart: a new example needs a check here, and a changed one is run
as it is written.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from celery import chord

import celeriac
from celeriac import WorkflowFailed, WorkflowState
from celeriac.storage import connect, migrate
from celeriac.storage.rows import now
from celeriac.storage.schema import events, metadata, workflows
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "reporting.md"
README = ROOT / "celeriac" / "migrations" / "README.md"

VIEWS = (
    "celeriac_workflow_summary_v1",
    "celeriac_node_attempts_v1",
    "celeriac_failures_v1",
    "celeriac_events_v1",
)
OLD = timedelta(hours=2)
STUCK_FOR = timedelta(hours=1)


# -- reading the documentation -----------------------------------------------


def sql_blocks(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"```sql\n(.*?)```", text, re.S)]


def sections(text: str, level: str) -> dict[str, str]:
    """Heading → body for the headings of one level (``"###"``)."""
    pattern = rf"^{level} (.+?)\n(.*?)(?=^#{{1,{len(level)}}} |\Z)"
    return {
        heading.strip(): body
        for heading, body in re.findall(pattern, text, re.M | re.S)
    }


def example_queries() -> dict[str, str]:
    """Title → SQL for each example under "## Example queries"."""
    text = DOCS.read_text()
    examples = text.split("## Example queries", 1)[1]
    queries = {}
    for title, body in sections(examples, "###").items():
        (query,) = sql_blocks(body)
        queries[title] = query
    return queries


def documented_columns() -> dict[str, set[str]]:
    """Table or view name → the columns its table in the docs lists."""
    columns = {}
    for heading, body in sections(DOCS.read_text(), "###").items():
        name = re.fullmatch(r"`(celeriac_\w+)`", heading)
        if name:
            columns[name.group(1)] = set(re.findall(r"^\| `(\w+)` \|", body, re.M))
    return columns


# -- the fixture workflows ---------------------------------------------------


class ReportTasks:
    """Tasks with a known behaviour: fast, slow, flaky, broken, blocked."""

    def __init__(self, app):
        self.release = threading.Event()
        self.calls: dict[str, int] = {}
        lock = threading.Lock()

        @app.task(name="rep.ok", shared=False)
        def ok(value=None):
            return value

        @app.task(name="rep.slow", shared=False)
        def slow(seconds):
            time.sleep(seconds)
            return seconds

        @app.task(name="rep.flaky", bind=True, shared=False, max_retries=5)
        def flaky(task, key, failures):
            with lock:
                count = self.calls[key] = self.calls.get(key, 0) + 1
            if count <= failures:
                raise task.retry(exc=KeyError(key), countdown=0.2)
            return count

        @app.task(name="rep.broken", shared=False)
        def broken(*args):
            raise ValueError("broken on purpose")

        @app.task(name="rep.block", shared=False)
        def block():
            celeriac.report_progress(1, 4, "waiting for the test")
            self.release.wait(30)
            return "released"

        self.ok, self.slow, self.flaky = ok, slow, flaky
        self.broken, self.block = broken, block


@pytest.fixture
def rtasks(app):
    return ReportTasks(app)


@pytest.fixture
def report(engine, rtasks, worker):
    """Four workflows in known states, the way an operator finds them.

    - "nightly-report": a chord whose header retries (node a: 2 retries, node
      b: 1) and succeeds, and whose body fails with ValueError: FAILED.
    - "quick": one slow task: COMPLETED.
    - "old-failure": one failing task, its events two hours old: FAILED.
    - "stuck": a task that reported progress and blocks, paused an hour ago:
      REQUESTING_PAUSE.
    """
    nightly = engine.submit(
        chord(
            [rtasks.ok.si(1), rtasks.flaky.si("a", 2), rtasks.flaky.si("b", 1)],
            rtasks.broken.si(),
        ),
        name="nightly-report",
    )
    quick = engine.submit(rtasks.slow.si(1.0), name="quick")
    old = engine.submit(rtasks.broken.si(), name="old-failure")
    stuck = engine.submit(rtasks.block.si(), name="stuck")
    for failing in (nightly, old):
        with pytest.raises(WorkflowFailed):
            failing.get(timeout=20)
    assert quick.get(timeout=20) == 1.0
    wait_for(lambda: stuck.nodes()[0].progress, what="the blocked task's report")
    stuck.pause()
    assert stuck.state == WorkflowState.REQUESTING_PAUSE
    wait_for(lambda: _retries_recorded(nightly), what="every retry's exception")

    with engine._db.begin() as conn:
        conn.execute(
            sa.update(events)
            .where(events.c.workflow_id == old.id)
            .values(at=now() - OLD)
        )
        conn.execute(
            sa.update(workflows)
            .where(workflows.c.id == stuck.id)
            .values(updated_at=now() - STUCK_FOR)
        )
    yield SimpleNamespace(
        engine=engine,
        nightly=nightly,
        quick=quick,
        old=old,
        stuck=stuck,
        nodes=nightly.nodes(),
    )
    rtasks.release.set()


def _retries_recorded(workflow):
    retries = [a for n in workflow.nodes() for a in n.attempts if a.state == "RETRY"]
    return len(retries) == 3 and all(a.exc_type == "KeyError" for a in retries)


def run(engine, query, **params):
    with engine._db.connect() as conn:
        return [row._mapping for row in conn.execute(sa.text(query), params)]


# -- the checks, one per documented query ------------------------------------


def check_workflows_per_state(rows, report):
    assert [(r["state"], r["workflows"]) for r in rows] == [
        ("COMPLETED", 1),
        ("FAILED", 2),
        ("REQUESTING_PAUSE", 1),
    ]


def check_failed_workflows(rows, report):
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == {"nightly-report", "old-failure"}
    nightly = by_name["nightly-report"]
    assert nightly["workflow_id"] == report.nightly.id
    assert (nightly["tasks_done"], nightly["tasks_total"]) == (3, 4)
    assert (nightly["exc_type"], nightly["exc_message"]) == (
        "ValueError",
        "broken on purpose",
    )
    assert nightly["duration_seconds"] > 0
    old = by_name["old-failure"]
    assert (old["tasks_done"], old["tasks_total"], old["exc_type"]) == (
        0,
        1,
        "ValueError",
    )


def check_stuck_in_requesting_pause(rows, report):
    (row,) = rows
    assert (row["workflow_id"], row["name"], row["tasks_running"]) == (
        report.stuck.id,
        "stuck",
        1,
    )
    hour = STUCK_FOR.total_seconds()
    assert hour - 5 < row["seconds_in_state"] < hour + 120


def check_slowest_tasks(rows, report):
    assert rows[0]["task"] == "rep.slow"
    assert 1.0 <= rows[0]["max_seconds"] < 20
    longest = [row["max_seconds"] for row in rows]
    assert longest == sorted(longest, reverse=True)
    assert {r["task"]: r["attempts"] for r in rows} == {
        "rep.slow": 1,
        "rep.ok": 1,
        "rep.flaky": 5,
        "rep.broken": 2,
    }


def check_failure_rate(rows, report):
    assert [
        (r["task"], r["attempts"], r["failed_attempts"], float(r["failure_pct"]))
        for r in rows
    ] == [
        ("rep.broken", 2, 2, 100.0),
        ("rep.flaky", 5, 3, 60.0),
        ("rep.ok", 1, 0, 0.0),
        ("rep.slow", 1, 0, 0.0),
    ]


def check_most_common_failures(rows, report):
    assert [
        (
            r["task"],
            r["exc_type"],
            r["failed_attempts"],
            r["retried"],
            r["failed_for_good"],
            r["workflows"],
        )
        for r in rows
    ] == [
        ("rep.flaky", "KeyError", 3, 3, 0, 1),
        ("rep.broken", "ValueError", 2, 0, 2, 2),
    ]
    assert all(r["first_seen"] <= r["last_seen"] for r in rows)


def check_average_attempts(rows, report):
    assert [
        (r["task"], r["nodes"], float(r["avg_attempts"]), r["max_attempts"])
        for r in rows
    ] == [
        ("rep.flaky", 2, 2.5, 3),
        ("rep.block", 1, 1.0, 1),
        ("rep.broken", 2, 1.0, 1),
        ("rep.ok", 1, 1.0, 1),
        ("rep.slow", 1, 1.0, 1),
    ]


def check_nodes_that_needed_retries(rows, report):
    flaky = sorted(
        ((len(n.attempts), n.id) for n in report.nodes if n.task == "rep.flaky"),
        reverse=True,
    )
    assert [attempts for attempts, _ in flaky] == [3, 2]
    assert [
        (r["workflow_name"], r["node_id"], r["task"], r["attempts"]) for r in rows
    ] == [("nightly-report", node_id, "rep.flaky", a) for a, node_id in flaky]


def check_errors_of_the_last_hour(rows, report):
    assert {
        (r["workflow_name"], r["task"], r["to_state"], r["detail"]) for r in rows
    } == {
        ("nightly-report", "rep.broken", "FAILED", "ValueError"),
        ("nightly-report", "rep.flaky", "RETRYING", "KeyError"),
    }
    assert [r["to_state"] for r in rows].count("FAILED") == 1
    times = [r["at"] for r in rows]
    assert times == sorted(times, reverse=True)


def check_time_per_worker(rows, report):
    (row,) = rows
    hostname = report.nodes[0].attempts[0].worker
    assert hostname
    assert (row["worker"], row["attempts"]) == (hostname, 9)
    assert row["busy_seconds"] >= 1.0


def check_timeline(rows, report):
    steps = [(r["task"], r["from_state"], r["to_state"], r["detail"]) for r in rows]
    assert steps[0] == (None, None, "IN_PROGRESS", None)
    assert steps[-1] == (None, "IN_PROGRESS", "FAILED", "fail")
    assert ("rep.broken", "RUNNING", "FAILED", "ValueError") in steps
    assert sum(1 for s in steps if s[2] == "RUNNING") == 7  # one per attempt
    # A retry whose next attempt starts before Celery's retry signal is
    # handled goes from RUNNING to RUNNING, without a RETRYING event.
    assert 1 <= sum(1 for s in steps if s[2] == "RETRYING") <= 3


def check_running_progress(rows, report):
    assert [
        (
            r["name"],
            r["task"],
            r["progress_current"],
            r["progress_total"],
            r["progress_message"],
        )
        for r in rows
    ] == [("stuck", "rep.block", 1.0, 4.0, "waiting for the test")]
    assert rows[0]["progress_at"] is not None


CHECKS = {
    "Workflows per state": check_workflows_per_state,
    "Workflows that failed, with their error": check_failed_workflows,
    "Workflows stuck in REQUESTING_PAUSE": check_stuck_in_requesting_pause,
    "Slowest tasks": check_slowest_tasks,
    "Failure rate by task": check_failure_rate,
    "Most common failures": check_most_common_failures,
    "Average attempts per task": check_average_attempts,
    "Nodes that needed retries": check_nodes_that_needed_retries,
    "Errors of the last hour": check_errors_of_the_last_hour,
    "Time spent per worker": check_time_per_worker,
    "Timeline of a workflow": check_timeline,
    "Progress of running tasks": check_running_progress,
}


# -- the tests ---------------------------------------------------------------


def test_every_example_query_in_the_docs_has_a_check():
    queries = example_queries()
    assert len(queries) >= 8
    assert set(queries) == set(CHECKS)


def test_every_example_query_gives_the_expected_answer(report):
    failures = []
    for title, query in example_queries().items():
        try:
            CHECKS[title](run(report.engine, query), report)
        except (AssertionError, sa.exc.DBAPIError) as exc:
            failures.append(f"{title}: {exc}")
    assert not failures, "\n\n".join(failures)


def test_every_view_exists_after_upgrade_and_returns_the_fixture_workflow(report):
    db = report.engine._db
    assert set(VIEWS) <= set(sa.inspect(db).get_view_names())
    nightly = report.nightly.id
    (summary,) = run(
        report.engine,
        "SELECT * FROM celeriac_workflow_summary_v1 WHERE workflow_id = :id",
        id=nightly,
    )
    assert (summary["state"], summary["tasks_total"], summary["tasks_failed"]) == (
        "FAILED",
        4,
        1,
    )
    assert summary["started_at"] is not None
    attempts = run(
        report.engine,
        "SELECT * FROM celeriac_node_attempts_v1 WHERE workflow_id = :id",
        id=nightly,
    )
    assert len(attempts) == 7
    assert all(a["workflow_name"] == "nightly-report" for a in attempts)
    assert all(a["duration_seconds"] >= 0 for a in attempts)
    failures = run(
        report.engine,
        "SELECT * FROM celeriac_failures_v1 WHERE task = 'rep.broken'",
    )
    assert [(f["exc_type"], f["failed_for_good"]) for f in failures] == [
        ("ValueError", 2)
    ]
    logged = run(
        report.engine,
        "SELECT * FROM celeriac_events_v1 WHERE workflow_id = :id",
        id=nightly,
    )
    assert logged
    assert all(e["workflow_name"] == "nightly-report" for e in logged)
    assert all(0 <= e["age_seconds"] < 600 for e in logged)


def test_every_table_and_view_column_is_documented(engine):
    inspector = sa.inspect(engine._db)
    actual = {
        name: {column["name"] for column in inspector.get_columns(name)}
        for name in [*metadata.tables, *VIEWS]
    }
    assert documented_columns() == actual


def test_the_migrations_readme_queries_run(report):
    queries = sql_blocks(README.read_text())
    assert len(queries) == len(VIEWS)
    for query in queries:
        assert run(report.engine, query), query


def test_views_carry_a_comment_on_postgresql(postgres_url):
    db = connect(postgres_url)
    try:
        migrate.upgrade(db)
        with db.connect() as conn:
            comments = conn.execute(
                sa.text(
                    "SELECT c.relname, obj_description(c.oid, 'pg_class') "
                    "FROM pg_class AS c WHERE c.relkind = 'v'"
                )
            ).all()
    finally:
        db.dispose()
    assert {name for name, comment in comments if comment} == set(VIEWS)
