"""Every node state change a test's database records is an edge of the table.

The database fixtures call :func:`check_node_events` when a test ends, before
the database goes: one query per test, whatever the engine did in it.
"""

from __future__ import annotations

import sqlalchemy as sa

from celeriac.states import NODE_TRANSITIONS
from celeriac.storage.schema import events, nodes

#: Every allowed (from state, to state, node kind).
ALLOWED = frozenset(
    (source, edge.dest, kind)
    for edge in NODE_TRANSITIONS
    for source in edge.source
    for kind in edge.kinds
)


def recorded_changes(db: sa.Engine) -> set[tuple[str | None, str, str]]:
    """Each distinct (from, to, kind) of the node events stored in ``db``.

    Empty when there is nothing to read: no schema, or a file a test made
    that is not a database.
    """
    query = (
        sa.select(events.c.from_state, events.c.to_state, nodes.c.kind)
        .select_from(events.join(nodes, nodes.c.id == events.c.node_id))
        .distinct()
    )
    try:
        if not sa.inspect(db).has_table(events.name):
            return set()
        with db.connect() as conn:
            return {(row[0], row[1], row[2]) for row in conn.execute(query)}
    except sa.exc.DatabaseError:
        return set()


def check_node_events(url: str) -> None:
    """Fail if a node event in the database at ``url`` is no edge of the table."""
    db = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        unknown = recorded_changes(db) - ALLOWED
    finally:
        db.dispose()
    assert not unknown, (
        "node state changes that are not edges of NODE_TRANSITIONS "
        f"(from, to, kind): {sorted(unknown, key=str)}"
    )
