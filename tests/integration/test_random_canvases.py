"""Random canvases, each run on native Celery and through celeriac (Hypothesis).

Canvases come from ``tests.random_canvases``: chains, groups and chords
nested up to depth 4, up to 8 wide, partial and immutable signatures with
kwargs, empty and one-member groups, failing and retrying tasks at random
places, ``link`` and ``link_error`` on any part, and tasks that replace
themselves (``Task.replace``) with such a canvas, nested too. A canvas
Celery's own canvas code cannot build is left out (``celery_builds``).

Each canvas runs on one app (``tests.random_canvas_app``), one Redis broker
and result backend, one set of workers: natively with ``apply_async`` and
then through ``engine.submit``. Both must agree on the result (or the
failure's exception type), the multiset of task bodies that ran with their
arguments (errbacks included), and the final state. Differences are
forgiven only through ``DIFFERENCES``, whose ids are docs/differences.md's.

Profiles (tests/hypothesis_profiles.py): ``ci`` runs 200 canvases from a fixed
seed on an embedded threads worker and SQLite; ``long`` runs 2,000 on
PostgreSQL with two prefork worker processes.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from celery.exceptions import ChordError
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import ResultSet
from hypothesis import example, given, settings

from celeriac import WorkflowFailed
from tests.celery_suite.differences import documented_ids
from tests.conftest import SUMMARY_LINE
from tests.random_canvases import (
    Built,
    Chain,
    Chord,
    Extras,
    Group,
    Spec,
    Task,
    build,
    canvases,
    depth,
    replacing_tasks,
    size,
)
from tests.tasks import close_app
from tests.waiting import wait_for
from tests.workers import ROOT, Workers

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:Exception raised outside body:RuntimeWarning"),
]

#: seconds a canvas of a few tiny tasks may take, natively or not
TIMEOUT = 30.0
#: seconds a settled native canvas's result gets to come, at most
GRACE = 10.0
#: seconds a settled native canvas's result gets while nothing at all happens
IDLE = 2.0
LONG = "long"

Outcome = tuple[tuple[Any, ...], list[str], str]
#: a ChordError's message names the failed task's exception (D3, D13)
CHORD_ERROR = re.compile(r"(?:Dependency \S+ raised |Join error: )?(\w+)\((.*)\)$")


def _chord_error_inner(message: str) -> tuple[str, str]:
    """The type and message of the exception a ChordError's message names.

    That of the innermost, when it names another ChordError.
    """
    found = CHORD_ERROR.match(message)
    assert found, f"unexpected ChordError message: {message}"
    inner = found.group(2)
    inner = inner[1:-1] if inner[:1] in "'\"" else inner
    if found.group(1) == "ChordError":
        return _chord_error_inner(inner)
    return found.group(1), inner


def _native_hang(
    built: Built, native: Outcome, celeriac: Outcome
) -> tuple[Outcome, Outcome]:
    """D2: a canvas whose result never comes natively fails through celeriac.

    (A group after a failed chain step: Celery never marks its members.)
    """
    if native[::2] == (("no result",), "hung") and celeriac[2] == "FAILED":
        return (celeriac[0], native[1], celeriac[2]), celeriac
    return native, celeriac


def _in_any_order(
    built: Built, native: Outcome, celeriac: Outcome
) -> tuple[Outcome, Outcome]:
    """D1: Celery reverses a group nested in a group or a chord's header.

    Every list in the result and in the tasks' inputs is compared sorted.
    """
    if not built.nests_a_group:
        return native, celeriac

    def sort(value: Any) -> Any:
        if isinstance(value, list | tuple):
            return sorted((sort(item) for item in value), key=repr)
        return value

    def sort_inputs(entry: str) -> str:
        name, label, inputs, *rest = json.loads(entry)
        return json.dumps([name, label, sort(inputs), *rest], sort_keys=True)

    def sorted_outcome(outcome: Outcome) -> Outcome:
        ending = tuple(sort(part) for part in outcome[0])
        ran = sorted(sort_inputs(entry) for entry in outcome[1])
        return ending, ran, outcome[2]

    return sorted_outcome(native), sorted_outcome(celeriac)


def _without_nested_chain_links(
    built: Built, native: Outcome, celeriac: Outcome
) -> tuple[Outcome, Outcome]:
    """D12: celeriac also runs what Celery drops of a chain nested in a chain.

    Its callbacks, and the errbacks of a chain that is another's only part;
    the callbacks of a task replaced by a chain ending in a chain.
    """

    def drop(outcome: Outcome) -> Outcome:
        ran = [
            entry
            for entry in outcome[1]
            if json.loads(entry)[1] not in built.nested_chain_links
        ]
        return outcome[0], ran, outcome[2]

    return drop(native), drop(celeriac)


def _errbacks_see_the_task_error(
    built: Built, native: Outcome, celeriac: Outcome
) -> tuple[Outcome, Outcome]:
    """D13: a chord's errbacks get a ChordError natively, the task's error here.

    Compared by the failed task's exception type: when several header tasks
    fail, which one the errback is told of is not the same failure either
    (nor, for the errbacks Celery calls with the task's own error, told of
    the same one in two runs: ``_told_of_another_failure``).
    """
    chord_errbacks = {
        json.loads(entry)[1]
        for entry in native[1]
        if json.loads(entry)[0] == "r.errback" and json.loads(entry)[2] == "ChordError"
    } | _told_of_another_failure(native, celeriac)

    def by_type(entry: str, native_side: bool) -> str:
        name, label, exc_type, message = (json.loads(entry) + [None] * 4)[:4]
        if name != "r.errback" or label not in chord_errbacks:
            return entry
        if native_side and exc_type == "ChordError":
            exc_type = _chord_error_inner(message)[0]
        return json.dumps([name, label, exc_type], sort_keys=True)

    def adjusted(outcome: Outcome, native_side: bool) -> Outcome:
        ran = sorted(by_type(entry, native_side) for entry in outcome[1])
        return outcome[0], ran, outcome[2]

    if not chord_errbacks:
        return native, celeriac
    return adjusted(native, True), adjusted(celeriac, False)


def _told_of_another_failure(native: Outcome, celeriac: Outcome) -> set[int]:
    """The errbacks told of other failures both ways, of the same types.

    Their runs name the same exception types, as often, both ways; only
    the messages (which failed task) differ.
    """

    def runs(outcome: Outcome, label: int, detail: int) -> Counter[tuple[Any, ...]]:
        return Counter(
            tuple(json.loads(entry)[2:detail])
            for entry in outcome[1]
            if json.loads(entry)[:2] == ["r.errback", label]
        )

    labels = {
        json.loads(entry)[1]
        for entry in native[1] + celeriac[1]
        if json.loads(entry)[0] == "r.errback"
    }
    return {
        label
        for label in labels
        if runs(native, label, 3) == runs(celeriac, label, 3)
        and runs(native, label, 4) != runs(celeriac, label, 4)
    }


def _empty_group_result(
    built: Built, native: Outcome, celeriac: Outcome
) -> tuple[Outcome, Outcome]:
    """D15: natively, an empty group's result is ``[]`` at once.

    So a canvas ending in one, or in a group with a member ending in one,
    completes natively where a task before it failed.
    """
    completed = native[0][0] == "result" and native[2] == "COMPLETED"
    if built.ends_in_empty_group and completed and celeriac[2] == "FAILED":
        return native, (native[0], celeriac[1], native[2])
    return native, celeriac


def _stalled_chord_errbacks(
    built: Built, native: Outcome, celeriac: Outcome
) -> tuple[Outcome, Outcome]:
    """D16: the errbacks of a chord whose header's nested chord failed.

    Celery never calls them; celeriac does. Only celeriac's extra runs of
    those errbacks are dropped.
    """
    labels = built.stalled_chord_errbacks
    return native, _without_extra_errbacks(labels, native, celeriac)


def _unreached_replaced_errbacks(
    built: Built, native: Outcome, celeriac: Outcome
) -> tuple[Outcome, Outcome]:
    """D19: the errbacks of a task replaced by a group or chord, then its chain.

    Celery calls none of them when the replacement's header fails;
    celeriac does. Only celeriac's extra runs of those errbacks are dropped.
    """
    labels = built.unreached_replaced_errbacks
    return native, _without_extra_errbacks(labels, native, celeriac)


def _without_extra_errbacks(
    labels: set[int], native: Outcome, celeriac: Outcome
) -> Outcome:
    """``celeriac`` without its runs of the errbacks ``labels`` beyond native's."""
    extra = Counter(celeriac[1]) - Counter(native[1])
    dropped = Counter(
        entry
        for entry in extra.elements()
        if json.loads(entry)[0] == "r.errback" and json.loads(entry)[1] in labels
    )
    ran = sorted((Counter(celeriac[1]) - dropped).elements())
    return celeriac[0], ran, celeriac[2]


