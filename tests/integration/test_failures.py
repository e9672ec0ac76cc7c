"""A failure deep inside a canvas fails the workflow, and leaves nothing behind.

The workflow is FAILED with the failing node's error; tasks already running
finish and are recorded; tasks after the failure are SKIPPED; no node is
left queued or running (no polling task, no workflow stuck IN_PROGRESS).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from celery import chain, chord, group

from celeriac import WorkflowFailed, WorkflowState
from celeriac.storage.schema import nodes
from tests.waiting import wait_for

if TYPE_CHECKING:
    from celeriac import Engine, Node

TIMEOUT = 15.0
#: the failing task fails after this long, once its siblings have started
FAILS_AFTER = 0.2
#: a sibling still running when the failure is recorded
RUNS_FOR = 0.6
UNFINISHED = ("QUEUED", "RUNNING", "RETRYING")


@dataclass(frozen=True)
class Case:
    """A canvas with one failing task (``t.deep_boom``) somewhere inside."""

    id: str
    build: Callable[[SimpleNamespace], Any]
    #: tasks that run beside the failing one: they finish and are recorded
    beside: tuple[str, ...]
    #: tasks after it: they can no longer run
    after: tuple[str, ...]


def _failing(t: SimpleNamespace) -> Any:
    return t.deep_boom.si(0, FAILS_AFTER)


CASES = [
    Case(
        "group-step-in-chain",
        lambda t: chain(
            t.add.s(1, 1),
            group(t.sleep.si(RUNS_FOR, "ok"), t.add.s(1), _failing(t)),
            t.tsum.s(),
        ),
        beside=("t.add", "t.add", "t.sleep"),
        after=("t.tsum",),
    ),
    Case(
        "chord-in-chord-header",
        lambda t: chord(
            [
                chord([t.sleep.si(RUNS_FOR, "ok"), _failing(t)], t.tsum.s()),
                t.add.s(3, 3),
            ],
            t.tsum.s(),
        ),
        beside=("t.add", "t.sleep"),
        after=("t.tsum", "t.tsum"),
    ),
]


def _states(engine: Engine, workflow_id: str) -> Counter[tuple[str, str]]:
    """How many nodes of each (kind, state) the workflow has, in SQL."""
    with engine._db.connect() as conn:
        rows = conn.execute(
            sa.select(nodes.c.kind, nodes.c.state).where(
                nodes.c.workflow_id == workflow_id
            )
        ).all()
    return Counter((kind, state) for kind, state in rows)


def _unfinished(engine: Engine, workflow_id: str) -> list[tuple[str, str]]:
    return [key for key in _states(engine, workflow_id) if key[1] in UNFINISHED]


def _nodes_of(task_nodes: list[Node], names: tuple[str, ...]) -> list[Node]:
    """The nodes of the tasks ``names``: one node for each name listed."""
    found = [n for n in task_nodes if n.task in names]
    assert sorted(str(n.task) for n in found) == sorted(names)
    return found


def _expected_error(tasks: SimpleNamespace) -> tuple[str, str]:
    """The failing task's exception, from its own body run here."""
    try:
        tasks.deep_boom.run(0)
    except Exception as exc:
        return type(exc).__name__, str(exc)
    raise AssertionError("t.deep_boom did not raise")


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_nested_failure_fails_the_workflow_and_leaves_nothing_behind(
    engine: Engine, tasks: SimpleNamespace, worker: Any, case: Case
) -> None:
    workflow = engine.submit(case.build(tasks))
    with pytest.raises(WorkflowFailed) as raised:
        workflow.get(timeout=TIMEOUT)
    wait_for(
        lambda: not _unfinished(engine, workflow.id),
        timeout=TIMEOUT,
        what="every node of the failed workflow recorded",
    )
    assert workflow.state == WorkflowState.FAILED
    task_nodes = [n for n in workflow.nodes() if n.kind == "TASK"]
    (failed,) = (n for n in task_nodes if n.task == "t.deep_boom")
    failure = raised.value
    assert failure.workflow_id == workflow.id
    assert failure.node_id == failed.id
    assert (failure.exc_type, failure.exc_message) == _expected_error(tasks)
    assert (failed.state, [a.state for a in failed.attempts]) == ("FAILED", ["FAILED"])
    # the tasks beside it ran to the end (one was still running at the failure)
    beside = _nodes_of(task_nodes, case.beside)
    assert {(n.state, len(n.attempts)) for n in beside} == {("SUCCEEDED", 1)}
    (slow,) = (n for n in beside if n.task == "t.sleep")
    slow_end, failed_end = slow.attempts[0].finished_at, failed.attempts[0].finished_at
    assert slow_end is not None
    assert failed_end is not None
    assert slow_end > failed_end
    # the tasks after it never ran
    after = _nodes_of(task_nodes, case.after)
    assert {(n.state, len(n.attempts)) for n in after} == {("SKIPPED", 0)}
    assert not [name for name, _ in tasks.ran if name in case.after]
    # nothing is left queued, running or waiting to be dispatched
    states = _states(engine, workflow.id)
    assert not [key for key in states if key[1] in UNFINISHED]
    assert states[("TASK", "PENDING")] == 0
