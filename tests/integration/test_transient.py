"""Transient faults, made by real servers (docs/operations.md, "Transient faults").

First which database errors count as transient, each produced for real:
PostgreSQL's serialization failure, deadlock and a terminated backend, and
SQLite's "database is locked", against errors that must surface at once.
Then the Store riding out a real fault or giving up on a stopped server, and
publishing riding out a Redis restart or leaving its nodes QUEUED.
"""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import kombu.pools
import pytest
import redis
import sqlalchemy as sa
from celery import group

from celeriac import Engine, Node, StorageError, Workflow, WorkflowState
from celeriac.engine.scheduler import PUBLISH_RETRY_SECONDS
from celeriac.storage import Store, connect
from celeriac.storage.database import CONNECT_TIMEOUT, is_transient, retry_transient
from tests.servers import Server, admin_engine, free_port
from tests.tasks import make_app

# -- which errors are transient ----------------------------------------------------


@pytest.fixture
def rows(empty_postgres_url: str) -> Iterator[sa.Engine]:
    """A PostgreSQL database with a table ``t`` of two rows, ids 1 and 2."""
    db = connect(empty_postgres_url)
    with db.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1, 0), (2, 0)")
    yield db
    db.dispose()


def raised(action: Callable[[], object]) -> sa.exc.DBAPIError:
    """The database error ``action`` raises."""
    with pytest.raises(sa.exc.DBAPIError) as caught:
        action()
    return caught.value


def test_a_serialization_failure_is_transient(rows):
    # write skew: each transaction reads both rows and writes one of them
    first, second = (
        rows.connect().execution_options(isolation_level="SERIALIZABLE")
        for _ in range(2)
    )
    with first, second:
        for conn in (first, second):
            conn.exec_driver_sql("SELECT sum(v) FROM t").scalar()
        first.exec_driver_sql("UPDATE t SET v = 1 WHERE id = 1")
        second.exec_driver_sql("UPDATE t SET v = 1 WHERE id = 2")
        first.commit()
        error = raised(second.commit)
    assert error.orig.sqlstate == "40001"
    assert is_transient(error)


def test_a_deadlock_is_transient(rows):
    errors: list[sa.exc.DBAPIError] = []

    def update(conn: sa.Connection, row: int) -> None:
        try:
            conn.exec_driver_sql(f"UPDATE t SET v = v + 1 WHERE id = {row}")
        except sa.exc.DBAPIError as exc:
            errors.append(exc)
            conn.rollback()  # releases its locks: the other one goes on

    with rows.connect() as first, rows.connect() as second:
        update(first, 1)
        update(second, 2)
        # each now waits for the row the other holds
        crossing = threading.Thread(target=update, args=(first, 2))
        crossing.start()
        update(second, 1)
        crossing.join(timeout=30)
    (error,) = errors
    assert error.orig.sqlstate == "40P01"
    assert is_transient(error)


def test_a_terminated_connection_is_transient(rows):
    with rows.connect() as victim, rows.connect() as admin:
        pid = victim.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        # the second argument waits until the backend is gone
        admin.exec_driver_sql(f"SELECT pg_terminate_backend({pid}, 10000)")
        error = raised(lambda: victim.exec_driver_sql("SELECT 1"))
    assert error.connection_invalidated
    assert is_transient(error)


def test_database_is_locked_on_sqlite_is_transient(tmp_path):
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    holder.execute("BEGIN IMMEDIATE")
    # busy_timeout 0: fail at once instead of waiting for the holder
    impatient = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})

    def begin_writing() -> None:
        with impatient.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    try:
        error = raised(begin_writing)
    finally:
        impatient.dispose()
        holder.close()
    assert "database is locked" in str(error.orig)
    assert is_transient(error)


@pytest.mark.parametrize(
    ("statement", "kind"),
    [
        ("INSERT INTO t VALUES (1, 0)", sa.exc.IntegrityError),
        ("SELEC v FROM t", sa.exc.ProgrammingError),
    ],
    ids=["unique-violation", "syntax-error"],
)
def test_a_constraint_or_syntax_error_on_postgres_is_not_transient(
    rows, statement, kind
):
    with rows.connect() as conn:
        error = raised(lambda: conn.exec_driver_sql(statement))
    assert isinstance(error, kind)
    assert not is_transient(error)


@pytest.mark.parametrize(
    ("statement", "kind"),
    [
        ("INSERT INTO t VALUES (1)", sa.exc.IntegrityError),
        # SQLite reports a syntax error as an OperationalError, like a lock
        ("SELEC id FROM t", sa.exc.OperationalError),
    ],
    ids=["unique-violation", "syntax-error"],
)
def test_a_constraint_or_syntax_error_on_sqlite_is_not_transient(
    sqlite_url, statement, kind
):
    db = connect(sqlite_url)
    try:
        with db.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        with db.connect() as conn:
            error = raised(lambda: conn.exec_driver_sql(statement))
    finally:
        db.dispose()
    assert isinstance(error, kind)
    assert not is_transient(error)