def _empty_body_goes_on(
    built: Built, native: Outcome, celeriac: Outcome
) -> tuple[Outcome, Outcome]:
    """D17: natively, what follows a chord with an empty group body may never run.

    Forgiven only when every task that ran natively ran through celeriac too.
    """
    if (
        built.empty_body_before_a_step
        and native[::2] == (("no result",), "hung")
        and celeriac[2] == "COMPLETED"
        and not Counter(native[1]) - Counter(celeriac[1])
    ):
        return celeriac, celeriac
    return native, celeriac


def _fanned_out_steps(
    built: Built, native: Outcome, celeriac: Outcome
) -> tuple[Outcome, Outcome]:
    """D20: what follows a chord with a group body runs once per member natively.

    Forgiven when both ran the same tasks but those: their runs are not
    compared, nor, when it is theirs, the canvas's result (the final state
    still is).
    """
    if not built.fanned_out:
        return native, celeriac

    def drop(outcome: Outcome) -> Outcome:
        ran = [e for e in outcome[1] if json.loads(e)[1] not in built.fanned_out]
        ending = celeriac[0] if built.fanned_out_result else outcome[0]
        return ending, ran, outcome[2]

    return drop(native), drop(celeriac)


#: difference id (docs/differences.md) -> how it changes the two outcomes,
#: given the built canvas, so that what is left compares equal. D3 (get() of
#: a chord whose header failed raises a ChordError) is ``_native_error``'s.
DIFFERENCES: dict[str, Callable[[Built, Outcome, Outcome], tuple[Outcome, Outcome]]] = {
    "D1": _in_any_order,
    "D2": _native_hang,
    "D12": _without_nested_chain_links,
    "D13": _errbacks_see_the_task_error,
    "D15": _empty_group_result,
    "D16": _stalled_chord_errbacks,
    "D17": _empty_body_goes_on,
    "D19": _unreached_replaced_errbacks,
    "D20": _fanned_out_steps,
}
NORMALIZED = ("D3",)


