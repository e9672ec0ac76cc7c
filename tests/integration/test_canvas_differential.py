"""Differential tests: each canvas runs on native Celery and through celeriac.

Every case builds its canvas with ``build(tasks)`` from an app's test tasks,
so the same case runs on two apps whose tasks have the same names:

- natively, on one module-wide app with a result backend and an in-process
  worker: ``canvas.apply_async(args, kwargs).get()``;
- through celeriac, on a fresh app per test with the ``engine`` and
  ``worker`` fixtures: ``engine.submit(canvas, args=..., kwargs=...).get()``.

Both must agree on the result (or the failing exception's type) and on the
multiset of ``(name, args)`` of the tasks that ran. Each side waits until
every message its app published has been worked off before comparing, so
callbacks and errbacks that run after the result is known are counted too.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from celery import Celery, chain, chord, group, signals, signature
from celery.canvas import xmap
from celery.exceptions import ChordError, CPendingDeprecationWarning
from celery.exceptions import TimeoutError as CeleryTimeoutError
from kombu import Exchange, Queue

from celeriac import Engine, InvalidCanvas, UnknownTask, WorkflowFailed
from celeriac.engine.worker import embedded_worker
from tests.celery_suite.differences import documented_ids
from tests.tasks import make_app
from tests.waiting import wait_for

pytestmark = [
    # Celery warns from the worker when publishing a chain's next step fails;
    # under ``filterwarnings = error`` that warning would break the worker.
    pytest.mark.filterwarnings("ignore:Exception raised outside body:RuntimeWarning"),
]

TIMEOUT = 15.0
#: The second queue every app here consumes, named after its default queue.
EXTRA_QUEUE = "-extra"

Build = Callable[[SimpleNamespace], Any]


@dataclass(frozen=True)
class Case:
    """One canvas, called as ``canvas(*args, **kwargs)``."""

    id: str
    build: Build
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: errbacks receive a task id (or request), which differs between the
    #: two runs, so only the names of the tasks that ran are compared
    by_name: bool = False
    #: tasks Celery runs after another task of the canvas failed, which
    #: celeriac does not start: once a node fails for good nothing new is
    #: dispatched (a deliberate difference, docs/concepts.md); with by_name
    not_after_failure: tuple[str, ...] = ()
    #: how long celeriac may take
    timeout: float = TIMEOUT
    #: a canvas without tasks runs without a worker, so that no recovery
    #: pass (which every embedded worker runs) completes it late
    needs_worker: bool = True
    #: a difference listed in docs/differences.md ("D1"), and what celeriac
    #: ends with instead of Celery's ending
    difference: tuple[str, tuple[str, Any]] | None = None


@dataclass(frozen=True)
class Outcome:
    """What running a canvas came to."""

    #: ``("result", value)`` or ``("error", exception type name)``
    ending: tuple[str, Any]
    ran: list[str]


def _queues(app: Celery) -> Celery:
    """Make ``app`` consume a second queue, for the ``queue`` option."""
    default = app.conf.task_default_queue
    app.conf.task_queues = [
        Queue(name, Exchange(name), routing_key=name)
        for name in (default, default + EXTRA_QUEUE)
    ]
    return app


def extra_queue(tasks: SimpleNamespace) -> str:
    return str(tasks.add.app.conf.task_default_queue) + EXTRA_QUEUE


class Inflight:
    """Counts the messages an app published that no worker finished yet."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.prefix = str(app.conf.task_default_queue)
        self._pending: Counter[str] = Counter()
        self._lock = threading.Lock()
        signals.before_task_publish.connect(self._published, weak=False)
        signals.task_postrun.connect(self._finished, weak=False)

    def _published(
        self, routing_key: Any = None, headers: Any = None, **_: Any
    ) -> None:
        if str(routing_key or "").startswith(self.prefix) and headers:
            with self._lock:
                self._pending[headers["id"]] += 1

    def _finished(self, sender: Any = None, task_id: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is self.app:
            with self._lock:
                self._pending[task_id] -= 1

    def idle(self) -> bool:
        with self._lock:
            return all(count <= 0 for count in self._pending.values())

    def close(self) -> None:
        signals.before_task_publish.disconnect(self._published)
        signals.task_postrun.disconnect(self._finished)


@contextmanager
def inflight(app: Celery) -> Iterator[Inflight]:
    tracker = Inflight(app)
    try:
        yield tracker
    finally:
        tracker.close()


def _ran(tasks: SimpleNamespace, by_name: bool) -> list[str]:
    """The tasks that ran, sorted, each as its repr with dict keys sorted.

    (PostgreSQL's JSONB hands a stored result back with its keys reordered.)
    """
    if by_name:
        return sorted(name for name, _ in tasks.ran)
    return sorted(repr(_sorted_keys(entry)) for entry in tasks.ran)


def _sorted_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted_keys(value[key]) for key in sorted(value)}
    if isinstance(value, list | tuple):
        return type(value)(_sorted_keys(item) for item in value)
    return value


