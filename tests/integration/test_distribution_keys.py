"""Ready for a distributed PostgreSQL: keys and statements carry ``workflow_id``.

To distribute the tables on ``workflow_id`` (Citus), with a workflow's rows
on one shard, every primary, unique and foreign key of a table that holds a
workflow's rows must contain it, and every statement a node's path sends
must name the workflow it touches, so that it is routed to one shard.

The keys are checked in the schema (``storage/schema.py``) and in databases
the migrations built. The statements are checked by an audit: every
statement the engine sends while a small set of workflows runs on
PostgreSQL (chains, a chord, an errback, a failure and its retry, pause,
resume, cancel, progress reports, the reads) is recorded with the ``Store``
method that sent it. Each one that touches a table of workflow rows must
compare ``workflow_id`` with a value (``celeriac_workflows.id`` for that
table), and every such table it names must be tied to it by its
``workflow_id``: a condition, a join or, for an INSERT, a column. The
audit reads the SQL text, not the plan: it checks that the statement names
the workflow, not how the database finds it (``test_query_plans.py``
checks that).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from celery import chain, chord, group

from benchmarks.instrument import store_method
from celeriac import Engine, WorkflowFailed, report_progress
from celeriac.storage import connect, migrate
from celeriac.storage.schema import metadata, workflows
from tests.integration.test_query_plans import run_the_hot_path

#: The tables that hold a workflow's rows, besides the workflows' own.
PER_WORKFLOW = (
    "celeriac_nodes",
    "celeriac_edges",
    "celeriac_attempts",
    "celeriac_events",
    "celeriac_transitions",
)
#: The one key without the workflow's id: one workflow per submit key, across
#: all workflows (docs/scaling.md says what it means on Citus).
EXCEPTIONS = {"uq_celeriac_workflows_submit_key"}
#: ``Store`` methods whose statements read or write across workflows, on
#: purpose: recovery's scans for overdue and lost nodes and for workflows
#: whose state lags, listings (the web console's pages and counts), purges,
#: and a new database's first statistics (run after a replacement too, once
#: its own steps are done). None is one of a node's own steps.
ACROSS_WORKFLOWS = {
    "analyze_new_tables",
    "requeue_stale",
    "requeue_lost",
    "unsettled_workflows",
    "list_workflows",
    "workflow_page",
    "count_workflow_states",
    "matching_workflow_ids",
    "workflow_ids_starting",
    "purge",
}


def keys_of(inspector: Any, table: str) -> dict[str, list[list[str]]]:
    """Columns of the table's primary key, unique keys and foreign keys."""
    unique = [c["column_names"] for c in inspector.get_unique_constraints(table)]
    unique += [
        i["column_names"]
        for i in inspector.get_indexes(table)
        if i["unique"] and i["name"] not in EXCEPTIONS
    ]
    foreign = [
        fk["constrained_columns"] + fk["referred_columns"]
        for fk in inspector.get_foreign_keys(table)
    ]
    primary = inspector.get_pk_constraint(table)["constrained_columns"]
    return {"primary": [primary], "unique": unique, "foreign": foreign}


def test_the_schema_keys_every_workflow_row_by_its_workflow() -> None:
    for name in PER_WORKFLOW:
        table = metadata.tables[name]
        first = next(iter(table.primary_key.columns))
        assert first.name == "workflow_id", name
        for index in table.indexes:
            if index.unique:
                assert "workflow_id" in index.columns, index.name
        for constraint in table.constraints:
            if isinstance(constraint, sa.UniqueConstraint):
                assert "workflow_id" in constraint.columns, constraint.name
        for fk in table.foreign_key_constraints:
            referred = {element.column for element in fk.elements}
            assert "workflow_id" in fk.column_keys, fk.name
            assert referred & {
                workflows.c.id,
                metadata.tables[PER_WORKFLOW[0]].c.workflow_id,
            }
    assert [c.name for c in workflows.primary_key.columns] == ["id"]
    unique = {index.name for index in workflows.indexes if index.unique}
    assert unique == EXCEPTIONS


@pytest.fixture
def migrated(empty_database_url: str) -> Iterator[sa.Engine]:
    db = connect(empty_database_url)
    migrate.upgrade(db)
    yield db
    db.dispose()


