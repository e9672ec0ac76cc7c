"""A new database, before PostgreSQL has any statistics for celeriac's tables.

Until autovacuum first analyzes them (at least a minute, never with it off),
the planner guesses every table holds a few rows, and may scan all of a
workflow's nodes to find one of them. A submit analyzes the tables it fills
once they are large enough (``storage/statistics.py``); a chord's join,
which gathers its parents' results, reads them by key whatever the
statistics. Each test reads the pages PostgreSQL touched (``EXPLAIN
(ANALYZE, BUFFERS)``, rolled back): a few per node, not a number that grows
with the workflow.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from celery import chain, group

from celeriac import Engine
from celeriac.records import Lease
from celeriac.storage import Store, connect
from celeriac.storage.releases import join_value
from celeriac.storage.schema import nodes
from tests.integration.test_query_plans import explain, pages_touched
from tests.integration.test_store import Flow
from tests.tasks import make_app

pytestmark = pytest.mark.postgres

PARENTS = 2_000
#: Pages one parent's result may cost: a look-up of its key in an index.
PAGES_PER_PARENT = 10
MEMBERS = 4_000
#: Pages a member's claim or success may touch: a few look-ups by key (about
#: 30 and 40). A scan of the group's nodes, without statistics, touched 235.
MAX_PAGES = 100
#: The tasks a task replaces itself with: more than ten pages of nodes.
REPLACED = 500


@pytest.fixture
def store(postgres_url: str) -> Iterator[Store]:
    db = connect(postgres_url)
    yield Store(db)
    db.dispose()


@contextmanager
def statements_sent(target: sa.Engine | sa.Connection) -> Iterator[list[Any]]:
    """Each (statement, parameters) ``target`` sends meanwhile, in order."""
    sent: list[tuple[str, Any]] = []

    def record(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any
    ) -> None:
        sent.append((statement, parameters))

    sa.event.listen(target, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        sa.event.remove(target, "before_cursor_execute", record)


def statistics_of(store: Store, table: str) -> int:
    """How many columns of ``table`` the planner has statistics for."""
    with store.db.connect() as conn:
        return int(
            conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stats WHERE tablename = %(table)s",
                {"table": table},
            ).scalar_one()
        )


def test_a_join_reads_its_parents_by_key_before_any_statistics(store: Store) -> None:
    flow = Flow()
    parents = [flow.task(f"p{index}") for index in range(PARENTS)]
    join = flow.join("j", *parents)
    store.insert_workflow(flow.build(result=join))  # and not analyzed
    assert statistics_of(store, "celeriac_nodes") == 0
    with store.db.begin() as conn:
        for index, parent in enumerate(parents):
            conn.execute(
                sa.update(nodes)
                .where(nodes.c.workflow_id == flow.id, nodes.c.id == parent)
                .values(state="SUCCEEDED", result=index)
            )

    with store.db.connect() as conn:
        with statements_sent(conn) as sent:
            assert join_value(conn, flow.id, join) == list(range(PARENTS))
        ((statement, parameters),) = sent
        pages = pages_touched(explain(conn, statement, parameters))
        conn.rollback()
    assert pages <= PAGES_PER_PARENT * PARENTS, f"{pages} pages for {PARENTS} parents"


def test_submits_give_the_planner_statistics_once_the_tables_are_large(
    store: Store,
) -> None:
    small = Flow()
    small.task("a")
    store.insert_workflow(small.build(result=small["a"]))
    store.analyze_new_tables()  # what Engine.submit runs next
    # a table of a few rows stays unanalyzed: its statistics would make a
    # sequential scan look cheapest, and prepared statements keep that plan
    assert statistics_of(store, "celeriac_nodes") == 0

    flow = Flow()
    members = [flow.task(f"m{index}") for index in range(MEMBERS)]
    join = flow.join("j", *members)
    store.insert_workflow(flow.build(result=join))
    store.analyze_new_tables()
    assert statistics_of(store, "celeriac_nodes") > 0
    assert statistics_of(store, "celeriac_edges") > 0
    assert statistics_of(store, "celeriac_workflows") == 0  # two rows
    with statements_sent(store.db) as sent:
        store.analyze_new_tables()
    assert not [statement for statement, _ in sent if "ANALYZE" in statement]

    lease = Lease("w1-1", "w1", 1, datetime.now(UTC))
    with statements_sent(store.db) as sent:
        for member in members[:2]:
            store.claim_node(flow.id, member, "0.0", lease, uuid.uuid4().hex)
        store.record_success(flow.id, members[0], 1, "done")
    # the one-statement claims and success, on PostgreSQL
    (claim, claimed), _, (success, succeeded) = [
        (statement, parameters)
        for statement, parameters in sent
        if statement.startswith("WITH")
    ]

    third, second = members[2], members[1]
    with store.db.connect() as conn:
        # the third member's claim, the second one's success: both rolled back
        claim_pages = pages_touched(
            explain(conn, claim, swap(claimed, members[0], third))
        )
        conn.rollback()
        success_pages = pages_touched(
            explain(conn, success, swap(succeeded, members[0], second))
        )
        conn.rollback()
    assert claim_pages <= MAX_PAGES, f"a claim touched {claim_pages} pages"
    assert success_pages <= MAX_PAGES, f"a success touched {success_pages} pages"


def swap(parameters: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """``parameters`` with each value ``old`` replaced by ``new``."""
    return {key: new if value == old else value for key, value in parameters.items()}


def test_a_large_replacement_gives_the_planner_statistics(postgres_url: str) -> None:
    engine = Engine(make_app(), postgres_url)
    engine.migrate()
    t = engine.app.test_tasks
    members = group(t.add.s(index, 1) for index in range(REPLACED))
    try:
        with engine.embedded_worker():
            # a submit of one task: too small for statistics
            workflow = engine.submit(chain(t.replace_with.s(members), t.tsum.s()))
            total = workflow.get(timeout=120)
        assert total == sum(index + 1 for index in range(REPLACED))
        assert statistics_of(engine._store, "celeriac_nodes") > 0
    finally:
        engine.close()
