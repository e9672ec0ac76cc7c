"""Random canvases for the differential test: a spec, a strategy, a builder.

A spec is a small tree of frozen dataclasses, printed by Hypothesis when it
shrinks a disagreement and kept as a regression case (``@example``). ``build``
turns a spec into a Celery canvas of ``tests.random_canvas_app``'s tasks,
numbering the tasks in the order it meets them (the labels they record).
A task of kind ``replace`` replaces itself (``Task.replace``) with a canvas
built from its own spec at the same time, numbered from the same counter
and passed to it as the keyword ``canvas``: native Celery and celeriac get
the same replacement.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, TypeAlias

from celery import Celery, chain, chord, group
from celery.canvas import _chain, maybe_signature
from hypothesis import assume
from hypothesis import strategies as st

MAX_DEPTH = 4
MAX_WIDTH = 8
KINDS = ("step", "fail", "retry")
REPLACE = "replace"
#: how many parts a chain, group or chord header has: mostly few, at times
#: none (an empty group or header) or ``MAX_WIDTH``
WIDTHS = st.sampled_from((0, 1, 1, 2, 2, 2, 3, 3, 4, MAX_WIDTH))


@dataclass(frozen=True)
class Extras:
    """What any part may carry: a ``link`` callback, a ``link_error`` errback."""

    link: bool = False
    link_error: bool = False


@dataclass(frozen=True)
class Task:
    """One signature: ``r.<kind>.s(label=..., **kwargs)`` (``.si``: immutable).

    ``replacement``: of a task of kind ``replace``, what it replaces itself with.
    """

    kind: str = "step"
    immutable: bool = False
    kwargs: tuple[tuple[str, int], ...] = ()
    extras: Extras = Extras()
    replacement: Spec | None = None


@dataclass(frozen=True)
class Chain:
    parts: tuple[Spec, ...]
    extras: Extras = Extras()


@dataclass(frozen=True)
class Group:
    members: tuple[Spec, ...]
    extras: Extras = Extras()


@dataclass(frozen=True)
class Chord:
    header: tuple[Spec, ...]
    body: Spec
    extras: Extras = Extras()


Spec: TypeAlias = Task | Chain | Group | Chord


def depth(spec: Spec) -> int:
    """How deep the spec nests: 0 for a task, 1 more for a task's replacement."""
    if isinstance(spec, Task) and spec.replacement is None:
        return 0
    children = _children(spec)
    return 1 + max((depth(child) for child in children), default=0)


def size(spec: Spec) -> int:
    """How many task signatures the spec has (callbacks, errbacks, replacements)."""
    own = int(spec.extras.link) + int(spec.extras.link_error)
    if isinstance(spec, Task):
        own += 1
    return own + sum(size(child) for child in _children(spec))


def replacing_tasks(spec: Spec) -> int:
    """How many tasks of the spec replace themselves (replacements' too)."""
    own = int(isinstance(spec, Task) and spec.replacement is not None)
    return own + sum(replacing_tasks(child) for child in _children(spec))


def nests_a_group(spec: Spec) -> bool:
    """Whether a group is a member of a group or of a chord's header, anywhere.

    (Celery hands such a group's results on reversed: docs/differences.md, D1.)
    """
    members = spec.members if isinstance(spec, Group) else ()
    header = spec.header if isinstance(spec, Chord) else ()
    return any(isinstance(one, Group) for one in (*members, *header)) or any(
        nests_a_group(child) for child in _children(spec)
    )


def ends_in_empty_group(spec: Spec) -> bool:
    """Whether a part whose result is (in) the canvas's is an empty group (D15).

    The part whose result is the canvas's, or when that is a group, a part
    whose result is one of its members' (a replacing task's: its
    replacement's).
    """
    if isinstance(spec, Chain):
        return ends_in_empty_group(spec.parts[-1])
    if isinstance(spec, Chord):
        return ends_in_empty_group(spec.body)
    if isinstance(spec, Group):
        return not spec.members or any(map(ends_in_empty_group, spec.members))
    return spec.replacement is not None and ends_in_empty_group(spec.replacement)


