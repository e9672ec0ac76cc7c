"""Idempotent submit: one workflow per key, racing submits included.

A web handler that retries its request submits the same canvas with the same
key again: it must get the workflow stored the first time, and a key reused
for another canvas is refused. On SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from celery import chain

from celeriac import Engine, SubmitKeyReused, Workflow
from celeriac.storage.schema import nodes, workflows
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
THREADS = 8
TIMEOUT = 20.0


def count(engine: Engine, table: sa.Table) -> int:
    with engine._db.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar())


def test_eight_threads_submitting_one_key_store_one_workflow(engine, tasks, worker):
    start = threading.Barrier(THREADS)
    submitted: list[Workflow] = []
    errors: list[BaseException] = []

    def submit() -> None:
        start.wait()
        try:
            canvas = chain(tasks.add.s(1, 2), tasks.add.s(3))
            submitted.append(engine.submit(canvas, name="order", key="order-1234"))
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len({workflow.id for workflow in submitted}) == 1
    assert count(engine, workflows) == 1
    assert submitted[0].get(timeout=TIMEOUT) == 6
    # the canvas ran once
    assert [args for name, args in tasks.ran] == [(1, 2), (3, 3)]


def test_a_second_submit_of_a_key_returns_the_stored_workflow(engine, tasks):
    first = engine.submit(tasks.add.s(1, 2), name="first", key="k-1")
    again = engine.submit(tasks.add.s(1, 2), name="renamed", key="k-1")
    other = engine.submit(tasks.add.s(1, 2), key="k-2")
    assert (again.id, again.name) == (first.id, "first")
    assert other.id != first.id
    assert count(engine, workflows) == 2
    (record,) = engine.list_workflows(key="k-1")
    assert (record.id, record.key) == (first.id, "k-1")


@pytest.mark.parametrize(
    "change",
    [
        lambda t: (t.add.s(1, 3), (), None),
        lambda t: (t.mul.s(1, 2), (), None),
        lambda t: (t.add.s(1), (2,), None),
        lambda t: (t.add.s(1, 2), (), {"extra": 1}),
    ],
    ids=["arguments", "task", "args", "kwargs"],
)
def test_a_key_reused_with_another_canvas_is_refused_and_stores_nothing(
    engine, tasks, change
):
    first = engine.submit(tasks.add.s(1, 2), key="order-1")
    stored_nodes = count(engine, nodes)
    canvas, args, kwargs = change(tasks)
    with pytest.raises(SubmitKeyReused) as caught:
        engine.submit(canvas, args, kwargs, key="order-1")
    assert (caught.value.key, caught.value.workflow_id) == ("order-1", first.id)
    assert isinstance(caught.value, ValueError)
    assert str(caught.value) == (
        f"submit key 'order-1' is already used by workflow {first.id}, "
        "with another canvas or other arguments"
    )
    assert (count(engine, workflows), count(engine, nodes)) == (1, stored_nodes)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "key must be a non-empty string without NUL, not ''"),
        ("a\x00b", "key must be a non-empty string without NUL, not 'a\\x00b'"),
        (42, "key must be a non-empty string without NUL, not 42"),
        ("k" * 256, "key is 256 characters long; at most 255"),
    ],
)
def test_a_bad_key_is_refused_before_anything_is_stored(engine, tasks, key, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        engine.submit(tasks.add.s(1, 2), key=key)
    assert count(engine, workflows) == 0


def celeriac(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "celeriac.cli", "--database-url", url, *args],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},  # wide: no cell wraps
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_cli_shows_and_filters_by_key(app, tasks, sqlite_url):
    engine = Engine(app, sqlite_url)
    try:
        keyed = engine.submit(tasks.add.s(1, 2), name="order", key="order-77")
        engine.submit(tasks.add.s(1, 2), name="order")
    finally:
        engine.close()

    listed = celeriac(sqlite_url, "list", "--key", "order-77", "--json")
    assert listed.returncode == 0, listed.stderr
    (document,) = json.loads(listed.stdout)
    assert (document["id"], document["key"]) == (keyed.id, "order-77")

    table = celeriac(sqlite_url, "list", "--key", "order-77")
    assert table.returncode == 0, table.stderr
    assert "order (key order-77)" in table.stdout

    shown = celeriac(sqlite_url, "show", keyed.id)
    assert shown.returncode == 0, shown.stderr
    assert "key       order-77" in shown.stdout.splitlines()
    shown_json: dict[str, Any] = json.loads(
        celeriac(sqlite_url, "show", keyed.id, "--json").stdout
    )
    assert shown_json["key"] == "order-77"


@pytest.mark.postgres
def test_a_submit_that_loses_the_race_for_its_key_returns_the_winner(
    app, tasks, postgres_url
):
    """The loser's INSERT waits for the winner's key, then finds it committed."""
    engine = Engine(app, postgres_url)
    engine.migrate()
    winner_stored, go_on = threading.Event(), threading.Event()
    commit = engine._db.dialect.do_commit

    def do_commit(dbapi_connection: Any) -> None:
        # the winner's first commit (its submit) waits until the loser waits
        if threading.current_thread().name == "winner" and not winner_stored.is_set():
            winner_stored.set()
            go_on.wait(30)
        commit(dbapi_connection)

    engine._db.dialect.do_commit = do_commit  # type: ignore[method-assign]
    submitted: dict[str, Workflow] = {}

    def submit() -> None:
        name = threading.current_thread().name
        submitted[name] = engine.submit(tasks.add.s(1, 2), name=name, key="race")

    def loser_waits_for_a_lock() -> bool:
        with engine._db.connect() as conn:
            waiting = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database()"
            ).scalar()
        return bool(waiting)

    try:
        winner = threading.Thread(target=submit, name="winner")
        winner.start()
        assert winner_stored.wait(10)
        loser = threading.Thread(target=submit, name="loser")
        loser.start()
        wait_for(loser_waits_for_a_lock, timeout=10, what="the loser's INSERT to wait")
        go_on.set()
        winner.join(30)
        loser.join(30)
        assert submitted["loser"].id == submitted["winner"].id
        assert submitted["loser"].name == "winner"
        assert count(engine, workflows) == 1
    finally:
        go_on.set()
        engine.close()
