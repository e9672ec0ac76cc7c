"""Fault injection into a real database connection: a COMMIT whose reply is lost.

A COMMIT, or a statement that commits on its own (autocommit): both
commit on the server before the client hears back.
"""

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
    execute = db.dialect.do_execute

    def lose_reply(driver_connection: Any) -> None:
        inside = method in {frame.name for frame in traceback.extract_stack()}
        if inside and first(method):
            driver_connection.close()
            raise psycopg.OperationalError("server closed the connection unexpectedly")

    def do_commit(dbapi_connection: Any) -> None:
        commit(dbapi_connection)
        # the driver's connection, not the pool's proxy around it
        lose_reply(dbapi_connection.driver_connection)

    def do_execute(cursor: Any, statement: str, parameters: Any, context: Any) -> None:
        execute(cursor, statement, parameters, context)
        if cursor.connection.autocommit:  # the statement committed on its own
            lose_reply(cursor.connection)

    db.dialect.do_commit = do_commit  # type: ignore[method-assign]
    db.dialect.do_execute = do_execute  # type: ignore[method-assign]
