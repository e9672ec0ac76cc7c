"""A new database, before PostgreSQL has any statistics for celeriac's tables.

Until autovacuum first analyzes them (at least a minute, never with it off),
the planner guesses every table holds a few rows, and a join of two tables
may scan all of a workflow's nodes once per row of the other. A chord's
join gathers its parents' results: it must read a few pages per parent,
not a number that grows with the chord.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from celeriac.storage import Store, connect
from celeriac.storage.releases import join_value
from celeriac.storage.schema import nodes
from tests.integration.test_store import Flow

pytestmark = pytest.mark.postgres

PARENTS = 2_000
#: Pages one parent's result may cost: a look-up of its key in an index.
PAGES_PER_PARENT = 10


@pytest.fixture
def store(postgres_url: str) -> Iterator[Store]:
    db = connect(postgres_url)
    yield Store(db)
    db.dispose()


def pages_read(conn: sa.Connection, statement: str, parameters: Any) -> int:
    """The pages PostgreSQL touched running ``statement`` (rolled back)."""
    explained = conn.exec_driver_sql(
        f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {statement}", parameters
    ).scalar_one()
    document = explained if isinstance(explained, list) else json.loads(explained)
    plan = document[0]["Plan"]
    return int(plan["Shared Hit Blocks"]) + int(plan["Shared Read Blocks"])


def test_a_join_reads_its_parents_by_key_before_any_statistics(store: Store) -> None:
    flow = Flow()
    parents = [flow.task(f"p{index}") for index in range(PARENTS)]
    join = flow.join("j", *parents)
    store.insert_workflow(flow.build(result=join))
    with store.db.begin() as conn:
        never_analyzed = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_stats WHERE tablename = 'celeriac_nodes'"
        ).scalar_one()
        assert never_analyzed == 0  # the planner has no statistics yet
        for index, parent in enumerate(parents):
            conn.execute(
                sa.update(nodes)
                .where(nodes.c.workflow_id == flow.id, nodes.c.id == parent)
                .values(state="SUCCEEDED", result=index)
            )

    sent: list[tuple[str, Any]] = []

    def record(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any
    ) -> None:
        sent.append((statement, parameters))

    with store.db.connect() as conn:
        sa.event.listen(conn, "before_cursor_execute", record)
        assert join_value(conn, flow.id, join) == list(range(PARENTS))
        sa.event.remove(conn, "before_cursor_execute", record)
        ((statement, parameters),) = sent
        pages = pages_read(conn, statement, parameters)
        conn.rollback()
    assert pages <= PAGES_PER_PARENT * PARENTS, f"{pages} pages for {PARENTS} parents"
