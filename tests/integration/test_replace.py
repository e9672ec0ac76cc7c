"""``Task.replace`` inside a workflow: the replacement becomes nodes of its DAG.

A task replacing itself (``t.replace_with``, whose last argument is the
replacing canvas) runs on native Celery and through celeriac; both must
agree on the result and on the tasks that ran (``test_canvas_differential``'s
runners). Then what only celeriac has: the replacement's nodes in
``nodes()`` with the node they replace, pause, cancel and retry covering
them, a replacement refused (an unknown task, too many nodes, a second one).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from celery import Celery, Signature, chain, chord, group, signature

from celeriac import Engine, WorkflowFailed, WorkflowState
from celeriac.engine.replacement import compile_replacement
from celeriac.engine.worker import embedded_worker
from celeriac.states import NodeKind
from tests.integration.test_canvas_differential import (
    Case,
    Outcome,
    _queues,
    run_celeriac,
    run_native,
)
from tests.integration.test_replays import lose_next_reply
from tests.tasks import make_app
from tests.waiting import wait_for

W = WorkflowState
TIMEOUT = 15.0


def _with_callback(t: SimpleNamespace) -> Any:
    sig = t.replace_with.s(chain(t.add.s(1, 2), t.mul.s(10)))
    sig.link(t.add.s(1))
    return chain(sig, t.add.s(5))


def _failing_with_errback(t: SimpleNamespace) -> Any:
    sig = t.replace_with.s(chain(t.add.s(2), t.boom.s()))
    sig.link_error(t.on_error.s())
    return chain(t.add.s(0, 1), sig, t.add.s(5))


CASES = [
    Case("task", lambda t: t.replace_with.s(t.add.s(1, 2))),
    Case("chain", lambda t: t.replace_with.s(chain(t.add.s(1, 2), t.mul.s(10)))),
    Case("group", lambda t: t.replace_with.s(group(t.add.s(1, 2), t.add.s(3, 4)))),
    Case(
        "chord",
        lambda t: t.replace_with.s(chord([t.add.s(1, 2), t.add.s(3, 4)], t.tsum.s())),
    ),
    Case(
        "middle-of-chain",
        lambda t: chain(
            t.add.s(1, 2),
            t.replace_with.s(chain(t.add.s(10), t.mul.s(2))),
            t.add.s(1),
        ),
    ),
    Case(
        "in-group",
        lambda t: group(
            t.replace_with.s(chain(t.add.s(1, 1), t.mul.s(3))), t.add.s(5, 5)
        ),
    ),
    Case(
        "in-chord-header",
        lambda t: chord(
            [t.replace_with.s(group(t.add.s(1, 1), t.add.s(2, 2))), t.add.s(3, 3)],
            t.identity.s(),
        ),
    ),
    Case(
        "chord-body",
        lambda t: chord([t.add.s(1, 1), t.add.s(2, 2)], t.replace_with.s(t.tsum.s())),
    ),
    Case("with-callback", _with_callback),
    # Celery refuses it: ImproperlyConfigured("Cannot replace with an empty chain")
    Case("empty-chain", lambda t: chain(t.add.s(1, 2), t.replace_with.si(chain()))),
    Case("failing-with-errback", _failing_with_errback, by_name=True),
    Case(
        "nested-twice",
        lambda t: chain(
            t.replace_with.s(
                t.replace_with.s(chord([t.add.s(1, 1), t.add.s(2, 2)], t.tsum.s()))
            ),
            t.add.s(100),
        ),
    ),
]


@pytest.fixture
def app() -> Celery:
    return _queues(make_app())


@pytest.fixture(scope="module")
def native_outcomes() -> dict[str, Outcome]:
    """Every case on native Celery, before any celeriac worker starts."""
    app = _queues(make_app("native", result_backend="cache+memory://"))
    with embedded_worker(app, concurrency=4):
        return {case.id: run_native(app, case) for case in CASES}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_a_replacing_task_ends_as_on_native_celery(
    case: Case,
    native_outcomes: dict[str, Outcome],
    engine: Engine,
    worker: object,
) -> None:
    expected = native_outcomes[case.id]
    actual = run_celeriac(engine, case)
    assert actual.ending == expected.ending
    assert actual.ran == expected.ran


def test_the_replacement_nodes_name_the_node_they_replace(engine, tasks, worker):
    t = tasks
    workflow = engine.submit(
        chain(
            t.add.s(1, 2),
            t.replace_with.s(t.replace_with.s(group(t.add.si(1, 1), t.add.si(2, 2)))),
        )
    )
    assert workflow.get(timeout=TIMEOUT) == [2, 4]
    first, outer, *added = workflow.nodes()
    assert (first.replaces, outer.replaces) == (None, None)
    assert (outer.state, [a.state for a in outer.attempts]) == (
        "SUCCEEDED",
        ["REPLACED"],
    )
    assert outer.result == [2, 4]
    identity, inner = (n for n in added if n.replaces == outer.id)
    assert (identity.task, inner.task) == ("t.identity", "t.replace_with")
    assert inner.result == [2, 4]
    innermost = [n for n in added if n.replaces == inner.id]
    assert sorted(n.task for n in innermost) == ["t.add", "t.add", "t.identity"]
    assert len(added) == 5


@pytest.fixture
def flaky(app: Celery) -> SimpleNamespace:
    """``r.flaky`` fails while ``broken["now"]``."""
    broken = {"now": True}

    @app.task(name="r.flaky", shared=False)
    def task(value: int) -> int:
        if broken["now"]:
            raise ValueError("flaky")
        return value * 10

    return SimpleNamespace(task=task, broken=broken)


def test_a_failed_replacement_runs_again_on_retry(engine, tasks, flaky, worker):
    t = tasks
    workflow = engine.submit(
        chain(t.replace_with.s(chain(t.add.s(1, 2), flaky.task.s())), t.add.s(1))
    )
    with pytest.raises(WorkflowFailed):
        workflow.get(timeout=TIMEOUT)
    assert [(n.task, n.state) for n in workflow.nodes()] == [
        ("t.replace_with", "REPLACED"),
        ("t.add", "SKIPPED"),
        ("t.add", "SUCCEEDED"),
        ("r.flaky", "FAILED"),
    ]
    flaky.broken["now"] = False
    workflow.retry()
    assert workflow.get(timeout=TIMEOUT) == 31
    replaced = workflow.nodes()[0]
    assert [a.state for a in replaced.attempts] == ["REPLACED"]
    assert [n.state for n in workflow.nodes()] == ["SUCCEEDED"] * 4


def test_a_pause_holds_the_replacement_back_until_resume(engine, tasks, gate, worker):
    t = tasks
    fanout = group(t.add.si(i, i) for i in range(6))
    workflow = engine.submit(t.replace_with.s(chain(gate.wait.si(0), fanout)))
    assert gate.started.wait(TIMEOUT)
    workflow.pause()
    gate.opened.set()
    wait_for(lambda: workflow.state == W.PAUSED, TIMEOUT, what="PAUSED")
    adds = [n for n in workflow.nodes() if n.task == "t.add"]
    assert [n.state for n in adds] == ["PENDING"] * 6
    assert not [name for name, _ in tasks.ran if name == "t.add"]

    workflow.resume()
    assert workflow.get(timeout=TIMEOUT) == [0, 2, 4, 6, 8, 10]


def test_a_cancel_reaches_the_replacement_and_the_replaced_node(
    engine, tasks, gate, worker
):
    t = tasks
    workflow = engine.submit(
        chain(t.replace_with.s(chain(gate.wait.si(1), t.add.s(1))), t.add.s(1))
    )
    assert gate.started.wait(TIMEOUT)
    workflow.cancel(terminate=True)
    gate.opened.set()
    assert workflow.state == W.CANCELLED
    # threads cannot be terminated: the running body finishes, and is recorded
    wait_for(
        lambda: workflow.nodes()[2].state != "RUNNING", TIMEOUT, what="r.wait to end"
    )
    states = [(n.task, n.state) for n in workflow.nodes()]
    assert states[:2] + states[3:] == [
        ("t.replace_with", "CANCELLED"),
        ("t.add", "CANCELLED"),
        ("t.add", "CANCELLED"),
    ]
    assert not [name for name, _ in tasks.ran if name == "t.add"]


def test_a_task_replacing_itself_after_a_cancel_adds_nothing(
    engine, tasks, gate, worker
):
    t = tasks
    workflow = engine.submit(chain(gate.replace_later.s(t.add.s(1, 2)), t.add.s(1)))
    assert gate.started.wait(TIMEOUT)
    workflow.cancel()
    gate.opened.set()
    wait_for(
        lambda: workflow.nodes()[0].state == "CANCELLED", TIMEOUT, what="CANCELLED"
    )
    replacing, after = workflow.nodes()
    assert after.state == "CANCELLED"
    assert [a.state for a in replacing.attempts] == ["REPLACED"]
    assert not [name for name, _ in tasks.ran if name == "t.add"]


def _unknown() -> Signature:
    return signature("no.such.task")


def test_a_replacement_naming_an_unknown_task_fails_the_node(engine, tasks, worker):
    workflow = engine.submit(
        chain(
            tasks.replace_with.s(chain(tasks.add.s(1, 2), _unknown())), tasks.add.s(1)
        )
    )
    with pytest.raises(WorkflowFailed) as caught:
        workflow.get(timeout=TIMEOUT)
    assert caught.value.exc_type == "UnknownTask"
    replacing, after = workflow.nodes()  # nothing of the replacement stored
    assert (replacing.state, after.state) == ("FAILED", "SKIPPED")
    assert "no.such.task" in (replacing.error or "")


def test_a_replacement_wider_than_the_guard_fails_the_node(app, database_url):
    engine = Engine(app, database_url, max_replacement_nodes=5)
    engine.migrate()
    t = app.test_tasks
    try:
        with engine.embedded_worker():
            fits = engine.submit(
                t.replace_with.s(group(t.add.s(i, 1) for i in range(3)))
            )
            assert fits.get(timeout=TIMEOUT) == [1, 2, 3]  # 3 adds and their join
            wide = engine.submit(
                t.replace_with.s(group(t.add.s(i, 1) for i in range(5)))  # 6 nodes
            )
            with pytest.raises(WorkflowFailed) as caught:
                wide.get(timeout=TIMEOUT)
        assert caught.value.exc_type == "ReplacementTooLarge"
        assert "max_replacement_nodes (5)" in caught.value.exc_message
        assert [n.state for n in wide.nodes()] == ["FAILED"]  # nothing added
    finally:
        engine.close()


def test_a_node_attempt_is_replaced_once(engine, tasks, worker):
    workflow = engine.submit(tasks.replace_with.s(chain(tasks.add.s(1, 2))))
    assert workflow.get(timeout=TIMEOUT) == 3
    replaced = workflow.nodes()[0]
    again = compile_replacement(engine.app, tasks.add.s(5, 5), None, [])
    outcome = engine._store.record_replacement(workflow.id, replaced.id, 1, again)
    assert not outcome.recorded
    assert len(workflow.nodes()) == 2
    stored = engine._store.list_nodes(workflow.id, bookkeeping=True)
    ends = [n for n in stored if n.kind == NodeKind.END]
    assert [n.state for n in ends] == ["SUCCEEDED"]


def test_an_errback_replacing_itself_fails_cleanly(engine, tasks, worker):
    t = tasks
    errback = t.replace_with.s(t.add.si(1, 2))
    workflow = engine.submit(t.boom.s(1).on_error(errback))
    with pytest.raises(WorkflowFailed) as caught:
        workflow.get(timeout=TIMEOUT)
    assert caught.value.exc_type == "ValueError"
    wait_for(
        lambda: workflow.nodes()[1].state == "FAILED", TIMEOUT, what="errback FAILED"
    )
    failed, replacing = workflow.nodes()
    assert (failed.task, replacing.exc_type) == ("t.boom", "InvalidCanvas")
    assert "an errback cannot replace itself" in (replacing.error or "")


@pytest.mark.postgres
def test_a_replacement_whose_commit_reply_was_lost_is_stored_and_sent_once(
    postgres_url: str,
) -> None:
    engine = Engine(make_app(), postgres_url)
    engine.migrate()
    t = engine.app.test_tasks
    lost = lose_next_reply(engine, "record_replacement")
    try:
        with engine.embedded_worker():
            workflow = engine.submit(
                chain(t.replace_with.s(group(t.add.s(1, 2), t.add.s(3, 4))), t.tsum.s())
            )
            assert workflow.get(timeout=TIMEOUT) == 10
        assert lost == ["record_replacement"]
        tasks = [n.task for n in workflow.nodes()]
        assert sorted(tasks) == ["t.add", "t.add", "t.replace_with", "t.tsum"]
        assert sorted(name for name, _ in t.ran) == [
            "t.add",
            "t.add",
            "t.replace_with",
            "t.tsum",
        ]
    finally:
        engine.close()


@pytest.mark.postgres
def test_a_replacement_result_whose_commit_reply_was_lost_releases_what_follows(
    postgres_url: str,
) -> None:
    """The replay of the result's commit publishes what the replaced node freed."""
    engine = Engine(make_app(), postgres_url)  # recovery_delay: 60 s
    engine.migrate()
    t = engine.app.test_tasks
    lost = lose_next_reply(engine, "record_success")
    try:
        with engine.embedded_worker():
            workflow = engine.submit(chain(t.replace_with.s(t.add.s(1, 2)), t.add.s(1)))
            assert workflow.get(timeout=TIMEOUT) == 4
        assert lost == ["record_success"]
    finally:
        engine.close()
