"""NODE_TRANSITIONS: the one table of node state changes, and the code that reads it.

The recorded changes are checked against the table at the end of every test
that uses a database (tests/node_events.py); these tests check the table
itself, and the statements written by hand against it.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from celeriac.states import (
    NODE_TRANSITIONS,
    NodeKind,
    NodeState,
    WorkflowState,
    held_back_as,
    may_start,
    sources_of,
    starts_under,
)
from celeriac.storage import claiming, claims
from celeriac.storage.recovery import may_start_sql
from tests.node_events import ALLOWED

ROOT = Path(__file__).resolve().parents[2]
K, N, W = NodeKind, NodeState, WorkflowState
PAIRS = list(itertools.product(NodeKind, WorkflowState))


def edges(trigger: str) -> list[tuple[str, str, str, str]]:
    """(source, dest, kind, workflow state) of every edge of ``trigger``."""
    return [
        (source, edge.dest, kind, state)
        for edge in NODE_TRANSITIONS
        if edge.trigger == trigger
        for source in edge.source
        for kind in edge.kinds
        for state in edge.workflow
    ]


def test_every_edge_names_known_states_kinds_and_a_reason():
    for edge in NODE_TRANSITIONS:
        assert edge.source
        assert all(isinstance(state, NodeState) for state in edge.source)
        assert isinstance(edge.dest, NodeState)
        assert edge.kinds
        assert all(isinstance(kind, NodeKind) for kind in edge.kinds)
        assert edge.workflow
        assert all(isinstance(state, WorkflowState) for state in edge.workflow)
        assert edge.reason.strip()


def test_a_node_starts_exactly_where_the_start_edges_allow():
    started = {(kind, state) for _, _, kind, state in edges("start")}
    assert {pair for pair in PAIRS if may_start(*pair)} == started
    assert started >= {(K.TASK, W.IN_PROGRESS), (K.ERRBACK, W.FAILED)}
    assert not may_start(K.TASK, W.REQUESTING_PAUSE)
    assert not may_start(K.ERRBACK, W.CANCELLED)
    assert not any(may_start(kind, state) for kind in (K.JOIN, K.END) for state in W)


def test_a_node_that_may_not_start_has_one_place_to_go():
    for state in WorkflowState:
        if may_start(K.TASK, state):
            continue
        aside = [
            edge
            for edge in NODE_TRANSITIONS
            if edge.trigger in ("hold", "skip", "cancel") and state in edge.workflow
        ]
        assert len({edge.dest for edge in aside}) == 1, state
        assert held_back_as(state) == aside[0].dest
    assert held_back_as(W.PAUSED) == N.PENDING
    assert held_back_as(W.FAILED) == N.SKIPPED
    assert held_back_as(W.CANCELLED) == N.CANCELLED
    with pytest.raises(ValueError, match="IN_PROGRESS"):
        held_back_as(W.IN_PROGRESS)


def test_the_recovery_sql_agrees_with_may_start_for_every_kind_and_state():
    db = sa.create_engine("sqlite://")
    with db.connect() as conn:
        for kind, state in PAIRS:
            condition = may_start_sql(sa.literal(str(kind)), sa.literal(str(state)))
            found = conn.execute(sa.select(sa.case((condition, 1), else_=0)))
            assert bool(found.scalar_one()) is may_start(kind, state), (kind, state)


def test_the_first_claim_statement_takes_a_start_edge_of_the_table():
    sql = str(claims._CLAIM_FIRST.compile(compile_kwargs={"literal_binds": False}))
    values = claims._CLAIM_FIRST.compile().params
    # QUEUED task nodes, in a workflow in the one state tasks start in
    assert {N.QUEUED, K.TASK, N.RUNNING} <= set(values.values())
    assert starts_under(K.TASK) == (W.IN_PROGRESS,)
    assert W.IN_PROGRESS in values.values()
    assert "celeriac_workflows.state" in sql
    assert (N.QUEUED, N.RUNNING, K.TASK) in ALLOWED


def test_the_general_claim_starts_from_the_sources_of_the_start_edges():
    assert sources_of("start") == claiming._CLAIMABLE
    assert set(claiming._CLAIMABLE) == {N.QUEUED, N.RETRYING, N.RUNNING}


def test_docs_concepts_draws_the_tables_from_the_code():
    checked = subprocess.run(
        [sys.executable, "scripts/state_tables.py", "--check"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