def _native_error(exc: Exception) -> str:
    """The failed task's exception type; a ChordError's from its message (D3)."""
    if isinstance(exc, ChordError):
        return _chord_error_inner(str(exc))[0]
    return type(exc).__name__


@dataclass
class Seen:
    """What the run drew: how many canvases, how deep, how many tasks."""

    canvases: int = 0
    deepest: int = 0
    tasks: int = 0
    replacing: int = 0
    forgiven: dict[str, int] = field(default_factory=dict)

    def add(self, spec: Spec) -> None:
        self.canvases += 1
        self.deepest = max(self.deepest, depth(spec))
        self.tasks += size(spec)
        self.replacing += replacing_tasks(spec)


SEEN = Seen()


def _long() -> bool:
    return settings.get_current_profile_name() == LONG


@pytest.fixture
def random_app(
    request: pytest.FixtureRequest,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[ModuleType]:
    """``tests.random_canvas_app`` on the test's Redis and database, imported anew."""
    database = (
        request.getfixturevalue("postgres_url")
        if _long()
        else f"sqlite:///{tmp_path / 'celeriac.db'}"
    )
    monkeypatch.setenv("RANDOM_CANVAS_REDIS_URL", redis_url)
    monkeypatch.setenv("RANDOM_CANVAS_QUEUE", f"random-{tmp_path.name}")
    monkeypatch.setenv("CELERIAC_DATABASE_URL", database)
    sys.modules.pop("tests.random_canvas_app", None)
    module = importlib.import_module("tests.random_canvas_app")
    module.engine.migrate()
    yield module
    sys.modules.pop("tests.random_canvas_app", None)
    module.engine.close()
    close_app(module.app, *module._clients.values())


@pytest.fixture
def random_workers(random_app: ModuleType, tmp_path: Path) -> Iterator[None]:
    """An embedded threads worker; two prefork processes in the long profile."""
    if not _long():
        with random_app.engine.embedded_worker(concurrency=4):
            yield
        return
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    workers = Workers(random_app.app, env, tmp_path, module="tests.random_canvas_app")
    workers.start(2)
    try:
        yield
    finally:
        workers.stop()


# -- running one canvas both ways --------------------------------------------------


def _settle(app: ModuleType) -> None:
    """Wait until every message the canvas published was worked off.

    Idle at three looks in a row: a task publishes what follows it before
    its own message is acknowledged, but a look may fall in between.
    """
    looks: list[bool] = []

    def idle() -> bool:
        looks.append(app.backlog() == 0)
        return looks[-3:] == [True] * 3

    wait_for(
        idle, TIMEOUT, interval=0.02, what="the canvas's messages to be worked off"
    )


def run_native(app: ModuleType, spec: Spec) -> Outcome:
    """Run natively; read the result once every message was worked off.

    A group's result is read member by member (``_collect``): its own
    ``get()`` waits for nested groups without its timeout (Celery's
    ``join_native``), forever when a result never comes. Once the canvas
    settled, a result that does not come within ``GRACE`` never will, nor
    one that does not come while, for ``IDLE`` seconds, no task starts and no
    message waits (``_settled_result``).
    """
    app.forget_ran()
    result = build(spec, app).canvas.apply_async()
    _settle(app)
    try:
        ending: tuple[Any, ...] = ("result", _settled_result(app, result))
        state = "COMPLETED"
    except CeleryTimeoutError:
        ending, state = ("no result",), "hung"
    except Exception as exc:
        ending, state = ("error", _native_error(exc)), "FAILED"
    _settle(app)
    return ending, app.ran(), state


def _settled_result(app: ModuleType, result: Any) -> Any:
    """What ``result.get()`` returns once the canvas settled.

    Raises ``CeleryTimeoutError`` after ``GRACE`` seconds, or sooner once a
    wait of ``IDLE`` seconds saw no task start and left no message waiting:
    a canvas whose result never comes (D2) costs ``IDLE``, not ``GRACE``.
    """
    end = time.monotonic() + GRACE
    while True:
        started = len(app.ran())
        try:
            return _collect(result, min(end, time.monotonic() + IDLE))
        except CeleryTimeoutError:
            idle = len(app.ran()) == started and app.backlog() == 0
            if idle or time.monotonic() >= end:
                raise


def _collect(result: Any, deadline: float) -> Any:
    """What ``result.get()`` returns, each wait bounded by ``deadline``."""
    if isinstance(result, ResultSet):
        return [_collect(member, deadline) for member in result.results]
    remaining = max(0.01, deadline - time.monotonic())
    return result.get(timeout=remaining, interval=0.01, disable_sync_subtasks=False)


def run_celeriac(app: ModuleType, spec: Spec) -> Outcome:
    app.forget_ran()
    workflow = app.engine.submit(build(spec, app).canvas)
    try:
        ending: tuple[Any, ...] = ("result", workflow.get(timeout=TIMEOUT))
    except WorkflowFailed as exc:
        ending = ("error", exc.exc_type)
    except TimeoutError:
        ending = ("no result",)
    except Exception as exc:  # the task's own exception, raised as natively
        ending = ("error", type(exc).__name__)
    _settle(app)
    return ending, app.ran(), str(workflow.state)


def _forgiven(
    app: ModuleType, spec: Spec, native: Outcome, celeriac: Outcome
) -> list[str] | None:
    """The listed differences that explain a disagreement, if they do."""
    built = build(spec, app)
    used = []
    for difference, adjust in DIFFERENCES.items():
        adjusted = adjust(built, native, celeriac)
        if adjusted != (native, celeriac):
            used.append(difference)
            native, celeriac = adjusted
    return used if native == celeriac else None


# -- the tests ------------------------------------------------------------------------


@pytest.fixture
def seen(request: pytest.FixtureRequest) -> Iterator[Seen]:
    """Counts what the test drew, and prints it at the end."""
    SEEN.__init__()  # type: ignore[misc]
    yield SEEN
    line = (
        f"random canvases ({settings.get_current_profile_name()} profile): "
        f"{SEEN.canvases} canvases, {SEEN.tasks} task signatures "
        f"({SEEN.replacing} replacing themselves), depth reached "
        f"{SEEN.deepest}, forgiven by listed differences {SEEN.forgiven or 'none'}"
    )
    request.node.user_properties.append((SUMMARY_LINE, line))


@pytest.mark.timeout(3600)  # each wait inside has its own deadline
@given(spec=canvases())
# Disagreements found, shrunk: kept as regression cases.
# D12: a link on a chain nested in a chain (Celery drops it)
@example(spec=Chain((Chain((Task(),), Extras(link=True)),)))
# D12: an errback on a chain that is another chain's only part (Celery drops it)
@example(spec=Chain((Chain((Task(kind="fail"),), Extras(link_error=True)),)))
# D1: a group nested in a group (in a chain), Celery reverses its results
@example(spec=Chain((Group((Task(), Group((Task(), Task())))),)))
# D13: the errback of a chord's body, when its header fails
@example(spec=Chord((Task(kind="fail"),), Task(extras=Extras(link_error=True))))
# D15: a chord whose body is an empty group, with a failing header
@example(spec=Chord((Task(kind="fail"),), Group(())))
# Fixed (was D14): an errback in a chord's body chain, when its header fails
# (the chain runs the chord as chord(header, first body task), then the rest)
@example(
    spec=Chain(
        (Chord((Task(kind="fail"),), Chain((Task(extras=Extras(link_error=True)),))),)
    )
)
# Fixed: the same, the chord made by `group | task` in a chain of chains
@example(
    spec=Chain(
        (
            Chain((Task(), Chain((Task(), Group((Task(), Task(kind="fail"))))))),
            Task(extras=Extras(link_error=True)),
            Task(),
        )
    )
)
# D16: a chord ending a chord's header fails in its own header
@example(
    spec=Chord(
        (Chord((Task(kind="fail"),), Task()),), Task(extras=Extras(link_error=True))
    )
)
# Fixed: the errbacks of a chord in a chord's group body, on a header failure
@example(
    spec=Chain(
        (Group((Task(), Task(kind="fail"))), Group((Chord((), Task()),))),
        Extras(link_error=True),
    )
)
# D16: the same, the errback the outer chord gets from its chain
@example(
    spec=Chain(
        (Task(), Chord((Chord((Task(kind="fail"),), Task()),), Task())),
        Extras(link_error=True),
    )
)
# D17: a chord with an empty group body, then a chord with an empty header
@example(
    spec=Chain(
        (Chord((Task(), Task()), Group(())), Chord((), Task())),
    )
)
# Fixed: a chain's errback on a chord whose body is a chord (Celery puts it
# on the inner chord's body: the outer header's failure does not call it)
@example(
    spec=Chain(
        (Chord((Task(), Task(kind="fail")), Chain((Chord((), Task()),))), Task()),
        Extras(link_error=True),
    )
)
# D2: a group after a failed chain step: natively its result never comes
@example(
    spec=Chain((Group((Chain((Task(kind="fail"), Task(), Group((Task(), Task())))),)),))
)
# D2, D16: a task replaced by a chord whose header's chord fails
@example(
    spec=Task(
        kind="replace",
        replacement=Chord(
            (Chord((Task(kind="fail"),), Task()),), Task(extras=Extras(link_error=True))
        ),
    )
)
# D16: a task of a chord's header replaced by a chord whose header fails
@example(
    spec=Chord(
        (Task(kind="replace", replacement=Chord((Task(kind="fail"),), Task())),),
        Task(extras=Extras(link_error=True)),
    )
)
# D19: the errback of a task replaced by a group, then a step of its chain
@example(
    spec=Chain(
        (
            Task(
                kind="replace",
                extras=Extras(link_error=True),
                replacement=Group((Task(kind="fail"),)),
            ),
            Task(),
        )
    )
)
# D12: the callback of a task replaced by a chain of a chain (Celery drops it)
@example(
    spec=Task(
        kind="replace", extras=Extras(link=True), replacement=Chain((Chain((Task(),)),))
    )
)
# D13: a failing chord in a chain of a chord's header (a nested ChordError)
@example(
    spec=Chord(
        (Chain((Chord((Task(kind="fail"),), Task()), Task())),),
        Task(extras=Extras(link_error=True)),
    )
)
# D13: two tasks fail before a group: which one its errbacks are told of is a race
@example(
    spec=Chain(
        (
            Group(
                (
                    Task(
                        kind="fail", kwargs=(("b", 8),), extras=Extras(link_error=True)
                    ),
                    Task(
                        kind="fail", kwargs=(("b", 8),), extras=Extras(link_error=True)
                    ),
                )
            ),
            Group(
                (
                    Task(immutable=True, extras=Extras(link_error=True)),
                    Task(extras=Extras(link_error=True)),
                ),
                Extras(link_error=True),
            ),
        ),
        Extras(link_error=True),
    )
)
# D20: a chord with a group body, then a chord: natively run once per member
@example(
    spec=Chain((Chord((Task(),), Group((Task(), Task()))), Chord((Task(),), Task())))
)
# D15: a group member ending in an empty group has [] at once, natively
@example(
    spec=Group(
        (
            Task(),
            Chord((Task(kind="fail", immutable=True),), Chord((Task(),), Group(()))),
        )
    )
)
# D2, D16: a chain of a chord's header fails before a group step: Celery
# never tells the chord, whose errbacks do not run
@example(
    spec=Chord(
        (Chain((Task(kind="fail"), Group((Task(), Task())))),),
        Task(extras=Extras(link_error=True)),
    )
)
# a chain ending in two groups, linked: Celery links the callback to the
# chord it makes of them, which links it to the last group's first member
@example(
    spec=Chain(
        (Task(), Group((Task(), Task())), Group((Task(), Task()))), Extras(link=True)
    )
)
# Fixed: a chain's errback on a step, then two groups (Celery makes them a
# chord when the chain runs: the errback runs once per body member)
@example(
    spec=Chain(
        (Task(), Group((Task(), Task(kind="fail"))), Group((Task(), Task(), Task()))),
        Extras(link_error=True),
    )
)
def test_random_canvas_agrees_with_celery(
    random_app: ModuleType, random_workers: None, seen: Seen, spec: Spec
) -> None:
    seen.add(spec)
    native = run_native(random_app, spec)
    celeriac = run_celeriac(random_app, spec)
    if celeriac != native:
        differences = _forgiven(random_app, spec, native, celeriac)
        if differences is not None:
            for difference in differences:
                seen.forgiven[difference] = seen.forgiven.get(difference, 0) + 1
            return
    assert celeriac == native


def test_differences_forgiven_are_listed_in_the_docs() -> None:
    assert {*DIFFERENCES, *NORMALIZED} <= documented_ids()
