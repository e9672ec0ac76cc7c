"""The module ``celery -A benchmarks.worker worker`` imports.

Everything comes from the environment, as the benchmark sets it per worker:

- ``BENCH_MODE``: ``native`` or ``celeriac``;
- ``BENCH_BROKER_URL``, ``BENCH_QUEUE``;
- ``BENCH_RESULT_BACKEND`` (native), ``CELERIAC_DATABASE_URL`` (celeriac);
- ``BENCH_ENGINE_OPTIONS``: JSON options for the ``Engine``;
- ``BENCH_COUNT_SQL``: a Redis hash key; count the engine's transactions and
  statements into it (``benchmarks/instrument.py``);
- ``BENCH_PROFILE``: a directory; write a cProfile of each pool process there
  when the worker shuts down warmly;
- ``BENCH_PUBLISH_TIMES``: if set, record when each task message was
  published (``PUBLISHED``), for the dispatch latency.

Each worker also records when it was ready (``READY``), for the recovery
workload.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from celery import signals

from benchmarks.app import PUBLISHED, READY, build, client
from benchmarks.instrument import Profiler, SqlCounter

BROKER_URL = os.environ["BENCH_BROKER_URL"]

bench = build(
    os.environ["BENCH_MODE"],
    BROKER_URL,
    os.environ["BENCH_QUEUE"],
    result_backend=os.environ.get("BENCH_RESULT_BACKEND"),
    database_url=os.environ.get("CELERIAC_DATABASE_URL"),
    engine_options=json.loads(os.environ.get("BENCH_ENGINE_OPTIONS") or "{}"),
)
app = bench.app

if bench.engine is not None and os.environ.get("BENCH_COUNT_SQL"):
    SqlCounter(bench.engine._db, BROKER_URL, os.environ["BENCH_COUNT_SQL"]).install()

if os.environ.get("BENCH_PROFILE"):
    _profiler = Profiler(os.environ["BENCH_PROFILE"])
    signals.worker_process_init.connect(_profiler.start, weak=False)
    signals.worker_process_shutdown.connect(_profiler.dump, weak=False)


@signals.worker_ready.connect(weak=False)
def _record_ready(sender: Any = None, **_: Any) -> None:
    if getattr(sender, "app", None) is app:
        client(BROKER_URL).set(READY.format(name=sender.hostname), time.time())


if os.environ.get("BENCH_PUBLISH_TIMES"):

    @signals.after_task_publish.connect(weak=False)
    def _record_published(headers: Any = None, **_: Any) -> None:
        at = time.time()
        published = PUBLISHED.format(queue=bench.queue)
        client(BROKER_URL).hset(published, str((headers or {})["id"]), at)
