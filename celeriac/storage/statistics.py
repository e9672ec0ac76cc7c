"""The planner's first statistics, on a new PostgreSQL database.

Until a table has been analyzed, PostgreSQL's planner takes it for a table
of at least ten pages (8 kB each) of rows it knows nothing about, where
every index looks as good as another: a look-up of one node by its key may
then scan all of its workflow's nodes (through the index on workflow and
state), once for each node run. Autovacuum first analyzes a table a minute
or more after it fills, and never when it is off. So a submit, or a task's
replacement, analyzes each table they fill that was never analyzed, once
it holds ten pages.

Not before: statistics of a smaller table make a sequential scan look
cheapest, and a statement a connection prepared then keeps that plan until
the table is analyzed or vacuumed again, however large it grows. From ten
pages on, a look-up by key is the cheaper plan, the more so as the table
grows.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

import sqlalchemy as sa

from celeriac.storage.schema import edges, nodes, workflows

logger = logging.getLogger("celeriac.storage")

#: The tables a submit or a replacement fills, in the order they are analyzed.
SUBMITTED = (workflows.name, nodes.name, edges.name)
#: The size from which a table is analyzed: the planner's own guess for a
#: table never analyzed.
MIN_PAGES = 10

#: Each of the tables: whether it was ever analyzed (or vacuumed: from
#: PostgreSQL 14 on, ``reltuples`` is -1 until then), and its size in pages.
_TABLES = sa.text(
    "SELECT relname, reltuples >= 0 AS analyzed,"
    " pg_relation_size(oid) / current_setting('block_size')::int AS pages"
    " FROM pg_class WHERE relname IN :names AND relkind = 'r'"
    " AND pg_table_is_visible(oid)"
).bindparams(sa.bindparam("names", expanding=True))


def analyze_new_tables(conn: sa.Connection, tables: Collection[str]) -> set[str]:
    """Analyze those of ``tables`` never analyzed that are large enough.

    Returns the tables that have statistics now or never need this again:
    those analyzed before, and those analyzed here. A role that does not
    own a table is skipped by PostgreSQL with a warning in the server's
    log: asking once is enough.
    """
    if conn.dialect.name != "postgresql":
        return set(tables)
    rows = conn.execute(_TABLES, {"names": sorted(tables)}).all()
    settled = {row.relname for row in rows if row.analyzed}
    ready = {row.relname for row in rows if not row.analyzed and row.pages >= MIN_PAGES}
    for name in (name for name in SUBMITTED if name in ready):
        conn.exec_driver_sql(f'ANALYZE "{name}"')
        logger.info("analyzed the new table %s", name)
    return settled | ready
