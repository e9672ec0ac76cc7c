"""PostgreSQL's one-statement claim and success against the statements they fold.

On PostgreSQL a task's usual claim and its usual success each run as one
statement (data-modifying CTEs); SQLite, and PostgreSQL in every other case,
run the statements one by one. A success that only counts its child down
may also be one statement that commits on its own. Identical workflows go
through the same steps, one each way, on the same PostgreSQL database: every
row they leave (the events in the same order) must be the same, and so must
every answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from celeriac.records import Handoff, Lease, Outcome
from celeriac.storage import Store, claims, connect, event_log, successes
from celeriac.storage.schema import attempts, events, nodes, workflows
from tests.integration.test_fresh_statistics import statements_sent
from tests.integration.test_store import Flow
from tests.waiting import wait_for

pytestmark = pytest.mark.postgres

AT = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(postgres_url: str) -> Iterator[Store]:
    db = connect(postgres_url)
    yield Store(db)
    db.dispose()


def claim(store: Store, flow: Flow, name: str, at_once: bool) -> bool:
    """Claim ``name``'s first delivery one way or the other."""
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


#: The ways a success is recorded: its usual case in one statement; first as
#: one statement that commits on its own if it makes no child ready; or as
#: the statements one by one.
ONE_STATEMENT, COUNTING_DOWN, IN_STEPS = "one statement", "counting down", "in steps"


def succeed(
    store: Store,
    flow: Flow,
    name: str,
    way: str,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Any, ...]:
    """Record ``name``'s success one way (``ONE_STATEMENT``, …)."""
    with monkeypatch.context() as patched:
        if way == IN_STEPS:  # as if the one statement found nothing to do
            patched.setattr(successes, "succeed_at_once", lambda *_: None)
        outcome = store.record_success(
            flow.id,
            flow[name],
            1,
            {"value": name},
            counting_down=way == COUNTING_DOWN,
        )
    return answer(flow, outcome)


def answer(flow: Flow, outcome: Outcome) -> tuple[Any, ...]:
    """What an outcome says, its node ids named."""
    sent = [(flow.name_of(d.node_id), d.inputs, d.kind) for d in outcome.dispatch]
    return (
        outcome.recorded,
        sent,
        outcome.workflow_state,
        outcome.finished,
        outcome.failing,
    )


def rows(store: Store, flow: Flow) -> dict[str, list[tuple[Any, ...]]]:
    """The workflow's nodes and attempts, and its events in their order."""

    def named(row: Any) -> tuple[Any, ...]:
        # times differ from call to call: whether each is set is compared
        return tuple(
            flow.name_of(v)
            if isinstance(v, str)
            else "a time"
            if isinstance(v, datetime)
            else v
            for v in row
        )

    found = {}
    with store.db.connect() as conn:
        for table, order in ((nodes, nodes.c.id), (attempts, attempts.c.node_id)):
            columns = [c for c in table.c if c.name != "workflow_id"]
            query = sa.select(*columns).where(table.c.workflow_id == flow.id)
            found[table.name] = [
                named(row) for row in conn.execute(query.order_by(order))
            ]
        columns = [c for c in events.c if c.name not in ("id", "workflow_id")]
        query = (
            sa.select(*columns)
            .where(events.c.workflow_id == flow.id)
            .order_by(events.c.id)
        )
        found["events"] = [named(row) for row in conn.execute(query)]
    return found


def stored(store: Store, copies: int) -> list[Flow]:
    """Stored copies of: (a, b) → JOIN j → c → e, and b → d; END after d, e.

    When b succeeds after a, a join and a task are ready at once.
    """
    flows = []
    for _ in range(copies):
        flow = Flow()
        a, b = flow.task("a"), flow.task("b")
        flow.edge(b, flow.task("d"))
        c = flow.task("c")
        flow.edge(flow.join("j", a, b), c)
        flow.edge(c, flow.task("e"))
        store.insert_workflow(flow.build(result=flow["e"]))
        flows.append(flow)
    store.heartbeat("w1-1", "w1", 1)
    return flows


