"""Honest outcomes: what resume, retry, cancel --terminate and recover sent.

The workflows are stored in this process on the in-memory broker; the
command line runs the same app module pointed at a Redis URL on a port
nothing listens on, so every publish gives up after
``PUBLISH_RETRY_SECONDS``: those tests are slow.
"""

from __future__ import annotations

import json
import logging
import time

import pytest
import sqlalchemy as sa
from celery import Celery, chain

from celeriac import Engine
from celeriac.cli.outcome import BROKER_DOWN
from tests.acceptance.test_cli import assert_refused, celeriac, make_project
from tests.servers import free_port


@pytest.fixture
def project(tmp_path):
    made = make_project(tmp_path / "project")
    yield made
    made.engine._db.dispose()


@pytest.fixture
def broker_down():
    """The app module's settings for a Redis broker nobody answers at."""
    return {"CLIAPP_BROKER": f"redis://127.0.0.1:{free_port()}/0"}


def paused_with_a_ready_node(project, tmp_path):
    """A workflow PAUSED after its first step: its second waits, ready, PENDING."""
    module, gate = project.module, tmp_path / "gate"
    with project.engine.embedded_worker():
        workflow = project.submit(
            chain(module.wait_for_file.s(str(gate), 1), module.add.s(2))
        )
        wait_for(lambda: workflow.progress().running == 1)
        workflow.pause()
        gate.touch()
        wait_for(lambda: workflow.state == "PAUSED")
    assert [node.state for node in workflow.nodes()] == ["SUCCEEDED", "PENDING"]
    return workflow