def _native_error(exc: Exception) -> str:
    """The failing task's exception type, as celeriac reports it.

    Celery fails a chord whose header failed with a ``ChordError`` naming the
    header task's exception; celeriac raises the original exception (listed
    difference D3, docs/differences.md), so the type is read from the message.
    """
    if isinstance(exc, ChordError):
        found = re.match(r"(?:Dependency \S+ raised )?(\w+)\(", str(exc))
        assert found, f"unexpected ChordError message: {exc}"
        return found.group(1)
    return type(exc).__name__


def run_native(app: Celery, case: Case) -> Outcome:
    tasks = app.test_tasks  # type: ignore[attr-defined]
    tasks.ran.clear()
    with inflight(app) as tracker:
        result = case.build(tasks).apply_async(case.args, case.kwargs)
        try:
            ending: tuple[str, Any] = (
                "result",
                result.get(timeout=TIMEOUT, interval=0.005),
            )
        except (TimeoutError, CeleryTimeoutError):
            raise
        except Exception as exc:
            ending = ("error", _native_error(exc))
        wait_for(tracker.idle, TIMEOUT, what=f"native {case.id} to settle")
    return Outcome(ending, _ran(tasks, case.by_name))


def run_celeriac(engine: Engine, case: Case) -> Outcome:
    tasks = engine.app.test_tasks  # type: ignore[attr-defined]
    with inflight(engine.app) as tracker:
        workflow = engine.submit(case.build(tasks), args=case.args, kwargs=case.kwargs)
        try:
            ending: tuple[str, Any] = ("result", workflow.get(timeout=case.timeout))
        except WorkflowFailed as exc:
            ending = ("error", exc.exc_type)
        wait_for(tracker.idle, TIMEOUT, what=f"celeriac {case.id} to settle")
    return Outcome(ending, _ran(tasks, case.by_name))


# -- the cases --------------------------------------------------------------


def _linked_signature(t: SimpleNamespace) -> Any:
    sig = t.add.s(1, 1)
    sig.link(t.mul.s(10))
    return sig


def _linked_chain(t: SimpleNamespace) -> Any:
    canvas = t.add.s(1, 1) | t.mul.s(3)
    canvas.link(t.add.s(100))
    return canvas


def _linked_chain_ending_in_group(t: SimpleNamespace) -> Any:
    # the chain's callback goes to the group's options: each member calls it
    canvas = t.add.s(1, 1) | group(t.add.s(1), t.add.s(2))
    canvas.link(t.mul.s(10))
    return canvas


def _linked_chain_ending_in_two_groups(t: SimpleNamespace) -> Any:
    # Celery makes the two groups a chord; the chain's callback goes to it,
    # which links it to its body as group.link() does: once, immutable
    canvas = chain(
        t.add.s(1, 1), group(t.add.s(1), t.add.s(2)), group(t.tsum.s(), t.tsum.s())
    )
    canvas.link(t.mul.s(10, 10))
    return canvas


def _linked_group(t: SimpleNamespace) -> Any:
    canvas = group(t.add.s(1, 1), t.add.s(2, 2))
    # Celery links a group's callback, made immutable, to its first task only.
    canvas.link(t.mul.s(10, 10))
    return canvas


def _linked_chord(t: SimpleNamespace) -> Any:
    canvas = chord([t.add.s(1, 1), t.add.s(2, 2)], t.tsum.s())
    canvas.link(t.mul.s(10))
    return canvas


def _linked_chain_ending_in_chord(t: SimpleNamespace) -> Any:
    # the chain's callback goes to the chord, which links it to its body
    canvas = t.add.s(1, 1) | chord([t.add.s(1), t.add.s(2)], t.tsum.s())
    canvas.link(t.mul.s(10))
    return canvas


def _failing_header(t: SimpleNamespace) -> list[Any]:
    # the failing task sleeps first so that its sibling surely started
    return [t.add.s(1, 1), t.sleep.si(0.1) | t.boom.s()]


