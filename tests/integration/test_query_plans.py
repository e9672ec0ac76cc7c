"""Flat with history: every hot-path statement uses an index, however much
finished work the tables hold, and a purge deletes it while work goes on.

One PostgreSQL database, shared by the module, gets a million finished nodes
(10,000 COMPLETED workflows of 100, with their edges, attempts and events)
inserted in SQL, and fresh planner statistics. A small real run on the same database (a
chain into a chord, a failure and its retry, pause, resume, cancel, a
recovery pass, the reads ``get``, ``progress``, ``nodes``, ``list`` and
``show`` make) records every statement it sends, with its parameters; each
distinct one is then run again under ``EXPLAIN (ANALYZE, BUFFERS)`` with
the same parameters, in a transaction rolled back afterwards, and the test
fails on a sequential scan of any table that holds the history, or on a
statement that reads more pages than a look-up by index can (a full scan
of an index, which PostgreSQL also uses for a condition on its second
column, is as slow as a sequential scan). Then the last test purges that
history while a chain runs on the same database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from celery import chain, chord, group

from celeriac import (
    Engine,
    WorkflowCancelled,
    WorkflowCursor,
    WorkflowFailed,
    WorkflowFilter,
)
from celeriac.storage import connect
from celeriac.storage.schema import nodes
from tests.history import analyze, insert_history
from tests.integration.test_retention import purge_while_a_chain_runs
from tests.servers import Server, create_database, drop_database, unique_name

pytestmark = pytest.mark.slow

HISTORY_NODES = 1_000_000
NODES_PER_WORKFLOW = 100
#: The tables the history fills: a sequential scan of one reads it all.
BIG_TABLES = {
    "celeriac_workflows",
    "celeriac_nodes",
    "celeriac_edges",
    "celeriac_attempts",
    "celeriac_events",
}
#: Pages (of 8 kB) one statement may touch: a few index look-ups. The
#: history's smallest index (on a million nodes) has several thousand.
MAX_PAGES = 200
#: Statements that are planned, not only run (INSERT … VALUES is neither).
PLANNED = ("SELECT", "UPDATE", "DELETE", "WITH")


@pytest.fixture(scope="module")
def history_url(postgres_server: Server, postgres_template: str) -> Iterator[str]:
    """A database holding a million finished nodes, for the whole module."""
    name = unique_name("celeriac_history")
    url = create_database(postgres_server, name, template=postgres_template)
    db = connect(url)
    try:
        with db.begin() as conn:
            insert_history(conn, HISTORY_NODES, NODES_PER_WORKFLOW)
        with db.begin() as conn:
            analyze(conn)
    finally:
        db.dispose()
    yield url
    drop_database(postgres_server, name)


def scans(plan: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(node type, table) of every scan in a JSON plan, children included."""
    if "Relation Name" in plan:
        yield plan["Node Type"], plan["Relation Name"]
    for child in plan.get("Plans", []):
        yield from scans(child)


def explain(conn: sa.Connection, statement: str, parameters: Any) -> dict[str, Any]:
    """The plan PostgreSQL ran ``statement`` with, and the pages it touched."""
    explained = conn.exec_driver_sql(
        f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {statement}", parameters
    ).scalar_one()
    document = explained if isinstance(explained, list) else json.loads(explained)
    plan: dict[str, Any] = document[0]["Plan"]
    return plan


def pages_touched(plan: dict[str, Any]) -> int:
    """The pages (of 8 kB) a plan run by ``explain`` touched, in memory or not."""
    return int(plan["Shared Hit Blocks"]) + int(plan["Shared Read Blocks"])


def record_statements(db: sa.Engine) -> dict[str, Any]:
    """Collect each distinct statement ``db`` runs, with its first parameters."""
    recorded: dict[str, Any] = {}

    @sa.event.listens_for(db, "before_cursor_execute")
    def record(
        conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any
    ) -> None:
        if statement.lstrip().upper().startswith(PLANNED):
            recorded.setdefault(statement, parameters)

    return recorded


def run_the_hot_path(engine: Engine, tasks: Any) -> None:
    """What users and workers do, on a small scale."""
    with engine.embedded_worker():
        workflow = engine.submit(
            chain(
                tasks.add.s(1, 2),
                chord(group(tasks.add.s(10), tasks.add.s(20)), tasks.tsum.s()),
            ),
            name="plans",
        )
        assert workflow.get(timeout=30) == 36
        workflow.progress()
        workflow.nodes()
        failing = engine.submit(chain(tasks.add.s(1, 1), tasks.boom.s()))
        with pytest.raises(WorkflowFailed):
            failing.get(timeout=30)
        failing.retry()
        with pytest.raises(WorkflowFailed):
            failing.get(timeout=30)
        slow = engine.submit(chain(tasks.sleep.s(0.3), tasks.add.s(1, 1)))
        slow.pause()
        slow.resume()
        slow.cancel()
        with pytest.raises(WorkflowCancelled):
            slow.get(timeout=30)
        engine.recover()
    engine.list_workflows()
    engine.list_workflows(state="COMPLETED", name="plans")
    # the web console's keyset pages: newest first, then below the last shown
    *_, last = engine.workflow_page(WorkflowFilter(), 2)
    engine.workflow_page(WorkflowFilter(), 2, WorkflowCursor(last.created_at, last.id))
    workflow.record()
    workflow.node_counts()
    assert engine.workflow(workflow.id).state == "COMPLETED"


def test_hot_path_statements_use_indexes_over_a_million_finished_nodes(
    app, tasks, history_url
):
    engine = Engine(app, history_url)
    try:
        with engine._db.connect() as conn:
            held = conn.execute(sa.select(sa.func.count()).select_from(nodes))
            assert held.scalar_one() >= HISTORY_NODES, "the history was purged"
        recorded = record_statements(engine._db)
        run_the_hot_path(engine, tasks)
        assert len(recorded) > 20, "the run sent fewer statements than expected"

        offenders = []
        with engine._db.connect() as conn:
            for statement, parameters in recorded.items():
                with conn.begin() as transaction:
                    plan = explain(conn, statement, parameters)
                    transaction.rollback()
                offenders.extend(
                    f"{node_type} on {table}: {statement}"
                    for node_type, table in scans(plan)
                    if node_type == "Seq Scan" and table in BIG_TABLES
                )
                pages = pages_touched(plan)
                if pages > MAX_PAGES:
                    offenders.append(f"{pages} pages: {statement}")
    finally:
        engine.close()
    assert offenders == []


def test_a_million_finished_nodes_are_purged_while_a_chain_runs(
    app, tasks, history_url
):
    """After the EXPLAIN test (it needs the history this purges)."""
    engine = Engine(app, history_url)
    try:
        purge_while_a_chain_runs(
            engine, tasks, HISTORY_NODES // NODES_PER_WORKFLOW, HISTORY_NODES
        )
    finally:
        engine.close()
