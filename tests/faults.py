"""Fault injection into a real database connection: a COMMIT whose reply is lost."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

import psycopg
import sqlalchemy as sa


def lose_commit_reply(db: sa.Engine, method: str, first: Callable[[str], bool]) -> None:
    """A COMMIT made inside Store.``method`` loses its reply, when ``first(method)``.

    The transaction commits, then the connection breaks before the client
    hears so: what a database or network failure at that moment does. The
    client cannot tell whether it committed, and its retry replays the
    transaction. ``first`` says whether this is the commit to break (and
    records that it was), so a test breaks exactly one.
    """
    commit = db.dialect.do_commit

    def do_commit(dbapi_connection: Any) -> None:
        commit(dbapi_connection)
        inside = method in {frame.name for frame in traceback.extract_stack()}
        if inside and first(method):
            # the driver's connection, not the pool's proxy around it
            dbapi_connection.driver_connection.close()
            raise psycopg.OperationalError("server closed the connection unexpectedly")

    db.dialect.do_commit = do_commit  # type: ignore[method-assign]
