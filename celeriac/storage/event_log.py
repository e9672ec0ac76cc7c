"""A transaction's event rows: kept as they come, inserted before it commits.

Every function takes the open connection of the caller's transaction and
never commits.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from celeriac.storage.batches import CHUNK
from celeriac.storage.schema import events

_INSERT_EVENT = events.insert()

#: Where a transaction keeps its event rows until ``write_events`` inserts
#: them all in one statement, just before it commits.
_PENDING_EVENTS = "celeriac_pending_events"


def start_events(conn: sa.Connection) -> None:
    """A transaction begins: no event of an earlier one is pending."""
    conn.info[_PENDING_EVENTS] = []


def add_event(
    conn: sa.Connection,
    workflow_id: str,
    node_id: str | None,
    from_state: str | None,
    to_state: str,
    at: datetime,
    detail: str | None = None,
) -> None:
    """Record a state change of a workflow or a node, with the transaction.

    The rows wait for ``write_events``, at most ``CHUNK`` of them: a
    transaction that moves more (the roots of a group of a million) writes
    them as they come, in chunks.
    """
    pending = conn.info[_PENDING_EVENTS]
    pending.append(
        {
            "workflow_id": workflow_id,
            "node_id": node_id,
            "from_state": from_state,
            "to_state": to_state,
            "at": at,
            "detail": detail,
        }
    )
    if len(pending) >= CHUNK:
        flush_events(conn)


def write_events(conn: sa.Connection) -> None:
    """Insert the transaction's events, in the order they happened."""
    pending = conn.info.pop(_PENDING_EVENTS, None)
    if pending:
        if conn.dialect.name == "sqlite":
            for number, row in enumerate(pending, _last_event(conn) + 1):
                row["id"] = number
        # one row as a plain execute: executemany costs more for a single row
        conn.execute(_INSERT_EVENT, pending[0] if len(pending) == 1 else pending)


#: The newest event's number. SQLite has no sequence for a key of two
#: columns: events are numbered from it there, which is safe because SQLite
#: writers take turns (``BEGIN IMMEDIATE``); PostgreSQL's come from a SERIAL.
LAST_EVENT = sa.select(sa.func.coalesce(sa.func.max(events.c.id), 0))


def _last_event(conn: sa.Connection) -> int:
    return int(conn.execute(LAST_EVENT).scalar_one())


def flush_events(conn: sa.Connection) -> None:
    """Insert the events pending so far; the transaction goes on adding more."""
    write_events(conn)
    start_events(conn)
