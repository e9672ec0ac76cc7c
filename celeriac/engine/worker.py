"""A real Celery worker inside this process, for the embedded default."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from celery import Celery
from celery.bootsteps import TERMINATE  # type: ignore[attr-defined]  # untyped
from celery.contrib.testing.worker import start_worker


@contextmanager
def embedded_worker(app: Celery, concurrency: int = 2, **options: Any) -> Iterator[Any]:
    """Run a threads-pool worker on ``app``'s broker (``memory://`` if none)."""
    if not app.conf.broker_url:
        _use_broker(app, "memory://localhost/")
    if str(app.conf.broker_url).startswith("memory"):
        # kombu's in-memory transport polls its queues, once a second by default
        transport_options = app.conf.broker_transport_options
        transport_options.setdefault("polling_interval", 0.005)
    options.setdefault("loglevel", "WARNING")
    options.setdefault("shutdown_timeout", 30.0)
    worker = None
    try:
        with start_worker(
            app,
            concurrency=concurrency,
            pool="threads",
            perform_ping_check=False,
            **options,
        ) as worker:
            try:
                yield worker
            finally:
                _wake_while_stopping(app, worker)
    finally:
        if worker is not None:
            _wait_for_running_tasks(worker)


def _use_broker(app: Celery, url: str) -> None:
    """Point ``app`` at ``url``, dropping connections made for its old broker.

    A submit before the worker started published through pools built for
    the default broker (``amqp://localhost``); left in place, every later
    publish would go there instead of to the worker's broker. (Celery resets
    the same two pools after a fork.)
    """
    app.conf.update(broker_url=url)
    state = vars(app)
    pool = state.pop("_pool", None)  # the class's default, None, shows again
    if pool is not None:
        pool.force_close_all()
    amqp = state.get("amqp")  # a cached property: present once used
    if amqp is not None:
        amqp._producer_pool = None


def _wait_for_running_tasks(worker: Any) -> None:
    """Let the tasks still running finish before the context exits.

    Celery's test worker stops cold, and its threads pool does not wait on a
    cold stop: a task would go on running (and recording) after the worker
    is gone. Waiting for them makes leaving the context a warm shutdown;
    tasks not started yet are cancelled (their nodes stay QUEUED for the
    next worker or a recovery pass).
    """
    executor = getattr(worker.pool, "executor", None)
    if executor is not None:
        executor.shutdown(wait=True, cancel_futures=True)


def _wake_while_stopping(app: Celery, worker: Any) -> None:
    """Shorten shutdown from seconds to milliseconds.

    The worker's loop waits up to 2 s for a message between checks of its
    state, twice while stopping; a broadcast ping wakes it at once.
    """

    def wake() -> None:
        deadline = time.monotonic() + 10
        while worker.blueprint.state != TERMINATE and time.monotonic() < deadline:
            time.sleep(0.02)
            with suppress(Exception):
                app.control.broadcast("ping", reply=False)

    threading.Thread(target=wake, name="celeriac-wake", daemon=True).start()
