"""The benchmark's Celery apps: the same tasks and settings, native or with celeriac.

``build()`` makes one app. Native Celery gets a result backend (Redis, or
Celery's SQL backend on PostgreSQL); celeriac gets none (it stores results
in its own tables) and an ``Engine`` instead. Every other setting is the same
for both, so that a comparison differs only in who drives the canvas.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery, chord

from celeriac import Engine

#: The Celery settings of every benchmark app: docs/operations.md's
#: crash-safe settings (late acks, one message prefetched per pool process).
SETTINGS: dict[str, Any] = {
    "task_acks_late": True,
    "worker_prefetch_multiplier": 1,
    "broker_connection_retry_on_startup": True,
    "worker_hijack_root_logger": False,
    "result_expires": 3600,
}

#: Redis list where ``bench.stamp`` records its starts and ends (per queue).
STAMPS = "bench:stamps:{queue}"
#: Redis key where a benchmark worker records when it sent ``worker_ready``.
READY = "bench:ready:{name}"
#: Redis hash where benchmark workers record when they published each task
#: message (task id -> time), when ``BENCH_PUBLISH_TIMES`` is set (per queue).
PUBLISHED = "bench:published:{queue}"


@dataclass
class Bench:
    """One app, its tasks, and its engine (celeriac) or result backend (native)."""

    mode: str
    queue: str
    app: Celery
    engine: Engine | None
    noop: Any
    count: Any
    stamp: Any
    fan_out: Any

    def close(self) -> None:
        """Release connections (the app's broker pool, the engine's database)."""
        if self.engine is not None:
            self.engine.close()
        self.app.close()


_clients: dict[tuple[int, str], redis.Redis] = {}


def client(url: str) -> redis.Redis:
    """A Redis client of this process's own: prefork children must not share one."""
    key = (os.getpid(), url)
    if key not in _clients:
        _clients[key] = redis.Redis.from_url(url)
    return _clients[key]


def build(
    mode: str,
    broker_url: str,
    queue: str,
    result_backend: str | None = None,
    database_url: str | None = None,
    engine_options: dict[str, Any] | None = None,
) -> Bench:
    """An app on ``broker_url`` whose tasks go to ``queue``.

    ``mode`` is ``native`` (with ``result_backend``) or ``celeriac`` (with an
    ``Engine`` on ``database_url``).
    """
    if mode not in ("native", "celeriac"):
        raise ValueError(f"unknown mode {mode!r}")
    app = Celery(
        f"bench-{mode}",
        broker=broker_url,
        backend=result_backend if mode == "native" else None,
        set_as_current=False,
    )
    app.conf.update(SETTINGS, task_default_queue=queue)
    stamps = STAMPS.format(queue=queue)

    @app.task(name="bench.noop", shared=False)
    def noop(*_args: Any, **_kwargs: Any) -> None:
        """Do nothing: the per-task overhead is all there is to measure."""

    @app.task(name="bench.count", shared=False)
    def count(results: list[Any], *_args: Any) -> int:
        """A chord body: how many header results it got."""
        return len(results)

    @app.task(name="bench.stamp", bind=True, shared=False)
    def stamp(self: Any, tag: str, seconds: float = 0.0) -> str:
        """Record this body's start and end (Redis), sleeping ``seconds`` between."""
        record = client(broker_url)
        pid = os.getpid()
        record.rpush(stamps, json.dumps(["start", tag, time.time(), pid]))
        time.sleep(seconds)
        record.rpush(stamps, json.dumps(["end", tag, time.time(), pid]))
        return tag

    @app.task(name="bench.fan_out", bind=True, shared=False)
    def fan_out(self: Any, n: int) -> Any:
        """Replace itself (``Task.replace``) with a chord of ``n`` no-op tasks."""
        return self.replace(chord([noop.s() for _ in range(n)], count.s()))

    engine = None
    if mode == "celeriac":
        engine = Engine(app, database_url, **(engine_options or {}))
    return Bench(mode, queue, app, engine, noop, count, stamp, fan_out)


def stamps(bench: Bench, broker_url: str) -> list[tuple[str, str, float, int]]:
    """``(event, tag, time, pid)`` of every ``bench.stamp`` start and end so far."""
    raw = client(broker_url).lrange(STAMPS.format(queue=bench.queue), 0, -1)
    return [
        (str(e), str(tag), float(at), int(pid))
        for e, tag, at, pid in map(json.loads, raw)
    ]


def clear_stamps(bench: Bench, broker_url: str) -> None:
    """Forget the stamps recorded so far."""
    client(broker_url).delete(STAMPS.format(queue=bench.queue))
