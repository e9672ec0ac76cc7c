"""Shared fixtures: a Celery app with test tasks, an engine, an embedded worker."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from celeriac import Engine
from tests.node_events import check_node_events
from tests.tasks import make_app

pytest_plugins = ["tests.servers", "tests.hypothesis_profiles"]

# pytest-xdist sets COLUMNS in its workers; the CLI's subprocesses must see
# what they see under a plain ``pytest`` (a pipe, no width), unless a test
# sets a width itself.
os.environ.pop("COLUMNS", None)

#: A test's ``user_properties`` entry under this name is printed in the
#: summary at the end of the run, also from pytest-xdist's workers.
SUMMARY_LINE = "summary line"
_summary_lines: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "teardown":
        _summary_lines.extend(
            str(value) for name, value in report.user_properties if name == SUMMARY_LINE
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport() -> Iterator[None]:
    """Captured output keeps a lone surrogate as ``\\udXXX`` text.

    tests/integration/test_values.py logs such strings, and pytest-xdist
    sends each report to the main process as UTF-8, which cannot hold them.
    """
    outcome: Any = yield
    report = outcome.get_result()
    report.sections = [
        (title, text.encode("utf-8", "backslashreplace").decode("utf-8"))
        for title, text in report.sections
    ]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in _summary_lines:
        terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def _scrub_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up a developer's own celeriac configuration."""
    monkeypatch.delenv("CELERIAC_DATABASE_URL", raising=False)
    monkeypatch.delenv("CELERIAC_APP", raising=False)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    """A SQLite file; its node events are checked against the table at the end."""
    path = tmp_path / "celeriac.db"
    yield f"sqlite:///{path}"
    if path.exists():
        check_node_events(f"sqlite:///{path}")


@pytest.fixture
def app():
    return make_app()


@pytest.fixture
def tasks(app):
    return app.test_tasks


@pytest.fixture
def engine(app, database_url) -> Engine:
    """An engine on the parametrized database (SQLite, and PostgreSQL)."""
    engine = Engine(app, database_url)
    engine.migrate()
    yield engine
    engine.close()


@pytest.fixture
def worker(engine) -> Iterator[object]:
    with engine.embedded_worker(concurrency=4) as running:
        yield running