def test_the_migrated_keys_start_with_the_workflow_id(migrated: sa.Engine) -> None:
    inspector = sa.inspect(migrated)
    for table in PER_WORKFLOW:
        keys = keys_of(inspector, table)
        assert keys["primary"][0][0] == "workflow_id", table
        for kind in ("unique", "foreign"):
            for columns in keys[kind]:
                assert columns[0] == "workflow_id", (table, kind, columns)
    workflow_keys = keys_of(inspector, "celeriac_workflows")
    assert workflow_keys == {"primary": [["id"]], "unique": [], "foreign": []}


# -- the statement audit -------------------------------------------------------


def references(statement: str) -> list[tuple[str, str]]:
    """(table, name it goes by) of every table of celeriac the statement names."""
    found = []
    for match in re.finditer(r"\b(celeriac_[a-z_]+)\b(?: AS (\w+))?", statement):
        table, alias = match.group(1), match.group(2)
        found.append((table, alias or table))
    return found


#: A workflow id compared with a value: ``= %(p)s``, ``IN (%(p)s, …)``, or
#: ``IN (__[POSTCOMPILE_p])`` before expansion.
_NAMED = r"(?:workflow_id|celeriac_workflows\.id) (?:=|IN) \(?(?:%\(|__\[)"


def unrouted(statement: str) -> list[str]:
    """What keeps ``statement`` from naming the one workflow it touches."""
    named = [
        (table, name)
        for table, name in references(statement)
        if table in (*PER_WORKFLOW, "celeriac_workflows")
    ]
    if not named:
        return []
    problems = []
    # a statement with data-modifying CTEs inserts into several tables
    inserts = re.findall(r"INSERT INTO (\w+) \(([^)]*)\)", statement)
    targets = {target for target, _ in inserts}
    for target, columns in inserts:  # the rows it writes name their workflow
        key = "id" if target == "celeriac_workflows" else "workflow_id"
        if key not in [c.strip() for c in columns.split(",")]:
            problems.append(f"no {key} inserted")
    if inserts and " VALUES " in statement:
        return problems
    if not re.search(_NAMED, statement):
        problems.append("no workflow id compared with a value")
    for table, name in named:
        key = "id" if table == "celeriac_workflows" else "workflow_id"
        if name not in targets and not re.search(rf"\b{name}\.{key}\b", statement):
            problems.append(f"{name} not tied by {key}")
    return problems


def run_the_rest(engine: Engine, app: Any, tasks: Any) -> None:
    """What ``run_the_hot_path`` leaves out: errbacks, retries, progress."""

    @app.task(name="audit.reports", shared=False)
    def reports() -> int:
        report_progress(1, 2, "half")
        return 1

    @app.task(name="audit.retries", bind=True, shared=False, max_retries=1)
    def retries(self: Any) -> int:
        if self.request.retries == 0:
            raise self.retry(countdown=0)
        return 2

    with engine.embedded_worker():
        errback = tasks.boom.s().on_error(tasks.on_error_request.s())
        failing = engine.submit(chain(tasks.add.s(1, 1), errback))
        with pytest.raises(WorkflowFailed):
            failing.get(timeout=30)
        done = engine.submit(chord(group(reports.s(), retries.s()), tasks.tsum.s()))
        assert done.get(timeout=30) == 3


def test_every_statement_on_a_node_path_names_its_workflow(
    app: Any, tasks: Any, postgres_url: str
) -> None:
    engine = Engine(app, postgres_url)
    sent: dict[str, str] = {}

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.setdefault(statement, store_method())

    sa.event.listen(engine._db, "before_cursor_execute", record)
    try:
        run_the_hot_path(engine, tasks)
        run_the_rest(engine, app, tasks)
    finally:
        sa.event.remove(engine._db, "before_cursor_execute", record)
        engine.close()

    methods = set(sent.values())
    assert {"claim_node", "record_success", "record_failure", "record_retry"} <= methods
    listed_elsewhere = {"workflow_ids_starting", "purge", "workflow_page"}
    listed_elsewhere |= {"count_workflow_states", "matching_workflow_ids"}
    assert ACROSS_WORKFLOWS - listed_elsewhere <= methods
    offenders = [
        f"{method}: {'; '.join(problems)}\n    {statement}"
        for statement, method in sent.items()
        if method not in ACROSS_WORKFLOWS
        for problems in [unrouted(statement)]
        if problems
    ]
    assert offenders == [], "\n".join(offenders)
