"""The app and worker of the converted suite, in place of Celery's pytest plugin's.

The conversion appends an import of ``celery_app`` and ``celery_session_worker``
to Celery's integration conftest, so these are used: each test's app is the
session's (Celery's suite makes one per test; a threads-pool worker runs the
tasks of whichever app is the default, and the engine is bound to one app),
and the worker is a threads-pool worker in the test process (Celery's own is
prefork), on the broker and result backend the suite's configuration names.
In celeriac mode an ``Engine`` is bound to the session app first, on
``CELERIAC_DATABASE_URL`` (or a SQLite file), and the dispatches go to its
``submit()``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from celeriac import Engine
from celeriac.engine.worker import embedded_worker
from tests.celery_suite.dispatch import CELERIAC, RUN

#: Threads in the worker: Celery's tests wait on tasks that wait on others.
CONCURRENCY = 8


@pytest.fixture
def celery_app(celery_session_app: Celery) -> Celery:
    """The session's app, for every test."""
    return celery_session_app


@pytest.fixture(scope="session")
def celery_session_worker(
    celery_session_app: Celery,
    celery_includes: Sequence[str],
    celery_class_tasks: Sequence[Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Any]:
    """One worker for the session: natively, or under celeriac's engine."""
    for module in celery_includes:
        celery_session_app.loader.import_task_module(module)
    for class_task in celery_class_tasks:
        celery_session_app.register_task(class_task)
    engine = None
    if RUN.mode == CELERIAC:
        engine = Engine(celery_session_app, _database_url(tmp_path_factory))
        engine.migrate()
        RUN.engine = engine
    try:
        with embedded_worker(celery_session_app, concurrency=CONCURRENCY) as worker:
            yield worker
    finally:
        RUN.engine = None
        if engine is not None:
            engine.close()


def _database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("CELERIAC_DATABASE_URL")
    if url:
        return url
    directory: Path = tmp_path_factory.mktemp("celeriac")
    return f"sqlite:///{directory / 'celeriac.db'}"
