"""A line of the results table, and how its figures are written."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Row:
    """One line of the results table."""

    workload: str
    native: str
    celeriac: str
    ratio: str
    target: str
    verdict: str


def error_row(title: str, figures: dict[str, Any]) -> Row:
    """The row of a workload that could not run: its error."""
    return Row(title, "—", "—", "—", "—", f"ERROR: {figures['error']}")


def seconds(value: float) -> str:
    """A duration for the table."""
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.2f} s"


def verdict(ok: bool) -> str:
    """PASS or MISS."""
    return "PASS" if ok else "MISS"
