"""Measuring inside worker processes: SQL counts and profiles.

``SqlCounter`` counts the transactions (``begin``, ``commit``, ``rollback``)
and statements (``before_cursor_execute``) an engine's database sees (a
statement on a connection in autocommit counts as a commit too: it commits
on its own), in the
threads that run task bodies only (a prefork child's main thread), so the
heartbeat and recovery threads are left out. Each count is also kept per
``Store`` method (the frame of ``celeriac/storage/store.py`` it came from).
A thread of each process adds its counts to a Redis hash every
``FLUSH_INTERVAL`` seconds, where the benchmark reads them.

``Profiler`` runs cProfile in each pool process and writes its stats to a
directory when the process ends (a warm shutdown of the worker).
"""

from __future__ import annotations

import cProfile
import functools
import inspect
import os
import sys
import threading
from collections import Counter
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

import redis
import sqlalchemy as sa
from sqlalchemy import event

from celeriac.storage import Store

FLUSH_INTERVAL = 0.1


@functools.cache
def _store_methods() -> dict[CodeType, str]:
    """The code of each public ``Store`` method (under its decorators), by name."""
    found: dict[CodeType, str] = {}
    for name, member in inspect.getmembers(Store, inspect.isfunction):
        if not name.startswith("_"):
            found[inspect.unwrap(member).__code__] = name
    return found


def store_method(depth: int = 2) -> str:
    """The public ``Store`` method the caller runs inside, or ``other``.

    The outermost one: a method that calls another (``list_workflows`` reads
    a ``workflow_page``) names the statements of both. Frames are matched by
    their code alone (reading a frame's locals costs more than the
    statement being counted).
    """
    methods = _store_methods()
    frame: FrameType | None = sys._getframe(depth)
    method = "other"
    while frame is not None:
        method = methods.get(frame.f_code, method)
        frame = frame.f_back
    return method


class SqlCounter:
    """Counts one engine's transactions and statements into a Redis hash."""

    def __init__(self, db: sa.Engine, redis_url: str, key: str) -> None:
        self.db = db
        self.redis_url = redis_url
        self.key = key
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._pid = 0

    def install(self) -> None:
        """Listen to the engine's events (inherited by forked pool processes)."""
        event.listen(self.db, "begin", self._on_begin)
        event.listen(self.db, "commit", self._on_commit)
        event.listen(self.db, "rollback", self._on_rollback)
        event.listen(self.db, "before_cursor_execute", self._on_statement)

    def _add(self, what: str) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if self._pid != os.getpid():
            self._start()
        method = store_method(3)
        with self._lock:
            self._counts[what] += 1
            self._counts[f"{what}:{method}"] += 1

    def _on_begin(self, _conn: Any) -> None:
        self._add("tx")

    def _on_commit(self, _conn: Any) -> None:
        self._add("commit")

    def _on_rollback(self, _conn: Any) -> None:
        self._add("rollback")

    def _on_statement(self, conn: sa.Connection, *_: Any) -> None:
        self._add("stmt")
        if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            self._add("commit")

    def _start(self) -> None:
        """First count in this process: start its flushing thread."""
        self._pid = os.getpid()
        self._counts = Counter()
        self._lock = threading.Lock()
        thread = threading.Thread(
            target=self._flush_forever, name="bench-sql-counter", daemon=True
        )
        thread.start()

    def _flush_forever(self) -> None:
        client = redis.Redis.from_url(self.redis_url)
        stop = threading.Event()
        while not stop.wait(FLUSH_INTERVAL):
            self.flush(client)

    def flush(self, client: redis.Redis) -> None:
        """Add the counts made since the last flush to the Redis hash."""
        with self._lock:
            counts, self._counts = self._counts, Counter()
        if not counts:
            return
        pipe = client.pipeline()
        for field, value in counts.items():
            pipe.hincrby(self.key, field, value)
        pipe.execute()


def as_text(value: bytes | str) -> str:
    """A Redis reply as text: bytes from a client that does not decode replies."""
    return value.decode() if isinstance(value, bytes) else value


def read_counts(client: redis.Redis, key: str) -> dict[str, int]:
    """The counts in the Redis hash ``key``."""
    return {as_text(k): int(v) for k, v in client.hgetall(key).items()}


class Profiler:
    """cProfile in each pool process, written to ``directory/<pid>.prof`` at exit."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)
        self.profile: cProfile.Profile | None = None

    def start(self, **_: Any) -> None:
        """``worker_process_init``: profile this pool process from now on."""
        self.profile = cProfile.Profile()
        self.profile.enable()

    def dump(self, **_: Any) -> None:
        """``worker_process_shutdown``: write what was profiled."""
        if self.profile is None:
            return
        self.profile.disable()
        self.profile.dump_stats(str(self.directory / f"{os.getpid()}.prof"))
        self.profile = None
