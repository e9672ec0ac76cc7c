"""Ages on the command line: ``celeriac list --since 2h --older-than 30m``.

A duration is one or more whole numbers, each followed by a unit: ``s``
(seconds), ``m`` (minutes), ``h`` (hours), ``d`` (days) or ``w`` (weeks), as
in ``90s``, ``30m``, ``2h``, ``7d``, ``1w`` or ``1h30m``. Units are lower case
(``m`` is minutes, never months); the total must be more than zero.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import click

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(?:\d+[smhdw])+")
_PART = re.compile(r"(\d+)([smhdw])")
GRAMMAR = "a number and a unit s, m, h, d or w, e.g. 90s, 30m, 2h, 7d, 1h30m"


def parse_duration(text: str) -> timedelta:
    """``"1h30m"`` -> ``timedelta(hours=1, minutes=30)``; ValueError if malformed."""
    if not _DURATION.fullmatch(text):
        raise ValueError(f"{text!r} is not a duration: use {GRAMMAR}")
    seconds = sum(int(count) * UNITS[unit] for count, unit in _PART.findall(text))
    if seconds == 0:
        raise ValueError(f"{text!r} is no time at all: use {GRAMMAR}")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"{text!r} is too long a duration") from None


def ago(age: timedelta) -> datetime:
    """The moment ``age`` before now (UTC); the earliest datetime if that is before."""
    try:
        return datetime.now(UTC) - age
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


class Duration(click.ParamType[timedelta]):
    """A click option type for :func:`parse_duration`."""

    name = "duration"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