def empty_body_before_a_step(spec: Spec) -> bool:
    """Whether a chain has a chord whose body is an empty group, not last (D17)."""
    if isinstance(spec, Chain) and any(
        isinstance(part, Chord) and part.body == Group(()) for part in spec.parts[:-1]
    ):
        return True
    return any(empty_body_before_a_step(child) for child in _children(spec))


def _children(spec: Spec) -> tuple[Spec, ...]:
    """The specs right inside ``spec``: a replacing task's is its replacement."""
    if isinstance(spec, Task):
        return () if spec.replacement is None else (spec.replacement,)
    if isinstance(spec, Chain):
        return spec.parts
    if isinstance(spec, Group):
        return spec.members
    return (*spec.header, spec.body)


# -- the strategy ------------------------------------------------------------------

#: one part in four carries a callback, one in four an errback
sometimes = st.sampled_from((False, False, False, True))
extras = st.builds(Extras, link=sometimes, link_error=sometimes)
tasks = st.builds(
    Task,
    # mostly tasks that succeed, so that failures come at random places
    kind=st.sampled_from(("step",) * 6 + KINDS[1:]),
    immutable=st.booleans(),
    kwargs=st.lists(
        st.tuples(st.sampled_from("abc"), st.integers(0, 9)),
        max_size=2,
        unique_by=lambda pair: pair[0],
    ).map(tuple),
    extras=extras,
)


#: one task in fifteen (with room below it) replaces itself
replaces = st.sampled_from((False,) * 14 + (True,))


@st.composite
def canvases(draw: st.DrawFn) -> Spec:
    """A canvas nesting at most ``MAX_DEPTH`` levels, that Celery can build."""
    spec = draw(_canvases(0))
    assume(celery_builds(spec))
    return spec


@st.composite
def _canvases(draw: st.DrawFn, level: int) -> Spec:
    """A canvas nesting at most ``MAX_DEPTH - level`` more levels."""
    if level >= MAX_DEPTH or draw(st.integers(0, MAX_DEPTH + 1)) <= level + 1:
        task = draw(tasks)
        if level < MAX_DEPTH and draw(replaces):
            return replacing(task, draw(_canvases(level + 1)))
        return task
    inner = _canvases(level + 1)
    kind = draw(st.sampled_from(("chain", "group", "chord")))
    mark = draw(extras)
    width = draw(WIDTHS)
    if kind == "chain":
        parts = draw(st.lists(inner, min_size=max(width, 1), max_size=max(width, 1)))
        return Chain(tuple(parts), mark)
    # Celery sends an empty group inside a group with the current app, not
    # the canvas's (here: none), and cannot link() to a group led by one; a
    # chain of nothing but empty groups unrolls to one
    members = tuple(
        member
        for member in draw(st.lists(inner, min_size=width, max_size=width))
        if not _runs_nothing(member)
    )
    if kind == "group":
        takes = _takes_links(Group(members))
        return Group(members, mark if takes else no_link(mark))
    body = draw(inner)
    return Chord(members, body, mark if _takes_links(body) else no_link(mark))


def _shape(*args: Any, **kwargs: Any) -> None:
    """The body of the stand-in tasks ``celery_builds`` builds with."""


#: tasks of the random canvases' names, on an app of their own, to build
#: specs with before any test app exists
_SHAPES_APP = Celery("random_canvas_shapes", set_as_current=False)
_SHAPES = SimpleNamespace(
    **{
        kind: _SHAPES_APP.task(name=f"r.{kind}", shared=False)(_shape)
        for kind in (*KINDS, REPLACE, "errback")
    }
)


def celery_builds(spec: Spec) -> bool:
    """Whether Celery's canvas code can build ``spec``.

    Celery 5.7 cannot fold a chain that is the only part of a chain into a
    longer one when the inner chain has a callback and ends in a group (or
    a chord with a group body): cloning deep-copies the callback into a
    plain dict, which ``group.link`` then calls ``clone()`` on
    (``AttributeError``). Neither native Celery nor celeriac can be given
    such a canvas, so it is no test case. Any other error is the harness's.
    """
    try:
        build(spec, _SHAPES)
    except AttributeError as exc:
        if "'dict' object has no attribute 'clone'" in str(exc):
            return False
        raise
    return True


