"""The planner's first statistics, on a new PostgreSQL database.

Until a table has been analyzed, PostgreSQL's planner takes it for a table
of a few rows, where every index looks as good as another: a look-up of one
node by its key may then scan all of its workflow's nodes (through the index
on workflow and state) or every queued node of every workflow, for each node
run. Autovacuum first analyzes a table a minute or more after it fills, and
never when it is off. So the first workflow stored into tables never
analyzed analyzes them: its own rows are statistics enough (each node id is
unique; a workflow has many nodes).

Only the tables a submit fills are analyzed: a table analyzed while empty
would be planned as staying empty (sequential scans) until analyzed again.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

from celeriac.storage.schema import edges, nodes, workflows

logger = logging.getLogger("celeriac.storage")

#: The tables a submit fills, in the order they are analyzed.
SUBMITTED = (workflows.name, nodes.name, edges.name)

#: Those of ``SUBMITTED`` never analyzed (nor vacuumed): ``reltuples`` is -1
#: from PostgreSQL 14 on.
_NEVER_ANALYZED = sa.text(
    "SELECT relname FROM pg_class"
    " WHERE relname IN :names AND relkind = 'r' AND reltuples < 0"
    " AND pg_table_is_visible(oid)"
).bindparams(sa.bindparam("names", expanding=True))


def analyze_new_tables(conn: sa.Connection) -> list[str]:
    """Analyze those of the submitted tables never analyzed; their names.

    A role that does not own a table is skipped by PostgreSQL with a
    warning in the server's log: the planner keeps guessing until
    autovacuum analyzes it.
    """
    if conn.dialect.name != "postgresql":
        return []
    found = set(conn.execute(_NEVER_ANALYZED, {"names": SUBMITTED}).scalars())
    analyzed = [name for name in SUBMITTED if name in found]
    for name in analyzed:
        conn.exec_driver_sql(f'ANALYZE "{name}"')
    if analyzed:
        logger.info("analyzed the new tables %s", ", ".join(analyzed))
    return analyzed
