"""``celeriac purge``, run in a subprocess against a SQLite file.

The project (an app module and its database) comes from ``test_cli``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from celery import chain

from celeriac.storage.schema import workflows
from tests.acceptance.test_cli import (
    assert_usage_error,
    canvas,
    listed_ids,
    make_project,
)


def finish_long_ago(db: sa.Engine, workflow_id: str, age: timedelta) -> None:
    then = datetime.now(UTC) - age
    with db.begin() as conn:
        conn.execute(
            sa.update(workflows)
            .where(workflows.c.id == workflow_id)
            .values(created_at=then, finished_at=then)
        )


@pytest.fixture
def history(tmp_path):
    """A COMPLETED and a FAILED workflow 40 days old, one COMPLETED today, one
    stored 40 days ago that never ran."""
    project = make_project(tmp_path / "project")
    module = project.module
    project.old, project.failed, project.recent = project.run_to_end(
        (canvas(module), "nightly"),
        (chain(module.add.s(1, 1), module.boom.s()), "broken"),
        (canvas(module), "nightly"),
    )
    project.stored = project.submit(module.add.s(1, 1), "nightly")
    for workflow in (project.old, project.failed, project.stored):
        finish_long_ago(project.engine._db, workflow.id, timedelta(days=40))
    yield project
    project.engine._db.dispose()


def test_dry_run_counts_then_purge_deletes_only_old_finished_workflows(history):
    everything = set(listed_ids(url=history.url))

    dry = history.cli("purge", "--older-than", "30d", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    counted = json.loads(dry.stdout)
    assert counted["dry_run"] is True
    assert counted["workflows"] == 2
    assert counted["nodes"] > 2
    assert set(listed_ids(url=history.url)) == everything

    done = history.cli("purge", "--older-than", "30d")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(
        f"deleted 2 workflow(s) with {counted['nodes']} node(s)"
    )
    assert set(listed_ids(url=history.url)) == everything - {
        history.old.id,
        history.failed.id,
    }
    assert history.stored.state == "IN_PROGRESS"


def test_purge_by_state_and_name(history):
    by_state = history.cli("purge", "--older-than", "1d", "--state", "failed", "--json")
    assert by_state.returncode == 0, by_state.stderr
    assert json.loads(by_state.stdout)["workflows"] == 1

    by_name = history.cli("purge", "--older-than", "1d", "--name", "other", "--json")
    assert json.loads(by_name.stdout)["workflows"] == 0
    assert history.old.id in listed_ids(url=history.url)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--older-than", "30d", "--state", "IN_PROGRESS"], ["IN_PROGRESS"]),
        (["--older-than", "30d", "--state", "PAUSED"], ["PAUSED"]),
        ([], ["--older-than"]),
        (["--older-than", "soon"], ["soon"]),
        (["--older-than", "30d", "--workers-older-than", "10s"], ["worker timeout"]),
    ],
)
def test_bad_purge_options_are_bad_usage_and_delete_nothing(history, args, words):
    before = set(listed_ids(url=history.url))

    assert_usage_error(history.cli("purge", *args), *words)

    assert set(listed_ids(url=history.url)) == before


def test_an_age_beyond_the_calendar_purges_nothing(history):
    done = history.cli("purge", "--older-than", "100000000w", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["workflows"] == 0