def wait_for(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def assert_broker_down(result, stdout_words):
    assert result.returncode == BROKER_DOWN, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: the broker could not be reached")
    for words in stdout_words:
        assert words in result.stdout


def test_resume_says_how_many_nodes_it_published(project, tmp_path):
    workflow = paused_with_a_ready_node(project, tmp_path)
    result = project.cli("resume", workflow.id, app=True)
    assert result.returncode == 0, result.stderr
    assert f"workflow {workflow.id}: IN_PROGRESS; 1 node(s) published" in result.stdout


def test_every_action_prints_json(project):
    add = project.module.add
    workflow = project.submit(chain(add.s(1, 1), add.s(2)))
    paused = json.loads(project.cli("pause", workflow.id, "--json").stdout)
    assert paused == {
        "id": workflow.id,
        "state": "PAUSED",
        "running": 0,
        "sent": 0,
        "unsent": 0,
        "refused": 0,
    }
    resumed = json.loads(project.cli("resume", workflow.id, "--json", app=True).stdout)
    assert resumed["state"] == "IN_PROGRESS"
    # its first node's message is still in the broker: nothing to send again
    assert (resumed["sent"], resumed["unsent"]) == (0, 0)
    cancelled = project.cli("cancel", workflow.id, "--terminate", "--json", app=True)
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["state"] == "CANCELLED"
    # a QUEUED node needs no revoke: its message is dropped when it is claimed
    assert json.loads(cancelled.stdout)["sent"] == 0
    recovered = json.loads(project.cli("recover", "--json", app=True).stdout)
    assert recovered == {"sent": 0, "unsent": 0, "refused": 0}


@pytest.mark.slow
def test_resume_with_the_broker_down_exits_3_and_the_node_stays_queued(
    project, broker_down, tmp_path
):
    workflow = paused_with_a_ready_node(project, tmp_path)
    result = project.cli("resume", workflow.id, app=True, env=broker_down)
    assert_broker_down(
        result, [f"{workflow.id}: IN_PROGRESS; 0 node(s) published, 1 stay QUEUED"]
    )
    assert workflow.state == "IN_PROGRESS"
    assert [node.state for node in workflow.nodes()] == ["SUCCEEDED", "QUEUED"]


@pytest.mark.slow
def test_retry_and_recover_with_the_broker_down_exit_3(project, broker_down):
    module = project.module
    (workflow,) = project.run_to_end(chain(module.add.s(1, 1), module.boom.s()))
    result = project.cli("retry", workflow.id, "--json", app=True, env=broker_down)
    assert_broker_down(result, [])
    document = json.loads(result.stdout)
    assert (document["state"], document["sent"], document["unsent"]) == (
        "IN_PROGRESS",
        0,
        1,
    )
    env = {**broker_down, "CLIAPP_RECOVERY_DELAY": "0"}
    result = project.cli("recover", app=True, env=env)
    assert_broker_down(
        result, ["recovery pass done: 0 node(s) published again, 1 stay QUEUED"]
    )


@pytest.mark.slow
def test_cancel_terminate_with_the_broker_down_exits_3(project, broker_down):
    workflow = project.submit(project.module.add.s(1, 1))
    with project.engine._db.begin() as conn:  # as if a worker of ours runs it
        conn.execute(
            sa.text("UPDATE celeriac_nodes SET state = 'RUNNING' WHERE id = :n"),
            {"n": workflow.nodes()[0].id},
        )
    result = project.cli(
        "cancel", workflow.id, "--terminate", app=True, env=broker_down
    )
    assert_broker_down(result, [f"{workflow.id}: CANCELLED; 1 task(s) not revoked"])
    assert workflow.state == "CANCELLED"


def test_an_action_refused_by_the_state_machine_still_exits_1(project, broker_down):
    workflow = project.submit(project.module.add.s(1, 1))
    result = project.cli("resume", workflow.id, app=True, env=broker_down)
    assert_refused(result, "cannot resume", "IN_PROGRESS")


@pytest.mark.slow
def test_submit_with_the_broker_down_returns_the_workflow_and_warns(tmp_path, caplog):
    app = Celery("down", broker=f"redis://127.0.0.1:{free_port()}/0")
    app.conf.broker_connection_retry_on_startup = False

    @app.task(name="down.add", shared=False)
    def add(x, y):
        return x + y

    engine = Engine(app, f"sqlite:///{tmp_path / 'down.db'}")
    try:
        with caplog.at_level(logging.WARNING, logger="celeriac"):
            workflow = engine.submit(chain(add.s(1, 1), add.s(2)))
        assert workflow.state == "IN_PROGRESS"
        assert [node.state for node in workflow.nodes()] == ["QUEUED", "PENDING"]
        warnings = [
            r.getMessage() for r in caplog.records if workflow.id in r.getMessage()
        ]
        assert warnings == [
            f"workflow {workflow.id} is stored, but 1 of its first nodes could not "
            "be published yet: they stay QUEUED until a recovery pass sends them"
        ]
    finally:
        engine.close()


def test_submit_whose_transport_cannot_be_imported_still_returns_the_workflow(
    tmp_path, caplog
):
    # as a Redis broker without the redis extra: kombu's transport import fails
    app = Celery("noimport", broker="memory://localhost/")
    app.conf.broker_transport = "celeriac_no_such_transport:Transport"

    @app.task(name="noimport.add", shared=False)
    def add(x, y):
        return x + y

    engine = Engine(app, f"sqlite:///{tmp_path / 'noimport.db'}")
    try:
        with caplog.at_level(logging.WARNING, logger="celeriac"):
            workflow = engine.submit(add.s(1, 1))
        assert [node.state for node in workflow.nodes()] == ["QUEUED"]
        messages = [record.getMessage() for record in caplog.records]
        assert any(
            "ModuleNotFoundError: No module named 'celeriac_no_such_transport'"
            in message
            for message in messages
        ), messages
        assert any(workflow.id in message for message in messages), messages
    finally:
        engine.close()


def test_db_upgrade_prints_json(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    first = celeriac("--database-url", url, "db", "upgrade", "--json")
    assert first.returncode == 0, first.stderr
    done = json.loads(first.stdout)
    assert (done["database"], done["from"]) == (url, None)
    again = json.loads(
        celeriac("--database-url", url, "db", "upgrade", "--json").stdout
    )
    assert again["from"] == again["to"] == done["to"]


@pytest.mark.parametrize("command", ["resume", "retry", "recover"])
def test_help_of_a_publishing_command_says_it_needs_the_app(command):
    result = celeriac(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "(needs --app)" in " ".join(result.stdout.split())
