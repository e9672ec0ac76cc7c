"""Compare the native and the celeriac run of the converted suite; count."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from tests.celery_suite.differences import documented_ids, listed

PASSED = "passed through celeriac"
PASSED_LOCALLY = "passed, nothing submitted (eager apply() or no dispatch)"
LISTED_DIFFERENCE = "failed by a listed difference"
NOT_EXPRESSIBLE = "not expressible through submit()"
OTHER = "other failures"
NOT_APPLICABLE = "not passing natively (do not apply)"
ORDER = (PASSED, PASSED_LOCALLY, LISTED_DIFFERENCE, NOT_EXPRESSIBLE, OTHER)

Record = dict[str, Any]


@dataclass(frozen=True)
class Verdict:
    """One test's category, and the detail printed with it."""

    test: str
    category: str
    detail: str = ""


def short(nodeid: str) -> str:
    """``class::name[params]`` of a converted test's node id."""
    return nodeid.partition("test_canvas.py::")[2] or nodeid


def classify(test: str, native: Record | None, celeriac: Record) -> Verdict:
    """Where one test stands, given its two records."""
    if native is None or native["outcome"] != "passed":
        why = native["message"] if native else "not run natively"
        return Verdict(test, NOT_APPLICABLE, why)
    if celeriac.get("not_expressible"):
        return Verdict(test, NOT_EXPRESSIBLE, celeriac["not_expressible"][0])
    if celeriac["outcome"] == "passed":
        return Verdict(test, PASSED if celeriac["submitted"] else PASSED_LOCALLY)
    difference = listed(test)
    if difference is not None:
        return Verdict(test, LISTED_DIFFERENCE, f"{difference[0]}: {difference[1]}")
    return Verdict(test, OTHER, celeriac["message"])


def tally(native: dict[str, Record], celeriac: dict[str, Record]) -> list[Verdict]:
    """Every test of the celeriac run, classified."""
    return [
        classify(short(nodeid), native.get(nodeid), record)
        for nodeid, record in sorted(celeriac.items())
    ]


def report(verdicts: list[Verdict]) -> list[str]:
    """The lines printed at the end of a run: the counts, then the details."""
    counts = Counter(verdict.category for verdict in verdicts)
    lines = [f"{len(verdicts)} tests of Celery's t/integration/test_canvas.py"]
    lines += [
        f"  {counts[category]:4d}  {category}" for category in (*ORDER, NOT_APPLICABLE)
    ]
    reasons = Counter(v.detail for v in verdicts if v.category == NOT_EXPRESSIBLE)
    if reasons:
        lines.append("not expressible, by reason:")
        lines += [f"  {count:4d}  {reason}" for reason, count in reasons.most_common()]
    for category in (LISTED_DIFFERENCE, OTHER):
        chosen = [v for v in verdicts if v.category == category]
        if chosen:
            lines.append(f"{category}:")
            lines += [f"  {v.test}: {v.detail}"[:200] for v in chosen]
    return lines


def problems(verdicts: list[Verdict]) -> list[str]:
    """Why the run does not hold: unexplained failures, stale or unknown listings."""
    found = [f"unexplained failure: {v.test}" for v in verdicts if v.category == OTHER]
    documented = documented_ids()
    for verdict in verdicts:
        difference = listed(verdict.test)
        if difference is None:
            continue
        if difference[0] not in documented:
            found.append(
                f"{verdict.test} cites {difference[0]}, not in docs/differences.md"
            )
        if verdict.category in (PASSED, PASSED_LOCALLY):
            found.append(f"{verdict.test} is listed under {difference[0]} but passes")
    return found
