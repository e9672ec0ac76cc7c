"""``show`` and ``list`` at 80 columns and at size; short ids everywhere.

The CLI runs in a subprocess with ``COLUMNS=80``, as in a terminal of that
width, against workflows stored here without a worker.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from celery import chain, chord, group

from celeriac import AmbiguousWorkflowId, WorkflowNotFound
from celeriac.storage.schema import workflows
from tests.acceptance.test_cli import assert_refused, make_project, table_rows

NARROW = {"COLUMNS": "80"}


@pytest.fixture
def project(tmp_path):
    made = make_project(tmp_path / "project")
    yield made
    made.engine._db.dispose()


def lines_fit(out: str, width: int = 80) -> None:
    too_wide = [line for line in out.splitlines() if len(line) > width]
    assert not too_wide, "\n".join(too_wide)


@pytest.fixture
def big(project):
    """A chain into a chord of a 1,000-member group, stored, named at length."""
    module = project.module
    project.workflow = project.engine.submit(
        chain(
            module.add.s(1, 2),
            chord(group(module.add.s(i) for i in range(1000)), module.tsum.s()),
        ),
        name="a name long enough to need more than its share of eighty columns",
    )
    return project


def test_show_keeps_its_columns_at_80_columns_with_a_group_of_1000(big):
    result = big.cli("show", big.workflow.id, "--limit", "2000", env=NARROW)
    assert result.returncode == 0, result.stderr
    lines_fit(result.stdout)
    header = next(line for line in result.stdout.splitlines() if "TASK" in line)
    for column in ("#", "NODE", "TASK", "STATE", "ATTEMPTS", "DURATION"):
        assert f" {column} " in header
    rows = table_rows(result.stdout)
    numbered = [row for row in rows if row[0]]
    assert [row[0] for row in numbered] == [str(n) for n in range(1, 1003)]
    assert {row[3] for row in numbered} == {"QUEUED", "PENDING"}
    assert all(len(row[1]) == 8 for row in numbered)  # the short node ids
    # the join names its 1,000 members as one range, wrapped in its own column
    join_text = " ".join(
        row[2] for row in rows if "group results" in row[2] or row[2].startswith("#")
    )
    assert "group results (of #2-#1001)" in " ".join(join_text.split())
    assert "more match" not in result.stdout


def test_show_says_when_it_cut_the_tree_and_how_to_see_it_all(big):
    result = big.cli("show", big.workflow.id, env=NARROW)
    assert result.returncode == 0, result.stderr
    lines_fit(result.stdout)
    assert len([row for row in table_rows(result.stdout) if row[0]]) == 100
    assert "100 of 1003 nodes shown; --limit 1003 for all" in result.stdout
    shown = json.loads(big.cli("show", big.workflow.id, "--json").stdout)
    assert len(shown["nodes"]) == 1002  # --json lists them all


def test_list_at_80_columns_shows_states_whole_and_short_ids(project):
    module = project.module
    done = project.run_to_end(module.add.s(1, 1), module.add.s(2, 2))
    paused = project.submit(module.add.s(3, 3), name="x" * 120)
    paused.pause()
    result = project.cli("list", env=NARROW)
    assert result.returncode == 0, result.stderr
    lines_fit(result.stdout)
    assert "COMPLETED " in result.stdout
    assert "PAUSED " in result.stdout
    assert "…" not in result.stdout
    for workflow in (*done, paused):
        assert workflow.id[:8] in result.stdout
        assert workflow.id not in result.stdout  # too wide for 80 columns
    assert "more match" not in result.stdout


def test_list_says_when_more_workflows_match(project):
    for n in range(3):
        project.submit(project.module.add.s(n, n))
    result = project.cli("list", "--limit", "2", env=NARROW)
    assert result.returncode == 0, result.stderr
    assert "the newest 2 shown; more match: --limit 4 for more" in result.stdout
    exact = project.cli("list", "--limit", "3", env=NARROW)
    assert "more match" not in exact.stdout


def test_every_command_takes_a_short_id(project, tmp_path):
    workflow = project.submit(
        chain(project.module.add.s(1, 1), project.module.add.s(2))
    )
    short = workflow.id[:8]
    shown = project.cli("show", short)
    assert shown.returncode == 0, shown.stderr
    assert workflow.id in shown.stdout
    assert project.cli("graph", short).returncode == 0
    assert json.loads(project.cli("pause", short, "--json").stdout)["id"] == workflow.id
    assert project.cli("watch", short).returncode == 0  # PAUSED: it returns
    resumed = project.cli("resume", workflow.id[:12], app=True)
    assert resumed.returncode == 0, resumed.stderr
    assert workflow.state == "IN_PROGRESS"
    assert project.cli("cancel", short).returncode == 0
    assert workflow.state == "CANCELLED"
    assert project.engine.workflow(short).id == workflow.id


def test_a_prefix_shorter_than_8_is_no_id(project):
    workflow = project.submit(project.module.add.s(1, 1))
    assert_refused(project.cli("show", workflow.id[:7]), "no workflow with id")
    with pytest.raises(WorkflowNotFound):
        project.engine.workflow(workflow.id[:7])


def test_an_ambiguous_short_id_is_refused_with_the_candidates(project):
    workflow = project.submit(project.module.add.s(1, 1))
    twin = workflow.id[:8] + "-twin"
    at = datetime.now(UTC)
    with project.engine._db.begin() as conn:
        conn.execute(
            sa.insert(workflows).values(
                id=twin,
                state="COMPLETED",
                canvas={},
                args=[],
                kwargs={},
                result_node_id="none",
                created_at=at,
                updated_at=at,
            )
        )
    result = project.cli("show", workflow.id[:8])
    assert_refused(result, "several workflow ids", workflow.id, twin)
    with pytest.raises(AmbiguousWorkflowId) as raised:
        project.engine.workflow(workflow.id[:8])
    assert sorted(raised.value.candidates) == sorted([workflow.id, twin])
    # the whole id, or a longer prefix, is still one workflow
    assert project.cli("show", workflow.id[:10]).returncode == 0


def test_show_draws_a_long_chain_within_80_columns(project):
    add = project.module.add
    workflow = project.submit(chain(add.s(1, 2), *[add.s(i) for i in range(40)]))
    result = project.cli("show", workflow.id, env=NARROW)
    assert result.returncode == 0, result.stderr
    lines_fit(result.stdout)
    tasks = [row[2] for row in table_rows(result.stdout)]
    assert len(tasks) == 41  # one line each: no name wrapped
    assert all(task.endswith("cliapp.add") for task in tasks)
    assert tasks[-1].startswith("⋯")  # deeper than five levels
