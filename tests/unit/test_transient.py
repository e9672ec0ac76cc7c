"""The two retry policies on their own: a Store-like method, and a publish.

The database errors are built here, as SQLAlchemy wraps them; the broker is
kombu's in-memory transport. Errors produced by real servers, the real Store
and a real Redis are in tests/integration/test_transient.py.
"""

from __future__ import annotations

import logging
import pickle
import sqlite3
import time

import pytest
import sqlalchemy as sa
from celery import Celery

from celeriac import StorageError
from celeriac.engine import scheduler
from celeriac.records import Dispatch
from celeriac.storage.database import (
    RETRY_SECONDS,
    connect,
    is_transient,
    retry_transient,
)
from tests.tasks import make_app


@pytest.fixture
def db() -> sa.Engine:
    """An engine that never connects: the retry only reads its bound."""
    return connect("sqlite://", retry_seconds=0.5)


@pytest.fixture
def locked() -> sa.exc.OperationalError:
    return sa.exc.OperationalError(
        "INSERT", None, sqlite3.OperationalError("database is locked")
    )


@pytest.fixture
def duplicate() -> sa.exc.IntegrityError:
    return sa.exc.IntegrityError(
        "INSERT", None, sqlite3.IntegrityError("UNIQUE constraint failed: t.id")
    )


class Flaky:
    """A stand-in for Store: one method that fails with the errors it is given."""

    def __init__(self, db: sa.Engine, errors: list[Exception]) -> None:
        self.db = db
        self.errors = errors
        self.calls = 0

    @retry_transient
    def read(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "read"


def test_a_transient_error_is_retried_with_a_log_line_per_retry(db, locked, caplog):
    flaky = Flaky(db, [locked, locked])
    with caplog.at_level(logging.WARNING, "celeriac.storage"):
        assert flaky.read() == "read"
    assert flaky.calls == 3
    retries = [r.getMessage() for r in caplog.records]
    assert len(retries) == 2
    assert retries[0].startswith("database error in Flaky.read, try 1: ")
    assert "database is locked" in retries[0]


def test_a_transient_error_that_persists_raises_storage_error_with_the_cause(
    db, locked
):
    flaky = Flaky(db, [locked] * 1000)
    started = time.monotonic()
    with pytest.raises(StorageError) as caught:
        flaky.read()
    assert time.monotonic() - started < 0.5 + 0.2
    error = caught.value
    assert error.__cause__ is locked
    assert error.operation == "Flaky.read"
    assert error.attempts == flaky.calls > 1
    assert str(error).startswith("the database kept failing in Flaky.read: ")
    assert "database is locked" in str(error)


def test_storage_error_survives_pickling_between_pool_processes(db, locked):
    with pytest.raises(StorageError) as caught:
        Flaky(db, [locked] * 1000).read()
    copy = pickle.loads(pickle.dumps(caught.value))
    assert type(copy) is StorageError
    assert str(copy) == str(caught.value)
    assert (copy.operation, copy.attempts) == ("Flaky.read", caught.value.attempts)


def test_any_other_error_is_raised_at_once_unchanged(db, duplicate, caplog):
    flaky = Flaky(db, [duplicate])
    with (
        caplog.at_level(logging.WARNING, "celeriac.storage"),
        pytest.raises(sa.exc.IntegrityError) as caught,
    ):
        flaky.read()
    assert caught.value is duplicate
    assert flaky.calls == 1
    assert not caplog.records


class DriverError(Exception):
    """A driver's error without a SQLSTATE (psycopg's client-side errors)."""


def test_a_driver_error_without_sqlstate_is_transient_only_while_connecting():
    connecting = sa.exc.OperationalError(None, None, DriverError("connection refused"))
    refused = sa.exc.OperationalError(
        "SELECT", None, DriverError("number of parameters must be between 0 and 65535")
    )
    broken = sa.exc.OperationalError(
        "SELECT",
        None,
        DriverError("server closed the connection"),
        connection_invalidated=True,
    )
    assert is_transient(connecting)
    assert not is_transient(refused)
    assert is_transient(broken)


def test_the_default_bound_is_a_minute():
    # what docs/operations.md promises, read where the retry reads it
    default = connect("sqlite://")
    assert default.get_execution_options()["celeriac_retry_seconds"] == 60
    assert RETRY_SECONDS == 60


def dispatch(
    app: Celery, node_id: str, inputs: tuple[object, ...] = (), **options: object
) -> Dispatch:
    signature = dict(app.signature("t.identity", options=options))
    return Dispatch(node_id, "w1", signature, inputs, 0, "task")


def test_a_message_celery_refuses_is_not_retried_and_the_rest_are_sent(caplog):
    app = make_app()
    batch = [
        dispatch(app, "bad-countdown", countdown="soon"),
        dispatch(app, "good", ("ok",)),
        dispatch(app, "bad-value", ({1, 2},)),  # JSON has no sets
    ]
    with caplog.at_level(logging.WARNING, "celeriac.scheduler"):
        published = scheduler.publish(app, batch)
    assert [(d.node_id, type(exc).__name__) for d, exc in published.refused] == [
        ("bad-countdown", "TypeError"),
        ("bad-value", "EncodeError"),
    ]
    assert published.unsent == 0
    assert not caplog.records  # no retry, and nothing left QUEUED
    queue_name = app.conf.task_default_queue
    with app.connection_for_read() as conn, conn.SimpleQueue(queue_name) as queue:
        message = queue.get(timeout=1)
        assert message.headers["id"] == "good"
        assert queue.qsize() == 0
