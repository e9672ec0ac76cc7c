"""The SQLAlchemy engine for a URL, and the retry policy for transient faults."""

from __future__ import annotations

import functools
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any, Concatenate, NoReturn, ParamSpec, Protocol, TypeVar

import sqlalchemy as sa
import tenacity
from sqlalchemy import event

from celeriac.errors import StorageError
from celeriac.settings import normalize_url

logger = logging.getLogger("celeriac.storage")

#: How long a transaction is tried again after a transient fault (seconds;
#: ``connect(retry_seconds=...)`` changes it), and at most how many tries.
RETRY_SECONDS = 60.0
RETRY_ATTEMPTS = 30
#: Seconds a new PostgreSQL connection may take. psycopg's default, 130 s,
#: would let one try against an unreachable host outlast the whole retry bound.
CONNECT_TIMEOUT = 10
#: The engine-level execution option that carries ``retry_seconds``.
_RETRY_SECONDS_OPTION = "celeriac_retry_seconds"

#: PostgreSQL SQLSTATEs worth another try: serialization failure, deadlock,
#: and the connection-level classes (08: connection exception, 57P: shutdown).
_TRANSIENT_SQLSTATES = ("40001", "40P01", "08", "57P01", "57P02", "57P03")

P = ParamSpec("P")
R = TypeVar("R")


class _HasDatabase(Protocol):
    """What a retried method is bound to: the Store, with its engine."""

    db: sa.Engine


S = TypeVar("S", bound=_HasDatabase)


def connect(url: str, retry_seconds: float = RETRY_SECONDS) -> sa.Engine:
    """Create the pooled SQLAlchemy engine celeriac uses for ``url``.

    ``retry_seconds`` bounds how long a ``Store`` method on this engine
    retries a transient fault before it raises ``StorageError``.
    """
    url = normalize_url(url)
    options: dict[str, Any] = {
        "execution_options": {_RETRY_SECONDS_OPTION: retry_seconds},
    }
    if url.startswith("sqlite"):
        options["connect_args"] = {"timeout": 30, "check_same_thread": False}
    else:
        options.update(pool_size=10, max_overflow=20, pool_recycle=1800)
        parsed = sa.make_url(url)
        libpq = parsed.get_driver_name() in ("psycopg", "psycopg2")
        if libpq and "connect_timeout" not in parsed.query:
            options["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
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


def checkpoint(db: sa.Engine) -> None:
    """Move SQLite's write-ahead log into the database file, and empty it.

    Then the file alone holds every committed change: a copy of it, or a
    reader without the ``-wal`` file beside it, sees them all. Nothing to do
    on other databases; a log another process still uses is left as it is.
    """
    if db.dialect.name != "sqlite":
        return
    try:
        raw = db.raw_connection()  # autocommit: no BEGIN around the pragma
        try:
            raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()
    except (sa.exc.DBAPIError, sqlite3.Error) as exc:
        logger.warning("cannot checkpoint the SQLite log: %s", first_line(exc))


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
    # A driver error without SQLSTATE is transient only while connecting: on
    # a connection that still works (SQLAlchemy did not invalidate it) the
    # driver refused the statement itself, e.g. psycopg's "number of
    # parameters must be between 0 and 65535", and would refuse it again.
    return exc.statement is None


def first_line(error: BaseException | None) -> str:
    """An error's message without SQLAlchemy's SQL and background lines."""
    return str(error).strip().partition("\n")[0]


def _operation(state: tenacity.RetryCallState) -> str:
    """The operation a log line names, such as ``Store.get_workflow``.

    Whichever part of the store (``ReadStore``, ``OutcomeStore``, ...)
    defines the method, the line names the ``Store`` users know.
    """
    qualname = str(getattr(state.fn, "__qualname__", state.fn))
    owner, _, name = qualname.rpartition(".")
    return f"Store.{name}" if owner.endswith("Store") else qualname


def _log_retry(state: tenacity.RetryCallState) -> None:
    outcome = state.outcome
    logger.warning(
        "database error in %s, try %d: %s; retrying in %.2f s",
        _operation(state),
        state.attempt_number,
        first_line(outcome.exception() if outcome is not None else None),
        state.upcoming_sleep,
    )


def _bound_reached(state: tenacity.RetryCallState) -> bool:
    """Whether the next try would start after the engine's retry bound."""
    store: _HasDatabase = state.args[0]
    options = store.db.get_execution_options()
    seconds = float(options.get(_RETRY_SECONDS_OPTION, RETRY_SECONDS))
    elapsed = state.seconds_since_start or 0.0
    return (
        state.attempt_number >= RETRY_ATTEMPTS
        or elapsed + state.upcoming_sleep >= seconds
    )


def _give_up(state: tenacity.RetryCallState) -> NoReturn:
    """The fault outlasted the retries: say which operation, keep the cause."""
    outcome = state.outcome
    error = outcome.exception() if outcome is not None else None
    raise StorageError(
        _operation(state),
        state.attempt_number,
        state.seconds_since_start or 0.0,
        first_line(error),
    ) from error


def _started_at(started: float) -> Callable[[tenacity.RetryCallState], None]:
    """A ``before`` hook: the retries' bound counts from ``started``."""

    def count_from_start(state: tenacity.RetryCallState) -> None:
        if state.attempt_number == 1:
            state.start_time = started

    return count_from_start


def retry_transient(
    fn: Callable[Concatenate[S, P], R],
) -> Callable[Concatenate[S, P], R]:
    """Run a whole transaction again when it failed for a transient reason.

    Every decorated method is one transaction, so a retry replays it from the
    start, also when its first try committed but the reply was lost. Each is
    safe to replay: it recognises its own first try and answers what that
    did (a claim by its token, an outcome by its attempt, a submit by its
    workflow id, a pause, resume, cancel or retry by its token), or its
    updates are conditional and find nothing left to do (the recovery pass
    makes up for what such a replay no longer offers). Any other error is
    raised at once, unchanged; a transient one that outlasts the bound
    becomes ``StorageError``.
    """
    policy = tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_transient),
        stop=_bound_reached,
        wait=tenacity.wait_random_exponential(multiplier=0.05, max=5),
        before_sleep=_log_retry,
        retry_error_callback=_give_up,
    )

    @functools.wraps(fn)
    def transaction(store: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        # The first try runs bare: tenacity's bookkeeping would cost more
        # than many a transaction. Its error becomes tenacity's first try.
        started = time.monotonic()
        try:
            return fn(store, *args, **kwargs)
        except Exception as error:
            if not is_transient(error):
                raise
            failed = error
        tries = iter((failed,))

        @functools.wraps(fn)
        def again(store: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
            first = next(tries, None)
            if first is not None:
                raise first
            return fn(store, *args, **kwargs)

        return policy.copy(before=_started_at(started))(again, store, *args, **kwargs)

    return transaction