def _runs_nothing(spec: Spec) -> bool:
    """Whether ``spec`` is an empty group, or a chain of only such parts."""
    if isinstance(spec, Chain):
        return all(map(_runs_nothing, spec.parts))
    return isinstance(spec, Group) and not spec.members


def replacing(task: Task, replacement: Spec) -> Task:
    """``task`` made one that replaces itself with ``replacement``.

    Celery links the task's callback to its replacement: none, where it
    cannot (``_takes_links``).
    """
    mark = task.extras if _takes_links(replacement) else no_link(task.extras)
    return Task(REPLACE, task.immutable, task.kwargs, mark, replacement)


def _takes_links(spec: Spec) -> bool:
    """Whether Celery can ``link()`` to ``spec``: not to an empty group.

    A chord links its callback to its body, a group to its first member.
    """
    if isinstance(spec, Chord):
        return _takes_links(spec.body)
    if isinstance(spec, Group):
        return bool(spec.members) and _takes_links(spec.members[0])
    return True


def no_link(mark: Extras) -> Extras:
    """``mark`` without its callback."""
    return Extras(link_error=mark.link_error)


# -- building -----------------------------------------------------------------------


@dataclass
class Built:
    """A spec's canvas, and what the listed differences need to know of it.

    ``nested_chain_links``: the labels of the callbacks linked to chains that
    are parts of chains, and of the errbacks linked to a chain that is the
    only part of another, and of the callbacks of a task that replaces
    itself with such a chain (Celery drops them: docs/differences.md, D12).
    ``nests_a_group``: see ``nests_a_group`` (D1).
    ``ends_in_empty_group``: see ``ends_in_empty_group`` (D15).
    ``stalled_chord_errbacks``: see ``stalled_chord_errbacks`` (D16).
    ``empty_body_before_a_step``: see ``empty_body_before_a_step`` (D17).
    ``unreached_replaced_errbacks``: see ``unreached_replaced_errbacks`` (D19).
    ``fanned_out``: see ``fanned_out_labels`` (D20); ``fanned_out_result``:
    the canvas's result is one of theirs.
    """

    canvas: Any = None
    nested_chain_links: set[int] = field(default_factory=set)
    nests_a_group: bool = False
    ends_in_empty_group: bool = False
    stalled_chord_errbacks: set[int] = field(default_factory=set)
    empty_body_before_a_step: bool = False
    unreached_replaced_errbacks: set[int] = field(default_factory=set)
    fanned_out: set[int] = field(default_factory=set)
    fanned_out_result: bool = False


def build(spec: Spec, app_tasks: Any) -> Built:
    """The Celery canvas of ``spec``, on the tasks of ``app_tasks``."""
    built = Built(
        nests_a_group=nests_a_group(spec),
        ends_in_empty_group=ends_in_empty_group(spec),
        empty_body_before_a_step=empty_body_before_a_step(spec),
    )
    built.canvas = _build(spec, app_tasks, itertools.count(1), built, False)
    built.stalled_chord_errbacks = stalled_chord_errbacks(built.canvas)
    built.unreached_replaced_errbacks = unreached_replaced_errbacks(built.canvas)
    built.fanned_out = fanned_out_labels(built.canvas)
    built.fanned_out_result = bool(_fanned_out_steps(built.canvas))
    return built


def stalled_chord_errbacks(canvas: Any) -> set[int]:
    """The labels of the errbacks of chords whose header ends in a chord.

    Read from the Celery canvas, where ``|`` has made ``group | task`` a
    chord already. A chord's errbacks are its own, its body's, and those of
    the chains around it (a chain gives its errbacks to each of its tasks).
    When the header of such a nested chord fails, Celery never tells the
    outer chord, and calls none of these (D16); nor when a chain of the
    header fails before a group step, whose members Celery never marks (D2).
    """
    found: set[int] = set()
    _find_stalled(canvas, set(), found)
    return found