def test_a_statement_postgres_refuses_for_its_parameters_is_not_transient(rows):
    # psycopg refuses more than 65,535 parameters before sending, without a
    # SQLSTATE, on a connection that still works: trying again cannot help
    too_many = list(range(70_000))
    query = sa.text("SELECT v FROM t WHERE id IN :ids").bindparams(
        sa.bindparam("ids", expanding=True)
    )
    with rows.connect() as conn:
        error = raised(lambda: conn.execute(query, {"ids": too_many}))
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 2
    assert "number of parameters" in str(error.orig)
    assert not error.connection_invalidated
    assert not is_transient(error)


def test_a_store_call_refused_by_the_server_raises_at_once(rows, caplog):
    class Refused:
        def __init__(self, db: sa.Engine) -> None:
            self.db = db
            self.calls = 0

        @retry_transient
        def read(self) -> None:
            self.calls += 1
            query = sa.text("SELECT v FROM t WHERE id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            )
            with self.db.connect() as conn:
                conn.execute(query, {"ids": list(range(70_000))})

    refused = Refused(rows)
    with (
        caplog.at_level(logging.WARNING, "celeriac.storage"),
        pytest.raises(sa.exc.OperationalError),
    ):
        refused.read()
    assert refused.calls == 1
    assert not retries_logged(caplog, "celeriac.storage")


# -- the Store through real faults ---------------------------------------------------


def retries_logged(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == logger and "retrying" in r.getMessage()
    ]


def test_a_store_read_is_retried_through_a_terminated_connection(postgres_url, caplog):
    app = make_app()
    engine = Engine(app, postgres_url)
    try:
        submitted = engine.submit(app.test_tasks.add.s(1, 2), name="survivor")
        admin = admin_engine(postgres_url)
        try:
            with admin.connect() as conn:
                # every connection in the engine's pool, dead without its knowing
                terminated = conn.exec_driver_sql(
                    "SELECT count(pg_terminate_backend(pid, 10000))"
                    " FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).scalar()
        finally:
            admin.dispose()
        assert terminated >= 1
        with caplog.at_level(logging.WARNING, "celeriac.storage"):
            found = engine.workflow(submitted.id)
        assert (found.id, found.name) == (submitted.id, "survivor")
        assert found.state == WorkflowState.IN_PROGRESS
        (retry,) = retries_logged(caplog, "celeriac.storage")
        assert retry.startswith("database error in Store.get_workflow, try 1: ")
    finally:
        engine.close()


def test_a_store_call_raises_storage_error_when_postgres_stays_down(
    postgres_server: Server, postgres_url, caplog
):
    db = connect(postgres_url, retry_seconds=2.0)
    store = Store(db)
    postgres_server.stop()
    try:
        started = time.monotonic()
        with (
            caplog.at_level(logging.WARNING, "celeriac.storage"),
            pytest.raises(StorageError) as caught,
        ):
            store.workflow_state("any")
        elapsed = time.monotonic() - started
    finally:
        postgres_server.start()
        db.dispose()
    error = caught.value
    # refused connections fail fast: the bound is what ends it, before the
    # wait that would cross it
    assert elapsed < 2.0 + 1.0
    assert error.operation == "Store.workflow_state"
    assert "Store.workflow_state" in str(error)
    assert isinstance(error.__cause__, sa.exc.OperationalError)
    assert is_transient(error.__cause__)
    assert error.attempts == len(retries_logged(caplog, "celeriac.storage")) + 1 > 1


@pytest.mark.timeout(30)  # with the default bound it would take 60 s
def test_the_engine_option_retry_seconds_bounds_the_retries(app):
    # nothing listens on port 1: every try is refused at once
    unreachable = "postgresql+psycopg://u:p@127.0.0.1:1/x"
    engine = Engine(app, unreachable, retry_seconds=1.0)
    try:
        with pytest.raises(StorageError) as caught:
            engine.workflow("any")
    finally:
        engine.close()
    assert caught.value.operation == "Store.get_workflow"
    assert caught.value.attempts > 1
    assert caught.value.seconds < 1.0 + 1.0


@pytest.mark.slow
def test_a_connection_to_a_server_that_never_answers_gives_up_in_time():
    # a listener that accepts nothing: the connection hangs as on a black hole
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        db = connect(f"postgresql+psycopg://x@127.0.0.1:{port}/x", retry_seconds=1.0)
        started = time.monotonic()
        try:
            with pytest.raises(StorageError) as caught:
                Store(db).workflow_state("any")
        finally:
            db.dispose()
    elapsed = time.monotonic() - started
    # one try, cut short by connect_timeout (psycopg alone would wait 130 s)
    assert caught.value.attempts == 1
    assert CONNECT_TIMEOUT - 1 < elapsed < CONNECT_TIMEOUT + 5


# -- publishing through a broker outage ----------------------------------------------


@pytest.fixture
def broker(redis_url: str) -> Iterator[str]:
    """The test's Redis URL, with no pooled broker connection from before.

    kombu pools broker connections per URL for the whole process: a test
    starts with none, and leaves none behind that a restart made stale.
    """
    kombu.pools.reset()
    yield redis_url
    kombu.pools.reset()


def queued_ids(url: str, queue: str) -> list[str]:
    """The task ids of the messages waiting in a Redis queue, oldest first."""
    client = redis.Redis.from_url(url)
    try:
        raw = client.lrange(queue, 0, -1)
    finally:
        client.close()
    return [json.loads(message)["headers"]["id"] for message in reversed(raw)]


def adds(engine: Engine, count: int) -> tuple[Any, list[int]]:
    tasks = engine.app.test_tasks
    return group(tasks.add.s(i, i) for i in range(count)), [2 * i for i in range(count)]


def task_nodes(workflow: Workflow) -> list[Node]:
    return [node for node in workflow.nodes() if node.task == "t.add"]


def node_ids(workflow: Workflow) -> list[str]:
    return sorted(node.id for node in task_nodes(workflow))


def gave_up(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What publish logged when it left nodes QUEUED."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "celeriac.scheduler" and "stay QUEUED" in r.getMessage()
    ]


def test_publishing_rides_out_a_redis_restart(
    redis_server: Server, broker, sqlite_url, caplog
):
    engine = Engine(make_app(broker=broker), sqlite_url)
    canvas, expected = adds(engine, 5)
    try:
        redis_server.stop()
        back = threading.Timer(1.0, redis_server.start)
        back.start()
        with caplog.at_level(logging.WARNING, "celeriac.scheduler"):
            workflow = engine.submit(canvas)
        back.join()
        queue = engine.app.conf.task_default_queue
        assert sorted(queued_ids(broker, queue)) == node_ids(workflow)
        assert not gave_up(caplog)
        retries = retries_logged(caplog, "celeriac.scheduler")
        assert retries, "Redis came back before the publish tried"
        assert retries[0].startswith("broker error publishing 5 nodes, try 1: ")
        with engine.embedded_worker():
            assert workflow.get(timeout=30) == expected
    finally:
        engine.close()


def test_publishing_gives_up_in_time_and_the_nodes_stay_queued(
    redis_server: Server, broker, sqlite_url, caplog
):
    engine = Engine(make_app(broker=broker), sqlite_url, recovery_delay=0)
    add = engine.app.test_tasks.add
    # a node's own publish retry options change nothing: with Celery's, this
    # one would retry forever
    forever = {"retry": True, "retry_policy": {"max_retries": None}}
    canvas = group(add.s(0, 0), add.s(1, 1).set(**forever), add.s(2, 2))
    try:
        redis_server.stop()
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, "celeriac.scheduler"):
            workflow = engine.submit(canvas)
        elapsed = time.monotonic() - started
        # it kept trying until (but not past) the bound
        assert PUBLISH_RETRY_SECONDS - 1.5 < elapsed < PUBLISH_RETRY_SECONDS + 1.5
        assert len(retries_logged(caplog, "celeriac.scheduler")) >= 2
        (last_word,) = gave_up(caplog)
        assert "3 nodes stay QUEUED" in last_word
        assert workflow.state == WorkflowState.IN_PROGRESS
        assert [node.state for node in task_nodes(workflow)] == ["QUEUED"] * 3

        redis_server.start()
        assert engine.recover().sent == 3
        queue = engine.app.conf.task_default_queue
        assert sorted(queued_ids(broker, queue)) == node_ids(workflow)
    finally:
        redis_server.ensure_running()
        engine.close()


def test_publishing_moves_on_to_the_next_failover_broker(broker, sqlite_url, caplog):
    # Celery's own publish retry would switch URLs; the one replacing it must too
    dead = f"redis://127.0.0.1:{free_port()}/0"
    engine = Engine(make_app(broker=f"{dead};{broker}"), sqlite_url)
    canvas, _ = adds(engine, 2)
    try:
        with caplog.at_level(logging.WARNING, "celeriac.scheduler"):
            workflow = engine.submit(canvas)
        (retry,) = retries_logged(caplog, "celeriac.scheduler")
        assert retry.startswith("broker error publishing 2 nodes, try 1: ")
        queue = engine.app.conf.task_default_queue
        assert sorted(queued_ids(broker, queue)) == node_ids(workflow)
    finally:
        engine.close()
