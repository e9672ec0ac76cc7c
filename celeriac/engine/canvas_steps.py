"""The parts Celery applies: a chain's steps, a group's members.

Celery does not apply a canvas as it was written: groups of one run as their
task, nested groups flatten, empty parts drop out, and a chord's chain body
is unrolled. These follow ``celery/canvas.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery
from celery.canvas import Signature, _chain, chord, group

from celeriac.engine.canvas_calls import LABEL_OPTION, execution_options
from celeriac.engine.canvas_signatures import (
    as_signature,
    is_empty_chain,
    is_empty_group,
    labelled,
)
from celeriac.errors import InvalidCanvas


def chain_steps(app: Celery, sig: _chain) -> list[Signature]:
    """The steps Celery runs.

    A group of one runs as its task; a chord's chain body is unrolled
    (``_unrolled_body``); empty groups and empty chains are skipped
    (``chain(chain(), add.s(10))`` is ``add.s(10)``), unless nothing
    else is left.
    """
    steps = _run_steps(app, sig.tasks)
    if not steps:
        raise InvalidCanvas("an empty chain has nothing to run")
    return [
        step for step in steps if not (is_empty_group(step) or is_empty_chain(step))
    ] or steps[-1:]


def chords_of_groups(app: Celery, steps: list[Signature]) -> list[Signature]:
    """``steps`` with each group that has a step after it made a chord of the two.

    As ``prepare_steps`` does when the chain runs: ``chain | group`` keeps a
    group as a step of its own, so a group followed by a group is still two
    steps until then. From the end, a group before a step becomes the header
    of a chord whose body is that step: the chain's errbacks then reach the
    body only, and run once per body member when the header fails.
    """
    folded: list[Signature] = []
    for step in reversed(steps):
        if isinstance(step, group) and folded:
            made = chord(step, body=folded.pop(), app=app)
            step = labelled(made, step.options.get(LABEL_OPTION))
        folded.append(step)
    return folded[::-1]


def _run_steps(app: Celery, tasks: Sequence[Any]) -> list[Signature]:
    steps = []
    for task in tasks:
        step = as_signature(app, task)
        members = list(step.tasks) if isinstance(step, group) else []
        if len(members) == 1:
            step = as_signature(app, members[0])
        first, *rest = _unrolled_body(app, step)
        steps += [first, *_run_steps(app, rest)]
    return steps


def _unrolled_body(app: Celery, step: Signature) -> list[Signature]:
    """A chain's step as the chain runs it: a chord's chain body unrolled.

    Celery runs a chord whose body is a chain led by a task,
    ``chord(header, chain(a, b))``, as the steps ``chord(header, a), b``
    (``chord._unroll_body``): ``a`` alone is the body, so its errbacks
    run when the header fails. The chain's callbacks go to its last task
    and its errbacks to each task (``unchain_tasks``); its options and
    label to ``a``.
    """
    body = as_signature(app, step.body) if isinstance(step, chord) else None
    if not isinstance(body, _chain) or not body.tasks:
        return [step]
    if isinstance(as_signature(app, body.tasks[0]), group):
        return [step]
    label = body.options.get(LABEL_OPTION, step.options.get(LABEL_OPTION))
    first, *rest = (
        labelled(as_signature(app, task), label) for task in body.unchain_tasks()
    )
    unrolled = step.clone()
    unrolled.kwargs["body"] = first.clone(**execution_options(body.options))
    return [unrolled, *rest]


def group_members(app: Celery, sig: group) -> list[Signature]:
    """The members Celery applies.

    Nested groups are flattened, dropping their own options as Celery
    does; empty chains are dropped.
    """
    members: list[Signature] = []
    for task in sig.tasks:
        member = as_signature(app, task)
        if isinstance(member, group):
            members.extend(group_members(app, member))
        elif not is_empty_chain(member):
            members.append(member)
    return members