def _errback_labels(sig: Any) -> set[int]:
    """The labels of the errbacks ``sig`` carries itself."""
    return {
        errback["kwargs"]["label"] for errback in sig.options.get("link_error") or ()
    }


def _group_after_a_step(sig: Any) -> bool:
    """Whether ``sig`` is a chain with a group after its first step."""
    return isinstance(sig, _chain) and any(
        isinstance(part, group) for part in _parts(sig)[1:]
    )


def _find_stalled(sig: Any, inherited: set[int], found: set[int]) -> None:
    """``stalled_chord_errbacks`` under ``sig``, given its chains' errbacks."""
    if isinstance(sig, chord):
        if any(_ends_in_chord(m) or _group_after_a_step(m) for m in _parts(sig)[:-1]):
            found |= inherited | {
                label
                for inner in (sig, *_signatures(sig.body))
                for label in _errback_labels(inner)
            }
        for member in _parts(sig)[:-1]:
            _find_stalled(member, set(), found)
        _find_stalled(_parts(sig)[-1], inherited, found)
        return
    if isinstance(sig, _chain) or _replacement(sig) is not None:
        # Celery links a replaced task's errbacks to its replacement
        inherited = inherited | _errback_labels(sig)
    for part in _parts(sig):
        _find_stalled(part, inherited, found)


def unreached_replaced_errbacks(canvas: Any) -> set[int]:
    """The labels of the errbacks of tasks replaced by a group or a chord in a chain.

    Read from the Celery canvas. ``Task.replace`` links the task's errbacks
    (its own, its chains') to the body of its replacement (a group becomes
    a chord), then appends the rest of the task's chain to that body
    (``chord | task``): a failure in the replacement's header then calls
    none of them (D19).
    """
    found: set[int] = set()
    _find_unreached(canvas, set(), False, found)
    return found


def _find_unreached(
    sig: Any, inherited: set[int], followed: bool, found: set[int]
) -> None:
    """``unreached_replaced_errbacks`` under ``sig``.

    ``inherited``: its chains' errbacks; ``followed``: chain steps follow it.
    """
    parts = _parts(sig)
    if isinstance(sig, _chain):
        inherited = inherited | _errback_labels(sig)
        for index, part in enumerate(parts):
            later = followed or index < len(parts) - 1
            _find_unreached(part, inherited, later, found)
    elif isinstance(sig, chord):
        for member in parts[:-1]:
            _find_unreached(member, set(), False, found)
        _find_unreached(parts[-1], inherited, followed, found)
    elif isinstance(sig, group):
        # a group of one in a chain is unrolled: its member is a step
        for member in parts:
            _find_unreached(member, inherited, followed and len(parts) == 1, found)
    elif parts:
        own = inherited | _errback_labels(sig)
        if followed and isinstance(parts[0], group | chord):
            found |= own
        _find_unreached(parts[0], own, followed, found)


def fanned_out_labels(canvas: Any) -> set[int]:
    """The labels of what follows, in a chain, a chord whose body is a group.

    Read from the Celery canvas, where ``|`` has folded a task or a group
    that follows such a chord into its body: what is left after it is a
    chord. Celery runs it once per member of the group body (D20).
    """
    return {
        label
        for sig in _signatures(canvas)
        for step in _fanned_out_steps(sig)
        for label in _labels(step)
    }


def _fanned_out_steps(sig: Any) -> list[Any]:
    """The steps of chain ``sig`` after its first chord with a group body."""
    if not isinstance(sig, _chain):
        return []
    parts = _parts(sig)
    for index, part in enumerate(parts[:-1]):
        if isinstance(part, chord) and _fans_out(part):
            return [*parts[index + 1 :], *(sig.options.get("link") or ())]
    return []


def _fans_out(sig: Any) -> bool:
    """Whether what follows ``sig`` in a chain runs once per member of a group.

    A group's members each carry the rest of the chain: a chord's body
    that is a group, or ends in one, or is such a chord.
    """
    if isinstance(sig, group):
        return bool(sig.tasks)
    return isinstance(sig, chord | _chain) and any(map(_fans_out, _parts(sig)[-1:]))


