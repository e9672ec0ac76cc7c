"""PostgreSQL's one-statement claim and success against the statements they fold.

On PostgreSQL a task's usual claim and its success each run as one statement
(data-modifying CTEs); SQLite, and PostgreSQL in every other case, run the
statements one by one. Two identical workflows go through the same steps,
one each way, on the same PostgreSQL database: every row they leave must be
the same, and so must what each way answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from celeriac.records import Lease
from celeriac.states import NodeKind
from celeriac.storage import Store, claims, connect, event_log, successes
from celeriac.storage.schema import attempts, events, nodes
from tests.integration.test_store import Flow, group_flow

pytestmark = pytest.mark.postgres

AT = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(postgres_url: str) -> Iterator[Store]:
    db = connect(postgres_url)
    yield Store(db)
    db.dispose()


def claim(store: Store, flow: Flow, name: str, at_once: bool) -> bool:
    """Claim ``name``'s first delivery one way or the other."""
    store.heartbeat("w1-1", "w1", 1)
    lease = Lease("w1-1", "w1", 1, AT)
    args = (flow.id, flow[name], "0.0", f"token-{name}", lease, AT)
    if at_once:
        with store.db.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            return claims.claim_first_at_once(conn, *args)
    with store.db.begin() as conn:
        event_log.start_events(conn)
        claimed = claims.claim_first(conn, *args)
        event_log.write_events(conn)
    return claimed


def succeed(store: Store, flow: Flow, name: str, at_once: bool) -> Any:
    """Record ``name``'s success one way or the other: (state, ready children)."""
    args = (flow.id, flow[name], 1, {"value": name}, AT)
    with store.db.begin() as conn:
        if at_once:
            done = successes.succeed_at_once(conn, *args)
        else:
            done = successes.succeed_in_steps(conn, *args)
    if done is None or done[1] is None:
        return "nothing written"
    state, ready = done
    return state, sorted((flow.name_of(row.id), row.kind) for row in ready)


def rows(store: Store, flow: Flow) -> dict[str, list[tuple[Any, ...]]]:
    """The workflow's node, attempt and event rows, its ids named."""

    def named(value: Any) -> Any:
        return flow.name_of(value) if isinstance(value, str) else value

    found = {}
    with store.db.connect() as conn:
        for table in (nodes, attempts, events):
            columns = [c for c in table.c if c.name not in ("id", "workflow_id")]
            if table is not events:
                columns.append(table.c.id if table is nodes else table.c.node_id)
            query = sa.select(*columns).where(table.c.workflow_id == flow.id)
            found[table.name] = sorted(
                (tuple(named(value) for value in row) for row in conn.execute(query)),
                key=repr,
            )
    return found


def two_workflows(store: Store) -> tuple[Flow, Flow]:
    """Two stored copies of (a, b) → JOIN j → c → END."""
    flows = []
    for _ in range(2):
        flow, new = group_flow()
        store.insert_workflow(new)
        flows.append(flow)
    return flows[0], flows[1]


def test_each_way_leaves_the_same_rows_and_answers_the_same(store: Store) -> None:
    one_statement, in_steps = two_workflows(store)
    for flow in (one_statement, in_steps):  # same creation and queue times
        with store.db.begin() as conn:
            conn.execute(
                sa.update(nodes)
                .where(nodes.c.workflow_id == flow.id)
                .values(
                    created_at=AT,
                    queued_at=sa.case((nodes.c.queued_at.is_(None), None), else_=AT),
                )
            )
            conn.execute(
                sa.update(events).where(events.c.workflow_id == flow.id).values(at=AT)
            )

    answers: dict[bool, list[Any]] = {True: [], False: []}
    for at_once, flow in ((True, one_statement), (False, in_steps)):
        steps = answers[at_once]
        steps.append(claim(store, flow, "a", at_once))
        steps.append(claim(store, flow, "a", at_once))  # already claimed
        steps.append(claim(store, flow, "c", at_once))  # not queued
        steps.append(succeed(store, flow, "a", at_once))  # j waits for b
        steps.append(succeed(store, flow, "a", at_once))  # no longer runs
        steps.append(claim(store, flow, "b", at_once))
        steps.append(succeed(store, flow, "b", at_once))  # j is ready

    assert answers[True] == answers[False]
    assert answers[True] == [
        True,
        False,
        False,
        ("IN_PROGRESS", []),
        "nothing written",
        True,
        ("IN_PROGRESS", [("j", NodeKind.JOIN)]),
    ]
    assert rows(store, one_statement) == rows(store, in_steps)