def _errback_group(t: SimpleNamespace) -> Any:
    canvas = group(_failing_header(t))
    canvas.link_error(t.on_error.s())
    return canvas


def _errback_chord(errback: str, body: Build) -> Build:
    def build(t: SimpleNamespace) -> Any:
        canvas = chord(_failing_header(t), body(t))
        # chord.link_error() warns of a future default; a started worker has
        # set Celery's pending deprecations to "always" warn, over pytest's
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CPendingDeprecationWarning)
            canvas.link_error(getattr(t, errback).s())
        return canvas

    return build


CASES = [
    # -- one signature
    Case("signature", lambda t: t.add.s(2, 2)),
    Case("signature-submit-args", lambda t: t.add.s(2), args=(3,)),
    Case(
        "signature-kwargs-merge",
        lambda t: t.collect.s(1, a=1, b=2),
        args=(0,),
        kwargs={"b": 3, "c": 4},
    ),
    Case(
        "immutable-signature-ignores-submit-args",
        lambda t: t.collect.si(1, a=1),
        args=(9,),
        kwargs={"b": 2},
    ),
    Case(
        "signature-options",
        lambda t: t.options.s(1).set(queue=extra_queue(t), priority=3, countdown=0.1),
    ),
    # -- chains
    Case("chain", lambda t: chain(t.add.s(1, 1), t.add.s(2), t.mul.s(3))),
    Case("chain-pipe", lambda t: t.add.s(1, 1) | t.add.s(2) | t.mul.s(3)),
    Case("chain-submit-args", lambda t: t.add.s(1) | t.mul.s(10), args=(4,)),
    Case(
        "chain-submit-kwargs-reach-first-task-only",
        lambda t: t.collect.s(1) | t.collect.s(),
        kwargs={"k": 1},
    ),
    Case("chain-immutable-step", lambda t: t.add.s(1, 1) | t.add.si(5, 5) | t.mul.s(2)),
    Case("chain-partial-with-kwargs", lambda t: t.add.s(1, 1) | t.collect.s(5, k=1)),
    Case(
        "chain-options-go-to-first-task",
        lambda t: chain(t.options.s(1), t.options.s()).set(priority=5),
    ),
    # -- groups
    Case("group", lambda t: group(t.add.s(1, 1), t.mul.s(2, 3))),
    Case(
        "group-submit-args-and-kwargs",
        lambda t: group(t.collect.s(1), t.collect.s(2)),
        args=(10,),
        kwargs={"k": 1},
    ),
    Case(
        "group-options-override-members",
        lambda t: group(
            t.options.s(1).set(priority=1), t.options.s(2).set(queue=extra_queue(t))
        ).set(priority=4),
    ),
    Case(
        "group-of-groups-flattens",
        lambda t: group(t.add.s(1, 1), group(t.add.s(2, 2), t.add.s(3, 3))),
    ),
    Case(
        "group-flattens-empty-and-single-groups",
        lambda t: group(t.add.s(1, 1), group([]), group(t.add.s(2, 2))),
    ),
    Case(
        "empty-group",
        lambda t: group([]),
        timeout=1.0,
        needs_worker=False,
    ),
    # -- chords
    Case("chord", lambda t: chord([t.add.s(1, 1), t.add.s(2, 2)], t.tsum.s())),
    Case(
        "group-then-task-is-chord",
        lambda t: group(t.add.s(1, 1), t.add.s(2, 2)) | t.tsum.s(),
    ),
    Case(
        "chord-submit-args",
        lambda t: chord([t.add.s(1), t.add.s(2)], t.tsum.s()),
        args=(10,),
    ),
    Case(
        "chord-options-header-delayed-only",
        lambda t: chord([t.options.s(1), t.options.s(2)], t.options.s()).set(
            priority=3, countdown=0.1
        ),
    ),
    Case(
        "chord-header-given-as-a-group-with-options",
        lambda t: chord(
            group(t.options.s(1), t.options.s(2).set(priority=1)).set(
                queue=extra_queue(t), priority=2
            ),
            t.options.s(),
        ),
    ),
    Case(
        "chord-options-and-its-header-group-options",
        lambda t: chord(
            group(t.options.s(1), t.options.s(2)).set(priority=2), t.options.s()
        ).set(priority=4),
    ),
    Case("chord-empty-header", lambda t: chord([], t.tsum.s())),
    Case(
        "chord-empty-header-waits-for-chain",
        lambda t: t.sleep.s(0.2) | t.boom.s() | chord([], t.tsum.s()),
    ),
    Case(
        "chord-empty-header-after-chain-step",
        lambda t: t.sleep.s(0.2, 5) | chord([], t.tsum.s()),
    ),
    Case(
        "chord-body-is-chain",
        lambda t: chord([t.add.s(1, 1), t.add.s(2, 2)], t.tsum.s() | t.mul.s(10)),
    ),
    Case(
        "chord-body-is-group",
        lambda t: chord([t.add.s(1, 1), t.add.s(2, 2)], group(t.tsum.s(), t.tsum.s(1))),
    ),
    Case(
        "group-in-chord-header-keeps-its-order",
        lambda t: chord(
            [t.add.si(0, 0), group(t.add.si(1, 0), t.add.si(2, 0)), t.add.si(3, 0)],
            t.identity.s(),
        ),
        # the body's argument is the list that differs: compare names only
        by_name=True,
        difference=("D1", ("result", [0, 1, 2, 3])),
    ),
    Case(
        "chord-in-chord-header",
        lambda t: chord(
            [chord([t.add.s(1, 1), t.add.s(2, 2)], t.tsum.s()), t.add.s(3, 3)],
            t.tsum.s(),
        ),
    ),
    # -- nesting
    Case("chain-of-groups", lambda t: t.add.s(1, 1) | group(t.add.s(10), t.mul.s(10))),
    Case(
        "group-of-chains",
        lambda t: group(t.add.s(1, 1) | t.mul.s(2), t.add.s(3, 3) | t.mul.s(3)),
    ),
    Case(
        "group-then-group",
        lambda t: group(t.add.s(1, 1), t.add.s(2, 2)) | group(t.tsum.s(), t.tsum.s(10)),
    ),
    Case(
        "chord-in-chain-in-group",
        lambda t: group(
            t.add.s(1, 1) | chord([t.add.s(1), t.add.s(2)], t.tsum.s()), t.mul.s(2, 3)
        ),
    ),
    Case(
        "chain-ending-in-group-in-group",
        lambda t: group(t.add.s(1, 1), t.add.s(2, 2) | group(t.add.s(1), t.add.s(2))),
    ),
    Case(
        "group-of-one-chain-ending-in-group",
        lambda t: group(t.add.s(1, 2) | group(t.add.s(1), t.add.s(2))),
    ),
    Case(
        "chain-starting-with-empty-chain",
        lambda t: chain(chain(), t.add.s(10)),
        args=(5,),
    ),
    Case(
        "group-of-one-in-chain",
        lambda t: t.add.s(1, 1) | group(t.mul.s(5)) | t.add.s(1),
    ),
    Case(
        "empty-group-in-chain-is-skipped",
        lambda t: chain(t.add.s(1, 1), group([]), t.add.s(3)),
    ),
    Case(
        "chord-with-chain-body-in-middle-of-chain",
        lambda t: (
            t.add.s(1, 1)
            | chord([t.add.s(1), t.add.s(2)], t.tsum.s() | t.mul.s(2))
            | t.add.s(1)
        ),
    ),
    Case(
        "group-of-chords",
        lambda t: group(
            chord([t.add.s(1, 1)], t.tsum.s()),
            chord([t.add.s(2, 2), t.add.s(3, 3)], t.tsum.s()),
        ),
    ),
    Case(
        "chord-in-middle-of-chain",
        lambda t: (
            t.add.s(1, 1) | chord([t.add.s(1), t.add.s(2)], t.tsum.s()) | t.mul.s(10)
        ),
    ),
    # -- map, starmap, chunks
    Case("map", lambda t: t.identity.map([1, 2, 3])),
    Case("starmap", lambda t: t.add.starmap([(1, 2), (3, 4)])),
    Case("chunks", lambda t: t.add.chunks([(1, 2), (3, 4), (5, 6)], 2)),
    # -- link
    Case("link-on-signature", _linked_signature),
    Case("link-on-chain", _linked_chain),
    Case("link-on-chain-ending-in-group", _linked_chain_ending_in_group),
    Case("link-on-chain-ending-in-two-groups", _linked_chain_ending_in_two_groups),
    Case("link-on-group", _linked_group),
    Case(
        "link-option-on-group-reaches-every-member",
        lambda t: group(t.add.s(1, 1), t.add.s(2, 2)).set(link=t.mul.s(10)),
    ),
    Case("link-on-chord", _linked_chord),
    Case("link-on-chain-ending-in-chord", _linked_chain_ending_in_chord),
    # -- failures
    Case("chain-failure", lambda t: t.add.s(1, 1) | t.boom.s() | t.add.s(1)),
    Case(
        "chain-step-cannot-take-parent-result",
        lambda t: t.add.s(1, 1) | t.add.s(1, 1),
    ),
    Case("group-failure", lambda t: group(_failing_header(t))),
    Case(
        "group-failure-sibling-chain-continues",
        lambda t: group(t.sleep.si(0.1) | t.boom.s(), t.sleep.s(0.4, 5) | t.mul.s(2)),
    ),
    Case(
        "group-failure-sibling-chain-starts-after-it",
        lambda t: group(t.boom.si(), t.sleep.s(0.2, 5) | t.mul.s(2)),
    ),
    Case(
        "chord-header-failure-every-member-runs",
        lambda t: chord([t.add.si(1, 1), t.add.si(2, 2), t.boom.si()], t.tsum.s()),
    ),
    Case("chord-header-failure", lambda t: chord(_failing_header(t), t.tsum.s())),
    Case("chord-body-failure", lambda t: chord([t.add.s(1, 1)], t.boom.s())),
    # -- link_error. Errbacks get the failed task's id (or its request), which
    # differ between the two runs: these cases compare task names only.
    Case(
        "link-error-on-signature",
        lambda t: t.boom.s(1).on_error(t.on_error.s()),
        by_name=True,
    ),
    Case(
        "link-error-request-on-signature",
        lambda t: t.boom.s(1).on_error(t.on_error_request.s()),
        by_name=True,
    ),
    Case(
        "link-error-on-chain",
        lambda t: (t.add.s(1, 1) | t.boom.s() | t.add.s(1)).on_error(t.on_error.s()),
        by_name=True,
    ),
    Case("link-error-on-group", _errback_group, by_name=True),
    Case(
        "link-error-on-chord",
        _errback_chord("on_error", lambda t: t.tsum.s()),
        by_name=True,
    ),
    Case(
        "link-error-request-on-chord",
        _errback_chord("on_error_request", lambda t: t.tsum.s()),
        by_name=True,
    ),
    Case(
        "link-error-on-chord-with-chain-body",
        _errback_chord("on_error", lambda t: t.tsum.s() | t.mul.s(2)),
        by_name=True,
    ),
    Case(
        "link-error-on-chord-with-group-body",
        _errback_chord("on_error", lambda t: group(t.tsum.s(), t.tsum.s(1))),
        by_name=True,
    ),
    Case(
        "link-error-on-chord-with-chord-body",
        _errback_chord(
            "on_error", lambda t: chord([t.add.s(1), t.add.s(2)], t.tsum.s())
        ),
        by_name=True,
    ),
    Case(
        "link-error-on-chain-around-failing-chord",
        lambda t: (
            t.add.s(1, 1)
            | chord([t.add.s(1), t.sleep.si(0.1) | t.boom.s()], t.tsum.s())
            | t.mul.s(2)
        ).on_error(t.on_error.s()),
        by_name=True,
    ),
    # a group followed by a group in a chain stays two steps until the chain
    # runs, and Celery makes them a chord then: the chain's errback reaches
    # the body only, and runs once per body member when the header fails
    Case(
        "link-error-on-chain-of-two-groups-after-a-step",
        lambda t: (
            t.add.s(1, 1)
            | group(t.add.s(1), t.sleep.si(0.1) | t.boom.s())
            | group(t.tsum.s(), t.tsum.s(1), t.tsum.s(2))
        ).on_error(t.on_error.s()),
        by_name=True,
    ),
    # in a chain, a chord's chain body runs unrolled: chord(header, tsum), mul
    # follows; tsum alone is the body, so its errback runs on a header failure
    Case(
        "link-error-in-chain-body-of-failing-chord-in-chain",
        lambda t: (
            t.add.s(1, 1)
            | chord(
                [t.add.s(1), t.sleep.si(0.1) | t.boom.s()],
                t.tsum.s().on_error(t.on_error.s()) | t.mul.s(2),
            )
        ),
        by_name=True,
    ),
]