def _labels(value: Any) -> Iterator[int]:
    """The labels of every task signature in ``value``, however nested."""
    if isinstance(value, dict):
        label = (value.get("kwargs") or {}).get("label")
        if isinstance(label, int):
            yield label
        for inner in value.values():
            yield from _labels(inner)
    elif isinstance(value, list | tuple):
        for inner in value:
            yield from _labels(inner)


def _parts(sig: Any) -> list[Any]:
    """The signatures right inside ``sig``: a chord's header members, then body.

    A replacing task's: its replacement.
    """
    if isinstance(sig, chord):
        header = sig.tasks.tasks if isinstance(sig.tasks, group) else sig.tasks
        return [*map(maybe_signature, header), maybe_signature(sig.body)]
    if isinstance(sig, _chain | group):
        return [maybe_signature(part) for part in sig.tasks]
    replacement = _replacement(sig)
    return [] if replacement is None else [replacement]


def _replacement(sig: Any) -> Any:
    """The canvas a replacing task's signature replaces itself with, or None."""
    if sig.task != f"r.{REPLACE}":
        return None
    return maybe_signature(sig.kwargs["canvas"])


def _signatures(sig: Any) -> Iterator[Any]:
    """``sig`` and every signature inside it (not callbacks or errbacks)."""
    yield sig
    for part in _parts(sig):
        yield from _signatures(part)


def _ends_in_chord(sig: Any) -> bool:
    """Whether ``sig``'s result is a chord's: a chord, last in a chain, in a group.

    Or a task replacing itself with such a canvas.
    """
    if isinstance(sig, _chain):
        return bool(sig.tasks) and _ends_in_chord(_parts(sig)[-1])
    if isinstance(sig, group):
        return any(map(_ends_in_chord, _parts(sig)))
    replacement = _replacement(sig)
    if replacement is not None:
        return _ends_in_chord(replacement)
    return isinstance(sig, chord)


def _build(
    spec: Spec, t: Any, labels: Iterator[int], built: Built, in_chain: bool
) -> Any:
    """``spec``'s canvas; ``in_chain``: it is a part of a chain."""

    def part(child: Spec, in_chain: bool = False) -> Any:
        return _build(child, t, labels, built, in_chain)

    if isinstance(spec, Task):
        task = getattr(t, spec.kind)
        make = task.si if spec.immutable else task.s
        kwargs: dict[str, Any] = {"label": next(labels), **dict(spec.kwargs)}
        if spec.replacement is not None:
            kwargs["canvas"] = part(spec.replacement)
        canvas = make(**kwargs)
    elif isinstance(spec, Chain):
        parts = [part(one, in_chain=True) for one in spec.parts]
        if len(parts) == 1 and isinstance(parts[0], _chain):
            # chain(inner) keeps inner whole, and Celery splices its tasks
            # without its errbacks; chain(inner, b) moves them onto its tasks
            built.nested_chain_links.update(
                errback["kwargs"]["label"]
                for errback in parts[0].options.get("link_error") or ()
            )
        canvas = chain(*parts)
    elif isinstance(spec, Group):
        canvas = group([part(one) for one in spec.members])
    else:
        header = [part(one) for one in spec.header]
        canvas = chord(header, part(spec.body))
    if spec.extras.link:
        label = next(labels)
        spliced = in_chain and isinstance(spec, Chain)
        if spliced or _replaced_by_chain_of_chain(canvas):
            built.nested_chain_links.add(label)
        canvas.link(t.step.s(label=label))
    if spec.extras.link_error:
        canvas.link_error(t.errback.s(label=next(labels)))
    return canvas


def _replaced_by_chain_of_chain(sig: Any) -> bool:
    """Whether ``sig`` replaces itself with a chain whose last part is a chain.

    Celery's ``replace`` moves the task's callbacks onto that last part,
    whose options the chain drops when it splices its tasks (D12).
    """
    replacement = _replacement(sig)
    return isinstance(replacement, _chain) and isinstance(
        maybe_signature(replacement.tasks[-1]), _chain
    )
