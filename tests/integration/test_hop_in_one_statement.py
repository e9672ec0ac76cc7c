"""A chain's hop run in place: the success and the next node's claim in one statement.

When a worker offers to run the one task a success makes ready
(``Handoff``), PostgreSQL writes the success and that task's claim in one
statement (``success_statements.CLAIM_AT_ONCE``). The same hops, taken with
the claim as a statement of its own after the usual success, or with every
statement one by one, must leave the same rows and give the same answers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from celeriac.records import Dispatch, Handoff, Lease, Outcome
from celeriac.storage import Store, connect, successes
from celeriac.storage.schema import attempts
from tests.integration.test_fresh_statistics import statements_sent
from tests.integration.test_one_statement_paths import (
    AT,
    answer,
    claim,
    rows,
    state_of,
)
from tests.integration.test_store import Flow

pytestmark = pytest.mark.postgres

#: The ways a hop is recorded: the claim in the success's statement; the
#: usual success, then the claim (an offer that asks first); every statement
#: one by one.
CLAIMED_WITH_IT, CLAIMED_AFTER, IN_STEPS = "claimed with it", "claimed after", "steps"


@pytest.fixture
def store(postgres_url: str) -> Iterator[Store]:
    db = connect(postgres_url)
    yield Store(db)
    db.dispose()


def chain(store: Store) -> Flow:
    """a → b → c (then END), stored, with a claimed."""
    flow = Flow()
    a, b, c = flow.task("a"), flow.task("b"), flow.task("c")
    flow.edge(a, b)
    flow.edge(b, c)
    store.insert_workflow(flow.build(result=c))
    store.heartbeat("w1-1", "w1", 1)
    assert claim(store, flow, "a", at_once=True)
    return flow


def offer(
    name: str,
    accepts: Callable[[Dispatch], bool] = lambda _: True,
    claims_early: bool = True,
) -> Handoff:
    """A worker's offer to run what ``name``'s success makes ready."""
    lease = Lease("w1-1", "w1", 1, AT)
    return Handoff(lease, f"token-after-{name}", accepts, claims_early)


def hop(
    store: Store,
    flow: Flow,
    name: str,
    way: str,
    monkeypatch: pytest.MonkeyPatch,
    handoff: Handoff | None = None,
) -> Outcome:
    """Record ``name``'s success (attempt 1) one way, offering to run its successor."""
    with monkeypatch.context() as patched:
        if way == IN_STEPS:
            patched.setattr(successes, "succeed_at_once", lambda *_, **__: None)
        handoff = handoff or offer(name, claims_early=way != CLAIMED_AFTER)
        return store.record_success(flow.id, flow[name], 1, {"value": name}, handoff)


def carried(flow: Flow, outcome: Outcome) -> tuple[Any, ...]:
    """``answer``, and the node carried to the offering worker, named."""
    handed = outcome.carried
    return (*answer(flow, outcome), handed and flow.name_of(handed.node_id))


def test_each_way_leaves_the_same_rows_and_answers_the_same(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers: dict[str, list[Any]] = {}
    left = {}
    for way in (CLAIMED_WITH_IT, CLAIMED_AFTER, IN_STEPS):
        flow = chain(store)
        answers[way] = [
            carried(flow, hop(store, flow, "a", way, monkeypatch)),
            # a replay, whose first commit went through unseen
            carried(flow, hop(store, flow, "a", way, monkeypatch)),
            carried(flow, hop(store, flow, "b", way, monkeypatch)),
            carried(flow, hop(store, flow, "c", way, monkeypatch)),
        ]
        left[way] = rows(store, flow)

    progress = ("IN_PROGRESS", False, False)
    assert answers[CLAIMED_WITH_IT] == [
        (True, [], *progress, "b"),
        (True, [], *progress, "b"),
        (True, [], *progress, "c"),
        (True, [], "IN_PROGRESS", True, False, None),
    ]
    assert answers[CLAIMED_WITH_IT] == answers[CLAIMED_AFTER] == answers[IN_STEPS]
    assert left[CLAIMED_WITH_IT] == left[CLAIMED_AFTER] == left[IN_STEPS]
    events = left[CLAIMED_WITH_IT]["events"]
    assert [event[:3] for event in events if event[0] == "b"] == [
        ("b", "PENDING", "QUEUED"),
        ("b", "QUEUED", "RUNNING"),
        ("b", "RUNNING", "SUCCEEDED"),
    ]


def test_a_hop_is_one_statement_and_its_attempt_runs_on_the_offering_lease(
    store: Store,
) -> None:
    flow = chain(store)
    with statements_sent(store.db) as sent:
        outcome = store.record_success(flow.id, flow["a"], 1, "a", offer("a"))
    assert [statement.split()[0] for statement, _ in sent] == ["WITH"]
    assert outcome.carried is not None
    assert (outcome.carried.node_id, outcome.carried.attempt_base) == (flow["b"], 0)
    assert outcome.carried.inputs == ("a",)
    with store.db.connect() as conn:
        started = conn.execute(
            sa.select(
                attempts.c.number,
                attempts.c.state,
                attempts.c.worker_id,
                attempts.c.delivery,
                attempts.c.claim_token,
            ).where(attempts.c.workflow_id == flow.id, attempts.c.node_id == flow["b"])
        ).all()
    assert [tuple(row) for row in started] == [
        (1, "RUNNING", "w1-1", "0.0", "token-after-a")
    ]


def test_an_offer_that_asks_first_claims_in_a_statement_of_its_own(
    store: Store,
) -> None:
    """After a refusal, a worker's offer asks before the success claims."""
    flow = chain(store)
    with statements_sent(store.db) as sent:
        outcome = store.record_success(
            flow.id, flow["a"], 1, "a", offer("a", claims_early=False)
        )
    assert [statement.split()[:2] for statement, _ in sent] == [
        ["WITH", "workflow"],
        ["WITH", "claimed"],
    ]
    assert outcome.carried is not None
    assert outcome.carried.node_id == flow["b"]


def test_a_refused_offer_leaves_the_successor_queued_for_the_broker(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker cannot run the claimed successor itself (another queue, …).

    Nothing of the claim stays: the success is written as if no offer had
    been made, and the successor is to be published.
    """
    offered = []

    def refuses(dispatch: Dispatch) -> bool:
        offered.append(dispatch.node_id)
        return False

    flow = chain(store)
    outcome = hop(store, flow, "a", CLAIMED_WITH_IT, monkeypatch, offer("a", refuses))
    unoffered = chain(store)
    store.record_success(unoffered.id, unoffered["a"], 1, {"value": "a"})

    assert offered == [flow["b"]]
    assert carried(flow, outcome) == (
        True,
        [("b", ({"value": "a"},), "TASK")],
        "IN_PROGRESS",
        False,
        False,
        None,
    )
    assert rows(store, flow) == rows(store, unoffered)
    assert state_of(store, flow, "b") == "QUEUED"