def _params() -> list[Any]:
    return [pytest.param(case, id=case.id) for case in CASES]


# -- fixtures -----------------------------------------------------------------


@pytest.fixture
def app() -> Celery:
    """A fresh app per test for celeriac, consuming the extra queue too."""
    return _queues(make_app())


@pytest.fixture(scope="module")
def native_outcomes(request: pytest.FixtureRequest) -> dict[str, Outcome | Exception]:
    """Every collected case, run once on native Celery, before celeriac runs any.

    The native worker is stopped before the first celeriac worker starts:
    in-process workers share process-wide state (the thread pool runs tasks
    of the default app, which the last worker started sets; a worker that
    stops sets ``worker.state.should_terminate`` for all), so two at once
    run each other's tasks.
    """
    params = (
        getattr(getattr(item, "callspec", None), "params", {})
        for item in request.session.items
    )
    wanted = {each["case"].id for each in params if "case" in each}
    app = _queues(make_app("native", result_backend="cache+memory://"))
    # celeriac's embedded worker is Celery's start_worker (threads, 4, no
    # ping check), stopped in milliseconds rather than seconds; it installs
    # nothing of celeriac's on the app.
    with embedded_worker(app, concurrency=4):
        return {
            case.id: _run_native_or_error(app, case)
            for case in CASES
            if case.id in wanted
        }


