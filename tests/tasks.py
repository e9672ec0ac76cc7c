"""Tasks the tests run, registered on a fresh Celery app per test.

Every task appends ``(name, args)`` to ``tasks.ran`` when its body runs, so a
test can check which tasks ran, and how often.
"""

from __future__ import annotations

import gc
import os
import threading
import time
import uuid
from types import SimpleNamespace
from typing import Any

from celery import Celery, signature


def descend(depth: int) -> Any:
    """Recurse ``depth`` times, then raise.

    Two functions call each other, so that Python's traceback does not fold
    the frames into one "previous line repeated" line.
    """
    return raise_at_the_bottom(depth) if depth <= 0 else descend_again(depth - 1)


def descend_again(depth: int) -> Any:
    return descend(depth)


def raise_at_the_bottom(depth: int) -> Any:
    raise ValueError(f"hit bottom at {depth}")


def make_app(
    name: str = "t", broker: str = "memory://localhost/", **conf: Any
) -> Celery:
    """A Celery app of its own: its own queue, so apps never share messages."""
    app = Celery(f"{name}-{uuid.uuid4().hex[:8]}", broker=broker, set_as_current=False)
    app.conf.task_default_queue = f"q-{uuid.uuid4().hex}"
    app.conf.broker_transport_options = {"polling_interval": 0.005}
    app.conf.update(conf)
    register_tasks(app)
    return app


def close_app(app: Celery, *clients: Any) -> None:
    """Close ``app`` and the Redis connections it and ``clients`` opened here.

    Left open, the garbage collector closes them, and its ResourceWarning
    fails whichever later test it happens to run in. An app with Redis
    results must share one backend between threads
    (``result_backend_thread_safe``): a worker thread's own could not be
    reached here.
    """
    gc.collect()  # results dropped by now unsubscribe while the backend is up
    backend = app.backend
    consumer = getattr(backend, "result_consumer", None)
    if consumer is not None:
        consumer.stop()
        # a result collected later finds nothing to unsubscribe from
        consumer._pubsub = None
        consumer.subscribed_to.clear()
    client = getattr(backend, "client", None)
    if client is not None:
        client.connection_pool.disconnect()
    for each in clients:
        each.close()
    app.close()


def register_tasks(app: Celery) -> SimpleNamespace:
    """Define the test tasks on ``app`` (not shared with other apps)."""
    ran: list[tuple[str, tuple[Any, ...]]] = []
    lock = threading.Lock()
    started: dict[str, float] = {}

    def record(name: str, *args: Any) -> None:
        with lock:
            ran.append((name, args))

    @app.task(name="t.add", shared=False)
    def add(x: Any, y: Any) -> Any:
        record("t.add", x, y)
        return x + y

    @app.task(name="t.mul", shared=False)
    def mul(x: Any, y: Any) -> Any:
        record("t.mul", x, y)
        return x * y

    @app.task(name="t.tsum", shared=False)
    def tsum(values: list[Any], *extra: Any) -> Any:
        record("t.tsum", values, *extra)
        return sum(values) + sum(extra)

    @app.task(name="t.identity", shared=False)
    def identity(value: Any = None, *rest: Any) -> Any:
        record("t.identity", value, *rest)
        return value

    @app.task(name="t.collect", shared=False)
    def collect(*args: Any, **kwargs: Any) -> Any:
        record("t.collect", *args)
        return [list(args), kwargs]

    @app.task(name="t.boom", shared=False)
    def boom(*args: Any) -> Any:
        record("t.boom", *args)
        raise ValueError(f"boom {list(args)}")

    @app.task(name="t.sleep", shared=False)
    def sleep(seconds: float, value: Any = None) -> Any:
        record("t.sleep", seconds)
        time.sleep(seconds)
        return value

    @app.task(name="t.on_error", shared=False)
    def on_error(task_id: str) -> str:
        record("t.on_error", task_id)
        return task_id

    @app.task(name="t.on_error_request", shared=False)
    def on_error_request(request: Any, exc: BaseException, traceback: Any) -> str:
        record("t.on_error_request", type(exc).__name__)
        return type(exc).__name__

    @app.task(name="t.on_error_report", shared=False)
    def on_error_report(request: Any, exc: BaseException, traceback: Any) -> list[str]:
        """A new-style errback that records which task failed, and how."""
        report = (request.id, type(exc).__name__, str(exc))
        record("t.on_error_report", *report)
        return list(report)

    @app.task(name="t.on_error_raises", shared=False)
    def on_error_raises(task_id: str) -> None:
        record("t.on_error_raises", task_id)
        raise RuntimeError(f"errback for {task_id} broke")

    @app.task(name="t.on_error_request_raises", shared=False)
    def on_error_request_raises(
        request: Any, exc: BaseException, traceback: Any
    ) -> None:
        record("t.on_error_request_raises", request.id)
        raise RuntimeError(f"errback for {request.id} broke")

    @app.task(name="t.deep_boom", shared=False)
    def deep_boom(depth: int, seconds: float = 0.0) -> Any:
        """Sleeps, then raises from ``depth`` frames down: a long traceback."""
        record("t.deep_boom", depth, seconds)
        time.sleep(seconds)
        return descend(depth)

    @app.task(name="t.whereabouts", bind=True, shared=False)
    def whereabouts(self: Any) -> list[Any]:
        """The host Celery tells the task it runs on, and its process id."""
        record("t.whereabouts")
        return [self.request.hostname, os.getpid()]

    @app.task(name="t.stamp", shared=False)
    def stamp(tag: str, seconds: float = 0.0) -> str:
        """Records its start time; sleeps; returns the tag."""
        with lock:
            started[tag] = time.monotonic()
        record("t.stamp", tag)
        time.sleep(seconds)
        return tag

    @app.task(name="t.options", bind=True, shared=False)
    def options(self: Any, value: Any = None) -> dict[str, Any]:
        """Reports how its message came: queue, priority, and whether delayed.

        The queue is named relative to the app's default queue (``"default"``
        for that one), so apps with different queue names report alike.
        """
        record("t.options", value)
        info = self.request.delivery_info or {}
        queue = str(info.get("routing_key") or "")
        return {
            "value": value,
            "queue": queue.removeprefix(app.conf.task_default_queue) or "default",
            "priority": info.get("priority"),
            "delayed": self.request.eta is not None,
        }

    @app.task(name="t.replace_with", bind=True, shared=False)
    def replace_with(self: Any, *args: Any) -> Any:
        """Replaces itself (``Task.replace``) with its last argument, a canvas.

        With an argument before it (a chain step's parent result), the
        canvas is fed that value through ``t.identity``.
        """
        *received, canvas = args
        record("t.replace_with", *received)
        sig = signature(canvas, app=self.app)
        return self.replace(identity.s(*received) | sig if received else sig)

    namespace = SimpleNamespace(
        ran=ran,
        started=started,
        add=add,
        mul=mul,
        tsum=tsum,
        identity=identity,
        collect=collect,
        boom=boom,
        sleep=sleep,
        on_error=on_error,
        on_error_request=on_error_request,
        stamp=stamp,
        options=options,
        on_error_report=on_error_report,
        on_error_raises=on_error_raises,
        on_error_request_raises=on_error_request_raises,
        deep_boom=deep_boom,
        whereabouts=whereabouts,
        replace_with=replace_with,
    )
    app.test_tasks = namespace  # type: ignore[attr-defined]
    return namespace
