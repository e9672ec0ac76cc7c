"""Stored data validated on the way out: a corrupted row gives one line.

Each case corrupts one stored column of one workflow with a raw SQL UPDATE,
then runs the commands (``show``, ``show --json``, ``graph``, ``list``) and
their API equivalents (``nodes()``, ``state``, ``resume()``, ``retry()``), on SQLite
and PostgreSQL. A command that needs the value refuses with one line naming
the workflow, the node and the column, and exit 1; one that does not need it
works; no state change commits.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa
from celery import chain
from click.testing import CliRunner, Result

from celeriac import CorruptRecord, Engine
from celeriac.cli import main
from tests.acceptance.test_cli import make_project

#: Commands run on each corrupted row.
COMMANDS = (("show",), ("show", "--json"), ("graph",), ("list",))


@dataclass
class Case:
    """One corrupted column, and what refuses because of it."""

    table: str  # "workflows" or "nodes" (the workflow's first task)
    column: str
    value: str
    problem: str  # the end of the error line
    #: commands refused; every other one in the matrix works
    refused: set[str] = field(default_factory=set)

    @property
    def id(self) -> str:
        return f"{self.table}.{self.column}={self.value[:12]}"


NODE_READS = {"show", "show --json", "graph", "nodes"}
CASES = [
    Case("nodes", "signature", "not json", "signature is not JSON", {"resume"}),
    Case(
        "nodes",
        "signature",
        '"just a string"',
        "signature is not a JSON object",
        {"resume"},
    ),
    Case(
        "nodes",
        "state",
        "BOGUS",
        "state is 'BOGUS', not a node state",
        NODE_READS | {"resume"},
    ),
    Case("nodes", "result", "{oops", "result is not JSON", NODE_READS),
    Case(
        "workflows",
        "state",
        "BOGUS",
        "state is 'BOGUS', not a workflow state",
        {"show", "show --json", "graph", "list", "resume", "state", "record"},
    ),
    Case(
        "workflows",
        "metadata",
        "[1, 2]",
        "metadata is not a JSON object",
        {"show", "show --json", "graph", "list", "record"},
    ),
    Case(
        "workflows",
        "metadata",
        "{oops",
        "metadata is not JSON",
        {"show", "show --json", "graph", "list", "record"},
    ),
    Case(
        "workflows",
        "result",
        "not json",
        "result is not JSON",
        {"show", "show --json", "graph", "list", "record"},
    ),
    Case(
        "workflows",
        "exc_message",
        "\x01{oops",  # an escaped text whose JSON string is cut
        "exc_message cannot be read",
        {"show", "show --json", "graph", "list", "record"},
    ),
    Case("nodes", "exc_message", "\x01{oops", "exc_message cannot be read", NODE_READS),
    # kept for the record, read by no command: all of them still work
    Case("workflows", "canvas", "not json", "canvas is not JSON"),
    Case("workflows", "args", "not json", "args is not JSON"),
    Case("workflows", "kwargs", "[1]", "kwargs is not a JSON object"),
]


@pytest.fixture
def held(engine, tasks):
    """A PAUSED chain whose first task is ready and held back (PENDING).

    (What a worker's claim does to a node whose workflow is paused.)
    """
    workflow = engine.submit(chain(tasks.add.s(1, 2), tasks.add.s(3)))
    workflow.pause()
    first = workflow.nodes()[0]
    with engine._db.begin() as conn:
        conn.execute(
            sa.text("UPDATE celeriac_nodes SET state = 'PENDING' WHERE id = :n"),
            {"n": first.id},
        )
    workflow.first = first.id
    return workflow


def corrupt(engine, workflow, case: Case) -> None:
    where = "id = :node" if case.table == "nodes" else "id = :workflow"
    with engine._db.begin() as conn:
        conn.execute(
            sa.text(
                f"UPDATE celeriac_{case.table} SET {case.column} = :v WHERE {where}"
            ),
            {"v": case.value, "node": workflow.first, "workflow": workflow.id},
        )


def stored_states(engine, workflow) -> tuple[str, list[str]]:
    """The workflow's and its nodes' states, read raw (the API may refuse)."""
    with engine._db.connect() as conn:
        state = conn.execute(
            sa.text("SELECT state FROM celeriac_workflows WHERE id = :w"),
            {"w": workflow.id},
        ).scalar_one()
        nodes = conn.execute(
            sa.text(
                "SELECT state FROM celeriac_nodes WHERE workflow_id = :w "
                "AND kind = 'TASK' ORDER BY position"
            ),
            {"w": workflow.id},
        ).scalars()
        return state, list(nodes)


def expected_line(workflow, case: Case) -> str:
    where = f"workflow {workflow.id}"
    if case.table == "nodes":
        where = f"node {workflow.first} of {where}"
    return f"Error: {where}: stored {case.problem}"


def cli(url: str, *args: str) -> Result:
    """The real command line, run in this process (a subprocess each is slow)."""
    return CliRunner().invoke(main, ["--database-url", url, *args])


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_each_command_refuses_a_corrupted_row_in_one_line(
    engine, held, database_url, case
):
    corrupt(engine, held, case)
    before = stored_states(engine, held)
    line = expected_line(held, case)
    for args in COMMANDS:
        command = " ".join(args)
        words = [*args[:1], held.id, *args[1:]] if args[0] != "list" else args
        result = cli(database_url, *words)
        if command in case.refused:
            assert result.exit_code == 1, (command, result.stdout, result.stderr)
            assert result.stderr.splitlines() == [line], command
        else:
            assert result.exit_code == 0, (command, result.stderr)
            if args[-1] == "--json":
                json.loads(result.stdout)
    assert stored_states(engine, held) == before


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_each_api_call_raises_corrupt_record_and_changes_nothing(engine, held, case):
    corrupt(engine, held, case)
    before = stored_states(engine, held)
    calls = {
        "nodes": held.nodes,
        "state": lambda: held.state,
        "record": held.record,
        "resume": held.resume,
    }
    for name, call in calls.items():
        if name in case.refused:
            with pytest.raises(CorruptRecord) as raised:
                call()
            assert str(raised.value) == expected_line(held, case)[len("Error: ") :]
            assert raised.value.workflow_id == held.id
            assert raised.value.column == case.column
        else:
            call()
    if "resume" in case.refused:
        assert stored_states(engine, held) == before


def test_retry_checks_the_signatures_it_would_publish_before_committing(engine, tasks):
    workflow = engine.submit(tasks.add.s(1, 2))
    node = workflow.nodes()[0]
    with engine._db.begin() as conn:  # as a failure leaves them, and then a bad row
        conn.execute(
            sa.text("UPDATE celeriac_workflows SET state = 'FAILED' WHERE id = :w"),
            {"w": workflow.id},
        )
        conn.execute(
            sa.text(
                "UPDATE celeriac_nodes SET state = 'FAILED', signature = '[1]' "
                "WHERE id = :n"
            ),
            {"n": node.id},
        )
    with pytest.raises(CorruptRecord, match="stored signature is not a JSON object"):
        workflow.retry()
    assert stored_states(engine, workflow) == ("FAILED", ["FAILED"])


def test_a_file_that_is_not_a_database_is_one_line(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not a database\n" * 100)
    for args in (("list",), ("show", "0123456789")):
        result = cli(f"sqlite:///{path}", *args)
        assert result.exit_code == 1, result.stdout + result.stderr
        (line,) = result.stderr.splitlines()
        assert "not a database" in line


def test_the_resume_command_refuses_a_corrupted_signature_and_changes_nothing(
    tmp_path,
):
    project = make_project(tmp_path / "project")
    try:
        add = project.module.add
        workflow = project.submit(chain(add.s(1, 2), add.s(3)))
        workflow.pause()
        workflow.first = workflow.nodes()[0].id
        with project.engine._db.begin() as conn:  # held back, then corrupted
            conn.execute(
                sa.text(
                    "UPDATE celeriac_nodes SET state = 'PENDING', "
                    "signature = '\"just a string\"' WHERE id = :n"
                ),
                {"n": workflow.first},
            )
        result = project.cli("resume", workflow.id, app=True)
        assert result.returncode == 1, result.stdout + result.stderr
        case = CASES[1]
        assert result.stderr.splitlines() == [expected_line(workflow, case)]
        assert stored_states(project.engine, workflow) == (
            "PAUSED",
            ["PENDING", "PENDING"],
        )
    finally:
        project.engine._db.dispose()


@pytest.mark.parametrize("value", ["not json", '"just a string"'])
def test_recovery_skips_an_unreadable_workflow_once_and_recovers_the_others(
    app, tasks, database_url, caplog, value
):
    engine = Engine(app, database_url, recovery_delay=0)
    try:
        # a corrupted value recovery does not read, stored before the bad one
        other = engine.submit(tasks.add.s(3, 3))
        other.first = other.nodes()[0].id
        corrupt(engine, other, Case("nodes", "result", "{oops", ""))
        good = engine.submit(tasks.add.s(1, 1))
        bad = engine.submit(tasks.add.s(2, 2))
        bad.first = bad.nodes()[0].id
        corrupt(engine, bad, Case("nodes", "signature", value, ""))
        with caplog.at_level(logging.ERROR, logger="celeriac.engine"):
            # the good workflow's node, and the other's: its signature is fine
            assert engine.recover().sent == 2
            assert engine.recover().sent == 2  # again: they are still overdue
        skipped = [
            r.getMessage() for r in caplog.records if "skipping" in r.getMessage()
        ]
        assert len(skipped) == 1, skipped  # the bad one, once; not the other
        assert f"node {bad.first} of workflow {bad.id}: stored signature" in skipped[0]
        assert good.nodes()[0].state == "QUEUED"
    finally:
        engine.close()
