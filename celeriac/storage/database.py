"""The SQLAlchemy engine for a URL, and the retry policy for transient faults."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import sqlalchemy as sa
import tenacity
from kombu.utils.json import dumps, loads
from sqlalchemy import event

logger = logging.getLogger("celeriac.storage")

#: PostgreSQL SQLSTATEs worth another try: serialization failure, deadlock,
#: and the connection-level classes (08: connection exception, 57P: shutdown).
_TRANSIENT_SQLSTATES = ("40001", "40P01", "08", "57P01", "57P02", "57P03")

P = ParamSpec("P")
R = TypeVar("R")


def normalize_url(url: str) -> str:
    """Use psycopg 3 for bare ``postgresql://`` URLs (SQLAlchemy picks psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def connect(url: str) -> sa.Engine:
    """Create the pooled SQLAlchemy engine celeriac uses for ``url``."""
    url = normalize_url(url)
    options: dict[str, Any] = {
        "json_serializer": dumps,
        "json_deserializer": loads,
    }
    if url.startswith("sqlite"):
        options["connect_args"] = {"timeout": 30, "check_same_thread": False}
    else:
        options.update(pool_size=10, max_overflow=20, pool_recycle=1800)
    db = sa.create_engine(url, **options)
    if db.dialect.name == "sqlite":
        _configure_sqlite(db)
    return db


def _configure_sqlite(db: sa.Engine) -> None:
    """WAL and a busy timeout let worker threads and callers share one file.

    pysqlite's own transaction handling is turned off so that a write
    transaction starts with ``BEGIN IMMEDIATE``: it takes the write lock at
    once instead of failing with "database is locked" on its first write.
    Reads start with a plain ``BEGIN`` and never wait for writers.
    """

    @event.listens_for(db, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(db, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        read_only = conn.get_execution_options().get("celeriac_read_only", False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def is_transient(exc: BaseException) -> bool:
    """Whether a database error may go away if the transaction is tried again."""
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate is not None:  # PostgreSQL says exactly what went wrong
        return str(sqlstate).startswith(_TRANSIENT_SQLSTATES)
    if not isinstance(exc, sa.exc.OperationalError):
        return False
    if type(exc.orig).__module__.startswith("sqlite3"):
        message = str(exc.orig).lower()
        return "locked" in message or "busy" in message
    return True  # a driver error without SQLSTATE: the connection failed


def _log_retry(state: tenacity.RetryCallState) -> None:
    outcome = state.outcome
    error = outcome.exception() if outcome is not None else None
    logger.warning(
        "database error in %s, try %d: %s; retrying",
        getattr(state.fn, "__qualname__", state.fn),
        state.attempt_number,
        error,
    )


def retry_transient(fn: Callable[P, R]) -> Callable[P, R]:
    """Run a whole transaction again when it failed for a transient reason.

    Every decorated method is one transaction, so a retry replays it from the
    start; each is written to be safe to replay (conditional updates).
    """
    retrying = tenacity.retry(
        retry=tenacity.retry_if_exception(is_transient),
        stop=tenacity.stop_after_delay(60) | tenacity.stop_after_attempt(30),
        wait=tenacity.wait_random_exponential(multiplier=0.05, max=5),
        before_sleep=_log_retry,
        reraise=True,
    )
    return retrying(fn)