def _run_native_or_error(app: Celery, case: Case) -> Outcome | Exception:
    """A case that cannot run natively fails its own test, not every test."""
    try:
        return run_native(app, case)
    except Exception as exc:
        return exc


# -- the tests ----------------------------------------------------------------


def test_cases_are_many_and_distinct() -> None:
    assert len(CASES) >= 35
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", _params())
def test_celeriac_agrees_with_celery(
    case: Case,
    native_outcomes: dict[str, Outcome | Exception],
    engine: Engine,
    request: pytest.FixtureRequest,
) -> None:
    expected = native_outcomes[case.id]
    if isinstance(expected, Exception):
        raise expected
    if case.needs_worker:
        request.getfixturevalue("worker")
    actual = run_celeriac(engine, case)
    if case.difference is None:
        assert actual.ending == expected.ending
    else:
        listed, ending = case.difference
        assert listed in documented_ids()
        assert expected.ending != ending  # Celery does differ there
        assert actual.ending == ending
    assert actual.ran == expected.ran


def _stored_rows(engine: Engine) -> tuple[int, int, int]:
    """How many workflows, nodes and edges are stored."""
    with engine._db.connect() as conn:
        workflows, nodes, edges = (
            conn.execute(sa.text(f"SELECT count(*) FROM celeriac_{table}")).scalar_one()
            for table in ("workflows", "nodes", "edges")
        )
    return workflows, nodes, edges


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda t: signature("t.nope", args=(1,)), id="signature"),
        pytest.param(
            lambda t: chord([t.add.s(1, 1)], signature("t.nope")), id="chord-body"
        ),
        pytest.param(
            # edges are stored while the canvas is walked: those made before
            # the unknown task is found go too
            lambda t: chain(*[t.add.s(1) for _ in range(500)], signature("t.nope")),
            id="last-of-a-long-chain",
        ),
        pytest.param(
            lambda t: t.add.s(1, 1).on_error(signature("t.nope")), id="errback"
        ),
        pytest.param(
            # xmap takes a signature as well as a task
            lambda t: xmap(signature("t.nope"), [1, 2]),  # type: ignore[arg-type]
            id="map-task",
        ),
    ],
)
def test_unknown_task_is_refused_and_nothing_stored(
    engine: Engine, tasks: SimpleNamespace, build: Build
) -> None:
    with pytest.raises(UnknownTask) as raised:
        engine.submit(build(tasks))
    assert raised.value.task_name == "t.nope"
    assert _stored_rows(engine) == (0, 0, 0)


@pytest.mark.parametrize(
    ("build", "args", "kwargs"),
    [
        pytest.param(lambda t: t.add.s(object(), 1), (), None, id="signature-args"),
        pytest.param(lambda t: t.add.s(1), (object(),), None, id="submit-args"),
        pytest.param(lambda t: t.collect.s(), (), {"k": object()}, id="submit-kwargs"),
        pytest.param(
            lambda t: chord([t.add.s(1, 1)], t.collect.s(k={1, 2})),
            (),
            None,
            id="chord-body",
        ),
    ],
)
def test_non_json_arguments_are_refused_and_nothing_stored(
    engine: Engine,
    tasks: SimpleNamespace,
    build: Build,
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None,
) -> None:
    with pytest.raises(InvalidCanvas):
        engine.submit(build(tasks), args=args, kwargs=kwargs)
    assert _stored_rows(engine) == (0, 0, 0)
