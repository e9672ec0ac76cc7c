"""A pytest plugin (``-p``) that records each converted test's outcome as JSON.

It sets the dispatch mode from ``CELERIAC_SUITE_MODE`` and writes, after
each test, ``{test id: record}`` to ``CELERIAC_SUITE_REPORT``: the
outcome (passed, failed, skipped), the first line of the failure, how many
workflows the test submitted, why it was not expressible (if it was not) and
how many seconds it took.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.celery_suite.dispatch import NATIVE, RUN

_records: dict[str, dict[str, Any]] = {}


def pytest_configure(config: pytest.Config) -> None:
    RUN.mode = os.environ.get("CELERIAC_SUITE_MODE", NATIVE)


@pytest.fixture(autouse=True)
def _celeriac_test_start() -> None:
    RUN.start_test()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    record = _records.setdefault(
        report.nodeid,
        {"outcome": "passed", "message": "", "submitted": 0, "seconds": 0.0},
    )
    record["seconds"] += report.duration
    if report.outcome != "passed" and record["outcome"] == "passed":
        record["outcome"] = report.outcome
        record["message"] = _first_line(report)
    if report.when == "call":
        record["submitted"] = RUN.submitted
        record["not_expressible"] = list(dict.fromkeys(RUN.not_expressible))
    if report.when == "teardown":
        _write()


def _first_line(report: pytest.TestReport) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2])
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    return text.strip().splitlines()[0] if text.strip() else ""


def pytest_sessionfinish(session: pytest.Session) -> None:
    _write()


def _write() -> None:
    """Write the records so far: a run cut short still leaves its counts."""
    path = os.environ.get("CELERIAC_SUITE_REPORT")
    if path:
        Path(path).write_text(json.dumps(_records, indent=1, sort_keys=True))
