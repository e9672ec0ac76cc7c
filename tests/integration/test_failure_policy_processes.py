"""The failure policies on ``celery worker`` processes (prefork) and PostgreSQL.

Fifty workflows of each canvas run at once on two workers of two processes
each: with ``on_failure="continue"`` every one runs the same tasks, the set
native Celery runs (``test_failure_policy.py`` compares it with a native run);
with ``on_failure="stop"`` every one runs exactly the tasks claimed before it
failed, and never what depends on the failure.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from celery import chord, group

from celeriac import WorkflowFailed
from celeriac.engine.handle import Workflow
from celeriac.states import NodeState, WorkflowState
from tests.integration.test_failure_policy import claimed_before_failed
from tests.workers import Workers

pytestmark = pytest.mark.slow

RUNS = 50
TIMEOUT = 60.0

Build = Callable[[ModuleType], Any]


def failing_chord(proc: ModuleType) -> Any:
    return chord([proc.add.si(1, 1), proc.add.si(2, 2), proc.fail.si(0)], proc.tsum.s())


def group_of_100_with_one_failing(proc: ModuleType) -> Any:
    members = [proc.add.si(i, i) for i in range(99)]
    members.insert(37, proc.fail.si(0))
    return group(members)


#: canvas, and the tasks native Celery runs for it: (task, state) per node
CANVASES = [
    pytest.param(
        failing_chord,
        {("p.add", "SUCCEEDED"): 2, ("p.fail", "FAILED"): 1, ("p.tsum", "SKIPPED"): 1},
        id="chord",
    ),
    pytest.param(
        group_of_100_with_one_failing,
        {("p.add", "SUCCEEDED"): 99, ("p.fail", "FAILED"): 1},
        id="group-of-100",
    ),
]


def submit_all(proc: ModuleType, build: Build, on_failure: str) -> list[Workflow]:
    workflows = [
        proc.engine.submit(build(proc), on_failure=on_failure) for _ in range(RUNS)
    ]
    for workflow in workflows:
        with pytest.raises(ValueError, match="fail 0") as raised:
            workflow.get(timeout=TIMEOUT)
        assert isinstance(raised.value, WorkflowFailed)
        assert workflow.state == WorkflowState.FAILED
    return workflows


def node_tally(workflow: Workflow) -> dict[tuple[str | None, str], int]:
    tally: dict[tuple[str | None, str], int] = {}
    for node in workflow.nodes():
        tally[node.task, node.state] = tally.get((node.task, node.state), 0) + 1
    return tally


@pytest.mark.parametrize(("build", "native"), CANVASES)
def test_each_of_fifty_runs_runs_the_tasks_native_celery_runs(
    proc: ModuleType,
    workers: Workers,
    build: Build,
    native: dict[tuple[str, str], int],
) -> None:
    workers.start(2)

    workflows = submit_all(proc, build, "continue")

    for workflow in workflows:
        assert node_tally(workflow) == native
    ran = sum(count for (task, _), count in native.items() if task == "p.add")
    assert proc.runs("p.add") == RUNS * ran
    assert proc.runs("p.fail") == RUNS
    assert proc.runs("p.tsum") == 0


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(failing_chord, id="chord"),
        pytest.param(group_of_100_with_one_failing, id="group-of-100"),
    ],
)
def test_each_of_fifty_runs_stops_at_its_failure(
    proc: ModuleType, workers: Workers, build: Build
) -> None:
    workers.start(2)

    workflows = submit_all(proc, build, "stop")

    started = 0
    for workflow in workflows:
        claimed = claimed_before_failed(proc.engine, workflow.id)
        nodes = workflow.nodes()
        assert {node.id for node in nodes if node.attempts} == claimed
        assert all(
            node.state == NodeState.SKIPPED for node in nodes if not node.attempts
        )
        started += sum(1 for node in nodes if node.attempts and node.task == "p.add")
    assert proc.runs("p.add") == started
    assert proc.runs("p.tsum") == 0
