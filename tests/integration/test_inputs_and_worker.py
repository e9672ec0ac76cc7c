"""Input checked at the door, and the embedded worker whatever came before it.

On SQLite and PostgreSQL: a refused submit raises ``InvalidCanvas`` naming
what was wrong and stores nothing, the same on both (PostgreSQL would
otherwise refuse a long name with a driver error, SQLite keep it).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import pytest
from celery import Celery, chain, group
from celery.worker import state as worker_state

from celeriac import Engine, InvalidCanvas, WorkflowState
from celeriac.engine.quiet import CONTROL_LOGGER
from tests.tasks import make_app, register_tasks


@pytest.mark.parametrize(
    ("canvas", "options", "words"),
    [
        ({"task": "t.add"}, {}, "a dict canvas must be a signature's dict"),
        ([1, 2], {}, "got list"),
        (None, {"name": 123}, "name must be a string, not int"),
        (None, {"name": "n" * 256}, "name is 256 characters long; at most 255"),
        (None, {"name": "a\x00b"}, "name holds a NUL character"),
        (
            None,
            {"metadata": [1, 2]},
            "metadata must be a JSON object (a dict), not list",
        ),
        (None, {"metadata": "x"}, "not str"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_stored(
    engine, tasks, canvas, options, words
):
    with pytest.raises(InvalidCanvas) as refused:
        engine.submit(tasks.add.s(1, 1) if canvas is None else canvas, **options)
    assert isinstance(refused.value, ValueError)
    assert words in str(refused.value)
    assert engine.list_workflows() == []


def test_a_name_of_255_characters_and_a_signatures_dict_are_kept(engine, tasks, worker):
    workflow = engine.submit(dict(tasks.add.s(1, 2)), name="n" * 255)
    assert workflow.get(timeout=10) == 3
    assert engine.workflow(workflow.id).name == "n" * 255


def test_state_is_a_workflow_state_equal_to_its_name(engine, tasks):
    workflow = engine.submit(tasks.add.s(1, 1))
    workflow.pause()
    assert isinstance(workflow.state, WorkflowState)
    assert workflow.state is WorkflowState.PAUSED
    assert workflow.state == "PAUSED"


@pytest.mark.slow
def test_the_embedded_worker_runs_workflows_submitted_before_and_inside_it(
    sqlite_url,
):
    # no broker: the first submit tries Celery's default (amqp on localhost)
    app = Celery("late", set_as_current=False)
    tasks = register_tasks(app)
    engine = Engine(app, sqlite_url, recovery_delay=0.5, recovery_interval=0.2)
    try:
        before = engine.submit(tasks.add.s(1, 1))
        with engine.embedded_worker():
            inside = engine.submit(chain(tasks.add.s(1, 2), tasks.add.s(3)))
            assert inside.get(timeout=20) == 6
            # recovery publishes the node the first submit could not send
            assert before.get(timeout=20) == 2
    finally:
        engine.close()


def test_cancel_under_the_embedded_worker_logs_nothing_about_a_result_backend(
    engine,
):
    @engine.app.task(name="t.later", bind=True, shared=False)
    def later(self):
        raise self.retry(countdown=60)

    heard = Heard()
    control = logging.getLogger(CONTROL_LOGGER)  # Celery's: it does not propagate
    control.addHandler(heard)
    try:
        with engine.embedded_worker():
            # the retries' messages wait in the worker: the cancel revokes them
            workflow = engine.submit(group(later.s() for _ in range(3)))
            wait_for(lambda: {n.state for n in workflow.nodes()} == {"RETRYING"})
            ids = {node.id for node in workflow.nodes()}
            workflow.cancel()
            wait_for(lambda: ids <= set(worker_state.revoked))
    finally:
        control.removeHandler(heard)
    assert workflow.state == "CANCELLED"
    assert [m for m in heard.messages if "as revoked in backend" in m] == []


class Heard(logging.Handler):
    """Keeps the messages of the logger it is added to."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def wait_for(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_closing_the_engine_leaves_every_change_in_the_sqlite_file(tmp_path):
    path = tmp_path / "kept.db"
    engine = Engine(make_app(), f"sqlite:///{path}")
    workflow = engine.submit(engine.app.test_tasks.add.s(1, 1), name="kept")
    engine.close()
    wal = Path(f"{path}-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    copy = tmp_path / "copy.db"
    copy.write_bytes(path.read_bytes())  # the file alone, without its log
    with sqlite3.connect(copy) as conn:
        names = conn.execute(
            "SELECT name FROM celeriac_workflows WHERE id = ?", (workflow.id,)
        ).fetchall()
    assert names == [("kept",)]
