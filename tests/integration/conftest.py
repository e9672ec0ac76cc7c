"""Fixtures for tests that run real ``celery worker`` processes.

The workers import ``tests.proc_app``, configured by the environment alone, as
in a deployment: the test's PostgreSQL database, its Redis, a queue of its own.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from celery import Celery, signature

from tests.tasks import close_app
from tests.workers import Workers

ROOT = Path(__file__).resolve().parents[2]
#: Seconds a gated task waits for its gate before it fails.
GATE_TIMEOUT = 15.0


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test that ran worker processes shows their logs."""
    report = yield
    workers = getattr(item, "funcargs", {}).get("workers")
    if report.failed and isinstance(workers, Workers):
        report.sections.append(("celery worker logs", workers.tails()))
    return report


@pytest.fixture
def proc_env(
    request: pytest.FixtureRequest,
    postgres_url: str,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    """The environment of ``tests.proc_app`` here and in every child process.

    Parametrize it indirectly with ``{"engine": {...}, "transport": {...}}``:
    the ``Engine``'s options and the broker's transport options.
    """
    param = getattr(request, "param", {})
    transport = param.get("transport")
    settings = {
        "CELERIAC_TEST_BROKER_URL": redis_url,
        "CELERIAC_TEST_QUEUE": f"proc-{uuid.uuid4().hex[:12]}",
        "CELERIAC_DATABASE_URL": postgres_url,
        "CELERIAC_TEST_ENGINE_OPTIONS": json.dumps(param.get("engine", {})),
        "CELERIAC_TEST_TRANSPORT_OPTIONS": json.dumps(transport) if transport else "",
    }
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, **settings, "PYTHONPATH": path}


@pytest.fixture
def proc(proc_env: dict[str, str]) -> Iterator[ModuleType]:
    """``tests.proc_app``, imported afresh with this test's environment."""
    sys.modules.pop("tests.proc_app", None)
    module = importlib.import_module("tests.proc_app")
    yield module
    sys.modules.pop("tests.proc_app", None)
    module.engine.close()
    close_app(module.app, *module._clients.values())


@pytest.fixture
def workers(
    proc: ModuleType, proc_env: dict[str, str], tmp_path: Path
) -> Iterator[Workers]:
    """Starts worker processes on demand (``workers.start(2)``); stops them all."""
    running = Workers(proc.app, proc_env, tmp_path)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def gate(app: Celery) -> Iterator[SimpleNamespace]:
    """``r.wait`` (and ``r.replace_later``) block until the test opens the gate."""
    opened = threading.Event()
    started = threading.Event()

    @app.task(name="r.wait", shared=False)
    def wait(value: Any = None) -> Any:
        started.set()
        assert opened.wait(GATE_TIMEOUT)
        return value

    @app.task(name="r.replace_later", bind=True, shared=False)
    def replace_later(self: Any, canvas: dict[str, Any]) -> Any:
        started.set()
        assert opened.wait(GATE_TIMEOUT)
        return self.replace(signature(canvas, app=self.app))

    yield SimpleNamespace(
        wait=wait, replace_later=replace_later, opened=opened, started=started
    )
    opened.set()
