"""One live engine per app: its signal receivers and task gates act for it
until ``close()`` removes them, and another engine may then take the app."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from celery import chain, signals

from celeriac import AppInUse, Engine, NodeState
from celeriac.storage.schema import attempts, workflows
from tests.tasks import make_app
from tests.waiting import wait_for


def stored_workflows(url: str) -> tuple[set[str], int]:
    """The ids of the workflows stored at ``url``, and how many attempts."""
    db = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with db.connect() as conn:
            ids = set(conn.execute(sa.select(workflows.c.id)).scalars())
            count = conn.execute(sa.select(sa.func.count()).select_from(attempts))
            return ids, int(count.scalar_one())
    finally:
        db.dispose()


def test_an_engine_built_after_another_closed_runs_its_app_on_its_own_database(
    app, tasks, tmp_path, database_url
):
    first_url = f"sqlite:///{tmp_path / 'first.db'}"
    first = Engine(app, first_url)
    with first.embedded_worker():
        before = first.submit(tasks.add.s(1, 1))
        assert before.get(timeout=10) == 2
    first.close()

    second = Engine(app, database_url)
    second.migrate()
    try:
        with second.embedded_worker():
            after = second.submit(chain(tasks.add.s(2, 2), tasks.add.s(1)))
            assert after.get(timeout=10) == 5
        nodes = after.nodes()
        assert [node.state for node in nodes] == [NodeState.SUCCEEDED] * 2
        assert [len(node.attempts) for node in nodes] == [1, 1]
    finally:
        second.close()
    # the claims and outcomes went to the second database only
    assert stored_workflows(first_url) == ({before.id}, 1)
    assert stored_workflows(database_url) == ({after.id}, 2)


def test_a_second_live_engine_on_an_app_is_refused_and_opens_nothing(
    app, tasks, tmp_path, database_url
):
    engine = Engine(app, database_url)
    engine.migrate()
    try:
        other = tmp_path / "other.db"
        with pytest.raises(AppInUse, match=f"{app.main!r} already has a live"):
            Engine(app, f"sqlite:///{other}")
        assert not other.exists()
        assert Engine.bound_to(app) is engine
        with engine.embedded_worker():
            workflow = engine.submit(tasks.add.s(3, 4))
            assert workflow.get(timeout=10) == 7
        assert [len(node.attempts) for node in workflow.nodes()] == [1]
    finally:
        engine.close()
    assert Engine.bound_to(app) is None
    again = Engine(app, f"sqlite:///{tmp_path / 'again.db'}")
    assert Engine.bound_to(app) is again
    again.close()


def test_the_refusal_hides_the_password_of_the_live_engines_database(app):
    engine = Engine(app, "postgresql+psycopg://user:secret@127.0.0.1:1/db")
    try:
        with pytest.raises(AppInUse) as refused:
            Engine(app, "sqlite://")
        assert "secret" not in str(refused.value)
        assert "user:***@127.0.0.1:1/db" in str(refused.value)
    finally:
        engine.close()


def test_closing_an_engine_removes_its_receivers_and_task_gates(tmp_path: Path):
    receivers = len(signals.task_success.receivers)
    app = make_app()
    task_class = type(app.tasks["t.add"])
    before_start = task_class.__dict__.get("before_start")
    engine = Engine(app, f"sqlite:///{tmp_path / 'gated.db'}")
    assert task_class.__dict__.get("before_start") is not before_start
    assert len(signals.task_success.receivers) >= receivers
    engine.close()
    assert task_class.__dict__.get("before_start") is before_start
    assert "_celeriac_progress" not in task_class.__dict__
    assert len(signals.task_success.receivers) == receivers
    assert Engine.bound_to(app) is None


def test_two_live_engines_on_two_apps_each_run_their_own_workflows(tmp_path: Path):
    one_app, two_app = make_app("one"), make_app("two")
    one = Engine(one_app, f"sqlite:///{tmp_path / 'one.db'}")
    two = Engine(two_app, f"sqlite:///{tmp_path / 'two.db'}")
    try:
        # both engines are live throughout; Celery's tracer keeps one task
        # registry per process, so the two embedded workers run in turn
        with two.embedded_worker():
            second = two.submit(chain(two_app.test_tasks.add.s(5, 5)))
            assert second.get(timeout=10) == 10
        with one.embedded_worker():
            first = one.submit(chain(one_app.test_tasks.add.s(1, 1)))
            assert first.get(timeout=10) == 2
            # a task called without celeriac is neither gated nor recorded
            one_app.test_tasks.add.delay(2, 2)
            wait_for(lambda: len(one_app.test_tasks.ran) == 2, what="plain task")
        assert Engine.bound_to(one_app) is one
        assert Engine.bound_to(two_app) is two
    finally:
        one.close()
        two.close()
    assert stored_workflows(f"sqlite:///{tmp_path / 'one.db'}") == ({first.id}, 1)
    assert stored_workflows(f"sqlite:///{tmp_path / 'two.db'}") == ({second.id}, 1)
