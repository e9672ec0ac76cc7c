"""Tasks the tests run, registered on a fresh Celery app per test.

Every task appends ``(name, args)`` to ``tasks.ran`` when its body runs, so a
test can check which tasks ran, and how often.
"""

from __future__ import annotations

import threading
import time
import uuid
from types import SimpleNamespace
from typing import Any

from celery import Celery


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
    )
    app.test_tasks = namespace  # type: ignore[attr-defined]
    return namespace
