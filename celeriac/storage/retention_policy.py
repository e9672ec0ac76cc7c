"""What a purge deletes: the retention asked for, checked, and its counts."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from celeriac.states import FINISHED_WORKFLOW_STATES

#: Worker rows are kept at least this long after their last heartbeat.
WORKER_RETENTION = timedelta(days=1)


@dataclass(frozen=True)
class Retention:
    """What a purge deletes; :meth:`of` checks what a caller asked for.

    Workflows in one of ``states`` that finished before ``workflows_before``
    (and are named ``name``, if given), with everything that belongs to them;
    event rows older than ``events_before``; worker rows whose last heartbeat
    is older than ``workers_before``.
    """

    workflows_before: datetime
    states: tuple[str, ...]
    name: str | None
    events_before: datetime
    workers_before: datetime

    @classmethod
    def of(
        cls,
        at: datetime,
        older_than: timedelta,
        states: Collection[str] | None = None,
        name: str | None = None,
        events_older_than: timedelta | None = None,
        workers_older_than: timedelta | None = None,
        worker_timeout: timedelta = timedelta(0),
    ) -> Retention:
        """The retention ``older_than`` before ``at``; ValueError if it makes no sense.

        Events keep ``older_than`` unless given their own; worker rows too,
        but at least :data:`WORKER_RETENTION`. A worker row must outlive
        ``worker_timeout``: while it exists, the worker's running nodes are
        its own.
        """
        chosen = _finished_states(states)
        events_older_than = _or(events_older_than, older_than)
        for what, age in (
            ("older_than", older_than),
            ("events_older_than", events_older_than),
            ("workers_older_than", workers_older_than or timedelta(0)),
        ):
            _check_age(what, age)
        if workers_older_than is None:
            workers_older_than = max(older_than, WORKER_RETENTION)
        if workers_older_than <= worker_timeout:
            raise ValueError(
                f"workers_older_than must be longer than the worker timeout "
                f"({worker_timeout.total_seconds():g} s): a worker row younger "
                "than that may belong to a live worker"
            )
        return cls(
            workflows_before=_before(at, older_than),
            states=chosen,
            name=name,
            events_before=_before(at, events_older_than),
            workers_before=_before(at, workers_older_than),
        )


def _before(at: datetime, age: timedelta) -> datetime:
    """``age`` before ``at``; the earliest time there is if that is earlier."""
    try:
        return at - age
    except OverflowError:
        return datetime.min.replace(tzinfo=at.tzinfo)


def _or(age: timedelta | None, default: timedelta) -> timedelta:
    return default if age is None else age


def _check_age(what: str, age: object) -> None:
    if not isinstance(age, timedelta):
        raise TypeError(f"{what} must be a timedelta, not {type(age).__name__}")
    if age < timedelta(0):
        raise ValueError(f"{what} must not be negative (got {age})")


def _finished_states(states: Collection[str] | None) -> tuple[str, ...]:
    """``states`` checked: finished states only, at least one."""
    if states is None:
        return tuple(str(state) for state in FINISHED_WORKFLOW_STATES)
    if isinstance(states, str):
        states = [states]
    chosen = tuple(str(state).upper() for state in states)
    if not chosen:
        raise ValueError("states is empty: name at least one finished state")
    refused = [state for state in chosen if state not in FINISHED_WORKFLOW_STATES]
    if refused:
        finished = ", ".join(FINISHED_WORKFLOW_STATES)
        raise ValueError(
            f"cannot purge workflows in state {', '.join(refused)}: "
            f"only finished workflows ({finished}) are purged"
        )
    return tuple(dict.fromkeys(chosen))


@dataclass
class Purged:
    """What a purge deleted (or, in a dry run, would delete)."""

    workflows: int = 0
    nodes: int = 0
    events: int = 0
    workers: int = 0