def test_each_way_leaves_the_same_rows_and_answers_the_same(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    ways = (ONE_STATEMENT, COUNTING_DOWN, IN_STEPS)
    flows = dict(zip(ways, stored(store, len(ways)), strict=True))
    answers: dict[str, list[Any]] = {}
    for way, flow in flows.items():
        at_once = way != IN_STEPS
        steps = answers[way] = []
        steps.append(claim(store, flow, "a", at_once))
        steps.append(claim(store, flow, "a", at_once))  # already claimed
        steps.append(claim(store, flow, "c", at_once))  # not queued
        steps.append(claim(store, flow, "b", at_once))
        steps.append(succeed(store, flow, "a", way, monkeypatch))  # j waits
        steps.append(succeed(store, flow, "a", way, monkeypatch))  # a replay
        steps.append(succeed(store, flow, "b", way, monkeypatch))  # j and d
        steps.append(claim(store, flow, "c", at_once))
        steps.append(claim(store, flow, "d", at_once))
        steps.append(succeed(store, flow, "d", way, monkeypatch))  # END waits
        steps.append(succeed(store, flow, "c", way, monkeypatch))  # e
        steps.append(claim(store, flow, "e", at_once))
        steps.append(succeed(store, flow, "e", way, monkeypatch))  # END

    assert answers[ONE_STATEMENT] == answers[COUNTING_DOWN] == answers[IN_STEPS]
    progress = ("IN_PROGRESS", False, False)
    assert answers[ONE_STATEMENT] == [
        True,
        False,
        False,
        True,
        (True, [], *progress),
        (True, [], *progress),
        (
            True,
            [
                ("c", ([{"value": "a"}, {"value": "b"}],), "TASK"),
                ("d", ({"value": "b"},), "TASK"),
            ],
            *progress,
        ),
        True,
        True,
        (True, [], *progress),
        (True, [("e", ({"value": "c"},), "TASK")], *progress),
        True,
        (True, [], "IN_PROGRESS", True, False),
    ]
    left = rows(store, flows[ONE_STATEMENT])
    assert left == rows(store, flows[COUNTING_DOWN]) == rows(store, flows[IN_STEPS])
    assert [event[1:3] for event in left["events"] if event[0] == "c"] == [
        ("PENDING", "QUEUED"),
        ("QUEUED", "RUNNING"),
        ("RUNNING", "SUCCEEDED"),
    ]


def test_a_failure_kept_while_the_success_waits_for_the_lock_is_seen(
    store: Store,
) -> None:
    """The success reads the workflow's row as it locks it, not as it started.

    A failure elsewhere keeps its error on the workflow's row; a success
    that started before that commit waits for the row's lock. Releasing
    nothing, it must say the workflow may end (``failing``): the failure's
    own transaction saw this node still running, and no one else would.
    """
    flow = Flow()
    flow.join("j", flow.task("a"), flow.task("b"))
    store.insert_workflow(flow.build(result=flow["j"]))
    store.heartbeat("w1-1", "w1", 1)
    assert claim(store, flow, "a", at_once=True)
    with store.db.connect() as failing:
        failing.begin()
        failing.execute(
            sa.update(workflows)
            .where(workflows.c.id == flow.id)
            .values(exc_type="ValueError")
        )
        with recorded_meanwhile(
            store,
            lambda: store.record_success(flow.id, flow["a"], 1, "a"),
            "the success to wait",
        ) as outcomes:
            failing.commit()
    (outcome,) = outcomes
    assert (outcome.recorded, outcome.dispatch, outcome.failing) == (True, [], True)


def test_a_join_released_after_a_wait_starts_nothing_before_its_parents_ended(
    store: Store,
) -> None:
    """(a, b) → JOIN j → c, c handed over to run in place by b's success.

    b's success reads its time, then waits for b's row (locked elsewhere)
    while a's success reads a later time and commits. b's success releases
    j and claims c: j's end and c's start come after a's end, not before,
    and c's events are in the order they happened.
    """
    flow = Flow()
    c = flow.task("c")
    flow.edge(flow.join("j", flow.task("a"), flow.task("b")), c)
    store.insert_workflow(flow.build(result=c))
    store.heartbeat("w1-1", "w1", 1)
    assert claim(store, flow, "a", at_once=True)
    assert claim(store, flow, "b", at_once=True)
    handoff = Handoff(Lease("w1-1", "w1", 1, AT), "token-c", lambda _: True)
    with store.db.connect() as holding:
        holding.begin()
        holding.execute(
            sa.select(nodes.c.id)
            .where(nodes.c.workflow_id == flow.id, nodes.c.id == flow["b"])
            .with_for_update()
        )
        with recorded_meanwhile(
            store,
            lambda: store.record_success(flow.id, flow["b"], 1, "b", handoff),
            "b's success to wait",
        ) as outcomes:
            store.record_success(flow.id, flow["a"], 1, "a")
            holding.commit()
    (outcome,) = outcomes
    assert outcome.carried is not None
    assert outcome.carried.node_id == c
    with store.db.connect() as conn:
        ended = dict(
            conn.execute(
                sa.select(attempts.c.node_id, attempts.c.finished_at).where(
                    attempts.c.workflow_id == flow.id
                )
            ).all()
        )
        started = conn.execute(
            sa.select(attempts.c.started_at).where(
                attempts.c.workflow_id == flow.id, attempts.c.node_id == c
            )
        ).scalar_one()
        joined = conn.execute(
            sa.select(nodes.c.finished_at).where(
                nodes.c.workflow_id == flow.id, nodes.c.id == flow["j"]
            )
        ).scalar_one()
    assert ended[flow["b"]] < ended[flow["a"]] <= joined <= started
    changes = [event[1:3] for event in rows(store, flow)["events"] if event[0] == "c"]
    assert changes == [("PENDING", "QUEUED"), ("QUEUED", "RUNNING")]


@contextmanager
def recorded_meanwhile(
    store: Store, record: Callable[[], Outcome], what: str
) -> Iterator[list[Outcome]]:
    """Run ``record`` in a thread; once it waits for a lock, the block runs.

    Yields the list its outcome is appended to, when it returns after the block.
    """
    outcomes: list[Outcome] = []
    recording = threading.Thread(target=lambda: outcomes.append(record()))
    recording.start()
    wait_for(lambda: waits_for_a_lock(store), timeout=10, what=what)
    yield outcomes
    recording.join(timeout=10)


def waits_for_a_lock(store: Store) -> bool:
    """Whether a session of the database waits for a lock."""
    with store.db.connect() as conn:
        found = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar_one()
    return bool(found)


def test_a_success_that_only_counts_down_is_one_statement_of_its_own(
    store: Store,
) -> None:
    """a's success counts j down: one statement, committed with no BEGIN.

    b's would make j ready: that one writes nothing, and the transaction
    that releases j records the success instead.
    """
    flow = joined_and_running(store)

    with statements_sent(store.db) as sent:
        first = store.record_success(flow.id, flow["a"], 1, "a", counting_down=True)
    assert [statement.split()[0] for statement, _ in sent] == ["WITH"]
    assert (first.recorded, first.dispatch, first.finished) == (True, [], False)
    assert node_states(store, flow) == {"a": "SUCCEEDED", "b": "RUNNING", "j": 1}

    with statements_sent(store.db) as sent:
        last = store.record_success(flow.id, flow["b"], 1, "b", counting_down=True)
    assert len(sent) > 1
    assert (last.recorded, last.finished) == (True, True)
    assert node_states(store, flow) == {"a": "SUCCEEDED", "b": "SUCCEEDED", "j": 0}


def test_a_count_down_that_would_make_its_child_ready_locks_nothing(
    store: Store,
) -> None:
    """b's success would make j ready: its one statement writes nothing.

    Nor does it lock j: a transaction that locks a row gets a transaction
    id, and its commit waits for the disk. A chain's first node tries the
    statement for nothing on every workflow.
    """
    flow = joined_and_running(store)
    store.record_success(flow.id, flow["a"], 1, "a", counting_down=True)
    with store.db.begin() as conn:
        done = successes.succeed_at_once(
            conn, flow.id, flow["b"], 1, "b", AT, counting_down=True
        )
        assigned = conn.execute(
            sa.select(sa.func.pg_current_xact_id_if_assigned())
        ).scalar()
    assert done is None
    assert assigned is None
    assert node_states(store, flow) == {"a": "SUCCEEDED", "b": "RUNNING", "j": 1}


def test_a_parent_finished_since_the_statement_began_makes_it_fall_back(
    store: Store,
) -> None:
    """b's counting down starts while a's success, uncommitted, holds j.

    The statement's snapshot shows j waiting for two parents; once a's
    success commits, j waits for b alone. b's one statement must see that
    (it locks j and reads it as it is now) and leave j's release to the
    transaction: else j would count down to 0 and never be released.
    """
    flow = joined_and_running(store)
    with store.db.connect() as holding:
        holding.begin()
        event_log.start_events(holding)
        successes.succeed(holding, flow.id, flow["a"], 1, "a", AT)
        event_log.write_events(holding)
        with recorded_meanwhile(
            store,
            lambda: store.record_success(
                flow.id, flow["b"], 1, "b", counting_down=True
            ),
            "b's success to wait",
        ) as outcomes:
            holding.commit()
    (outcome,) = outcomes
    assert (outcome.recorded, outcome.finished) == (True, True)
    assert node_states(store, flow) == {"a": "SUCCEEDED", "b": "SUCCEEDED", "j": 0}
    assert state_of(store, flow, "j") == "SUCCEEDED"


def joined_and_running(store: Store) -> Flow:
    """(a, b) → JOIN j, stored, with a and b claimed."""
    flow = Flow()
    flow.join("j", flow.task("a"), flow.task("b"))
    store.insert_workflow(flow.build(result=flow["j"]))
    store.heartbeat("w1-1", "w1", 1)
    assert claim(store, flow, "a", at_once=True)
    assert claim(store, flow, "b", at_once=True)
    return flow


def node_states(store: Store, flow: Flow) -> dict[str, Any]:
    """a's and b's states, and how many parents j still waits for."""
    with store.db.connect() as conn:
        found = conn.execute(
            sa.select(nodes.c.id, nodes.c.state, nodes.c.waiting).where(
                nodes.c.workflow_id == flow.id
            )
        ).all()
    named = {flow.name_of(row.id): row for row in found}
    return {
        "a": named["a"].state,
        "b": named["b"].state,
        "j": named["j"].waiting,
    }


def state_of(store: Store, flow: Flow, name: str) -> str:
    """The state of node ``name``."""
    with store.db.connect() as conn:
        return str(
            conn.execute(
                sa.select(nodes.c.state).where(
                    nodes.c.workflow_id == flow.id, nodes.c.id == flow[name]
                )
            ).scalar_one()
        )
