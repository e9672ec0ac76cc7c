"""Pause, resume, cancel and retry, on one workflow or on many, for a person.

Every action names who asked (``Engine.pause(..., by=...)``), so that the
workflow's events say it. A transition the state does not allow is
:class:`Refused` (409), as is an action the console was not given the means
for: resume and retry publish, so they need the Celery app (``--app``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from celeriac import Delivery, Engine, InvalidTransition, WorkflowFilter
from celeriac.states import WORKFLOW_TRANSITIONS

#: The actions, in the order the pages show them.
ACTIONS = ("pause", "resume", "cancel", "retry")
#: At most this many workflows change in one bulk action.
BULK_LIMIT = 10_000


class Refused(Exception):
    """The action cannot be done now; the message says why."""


class UnknownAction(LookupError):
    """No action has this name."""


@dataclass(frozen=True)
class Options:
    """What the console may do: nothing when ``read_only``."""

    read_only: bool = False
    #: resume and retry publish nodes: only with the app's real broker
    can_publish: bool = True


def sources(action: str) -> frozenset[str]:
    """The workflow states ``action`` may start from (``states.py``'s table)."""
    found: set[str] = set()
    for edge in WORKFLOW_TRANSITIONS:
        if edge["trigger"] == action:
            source = edge["source"]
            found.update([source] if isinstance(source, str) else source)
    return frozenset(found)


def check(action: str, options: Options) -> None:
    """Refuse an unknown action, any action when read-only, and what cannot publish."""
    if action not in ACTIONS:
        raise UnknownAction(f"unknown action {action!r}: one of {', '.join(ACTIONS)}")
    if options.read_only:
        raise Refused("the console is read-only")
    if action in ("resume", "retry") and not options.can_publish:
        raise Refused(
            f"{action} publishes nodes: start the console with --app to use it"
        )


def act(
    engine: Engine,
    workflow_id: str,
    action: str,
    by: str,
    options: Options,
    terminate: bool = False,
) -> Delivery:
    """Do ``action`` to one workflow; :class:`Refused` if its state forbids it."""
    check(action, options)
    try:
        if action == "pause":
            engine.pause(workflow_id, by=by)
            return Delivery()
        if action == "resume":
            return engine.resume(workflow_id, by=by)
        if action == "cancel":
            return engine.cancel(workflow_id, terminate, by=by)
        return engine.retry(workflow_id, by=by)
    except InvalidTransition as exc:
        raise Refused(str(exc)) from exc


@dataclass(frozen=True)
class BulkOutcome:
    """What a bulk action did (or, in a dry run, would do)."""

    action: str
    dry_run: bool
    #: workflows whose state allows the action
    eligible: int
    changed: int = 0
    #: workflows whose state changed meanwhile, so that the action was refused
    refused: int = 0


def eligible_filters(action: str, where: WorkflowFilter) -> list[WorkflowFilter]:
    """``where`` narrowed to each state ``action`` may start from."""
    allowed = sources(action)
    states = [where.state] if where.state else sorted(allowed)
    return [replace(where, state=state) for state in states if state in allowed]


def count_eligible(engine: Engine, action: str, where: WorkflowFilter) -> int:
    """How many workflows matching ``where`` the action would change."""
    counts = engine.count_workflows(where)
    return sum(counts.get(f.state or "", 0) for f in eligible_filters(action, where))


def bulk(
    engine: Engine,
    action: str,
    where: WorkflowFilter,
    by: str,
    options: Options,
    dry_run: bool = False,
) -> BulkOutcome:
    """Do ``action`` to every workflow matching ``where`` whose state allows it."""
    check(action, options)
    if dry_run:
        return BulkOutcome(action, True, count_eligible(engine, action, where))
    ids = [
        workflow_id
        for narrowed in eligible_filters(action, where)
        for workflow_id in engine.matching_workflow_ids(narrowed, BULK_LIMIT)
    ]
    return act_on_each(engine, action, ids[:BULK_LIMIT], by, options)


def act_on_each(
    engine: Engine, action: str, ids: Iterable[str], by: str, options: Options
) -> BulkOutcome:
    """Do ``action`` to each of ``ids``; count what changed and what was refused."""
    changed = refused = 0
    for workflow_id in ids:
        try:
            act(engine, workflow_id, action, by, options)
        except Refused:
            refused += 1
        else:
            changed += 1
    return BulkOutcome(action, False, changed + refused, changed, refused)
