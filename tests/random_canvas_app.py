"""The app of the random-canvas test: tasks that record what ran, in Redis.

Configured by the environment, so that ``celery -A tests.random_canvas_app
worker`` processes and the test process build the same app: the Redis URL
(``RANDOM_CANVAS_REDIS_URL``: broker, result backend and record), the queue
(``RANDOM_CANVAS_QUEUE``) and celeriac's database (``CELERIAC_DATABASE_URL``).
The ``Engine`` is built here, so every worker of the app runs celeriac's
nodes; canvases dispatched with ``apply_async`` run natively on the same app,
broker and workers.

Each task gets its label as the keyword ``label`` (a parent's result comes
first among the positional arguments, as Celery prepends it). Each body
records ``[task, label, inputs, kwargs]`` (an errback: ``[task, label,
exception type, message]``); ``r.step`` returns a number computed from its
label and inputs, so that a result shows what reached it. ``r.replace``
replaces itself with the canvas it gets as the keyword ``canvas``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import redis
from celery import Celery, signature

from celeriac import Engine

REDIS_URL = os.environ["RANDOM_CANVAS_REDIS_URL"]
RAN_KEY = "record:random-canvas"  # not under the queue's name (``backlog``)

app = Celery("random_canvas", broker=REDIS_URL, set_as_current=False)
app.conf.update(
    result_backend=REDIS_URL,
    result_backend_thread_safe=True,  # one backend, closed by the tests
    task_default_queue=os.environ.get("RANDOM_CANVAS_QUEUE", "random-canvas"),
    # acknowledged after the body (and what it publishes): an empty queue
    # and no unacknowledged message mean everything published ran
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    broker_transport_options={"polling_interval": 0.01},
    result_expires=600,
)
engine = Engine(app, os.environ["CELERIAC_DATABASE_URL"])

_clients: dict[int, redis.Redis[bytes]] = {}


def client() -> redis.Redis[bytes]:
    """A Redis client of this process's own: prefork children must not share one."""
    pid = os.getpid()
    if pid not in _clients:
        _clients[pid] = redis.Redis.from_url(REDIS_URL)
    return _clients[pid]


#: how long ``r.retry`` waits before its second attempt
RETRY_SECONDS = 0.3


class RandomFailure(Exception):
    """What ``r.fail`` raises."""


def _record(*entry: Any) -> None:
    client().rpush(RAN_KEY, json.dumps(entry, sort_keys=True))


def _fold(value: Any) -> int:
    """The sum of the integers in ``value``, however nested."""
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, list | tuple):
        return sum(_fold(item) for item in value)
    return 0


@app.task(name="r.step", shared=False)
def step(*inputs: Any, label: int, **kwargs: int) -> int:
    """Record the call; return a number made of ``label``, inputs and kwargs."""
    _record("r.step", label, inputs, kwargs)
    return (label * 31 + _fold(inputs) + _fold(list(kwargs.values()))) % 997


@app.task(name="r.fail", shared=False)
def fail(*inputs: Any, label: int, **kwargs: int) -> Any:
    """Record the call; raise ``RandomFailure``."""
    _record("r.fail", label, inputs, kwargs)
    raise RandomFailure(f"fail {label}")


@app.task(name="r.retry", bind=True, shared=False, max_retries=1)
def retry(self: Any, *inputs: Any, label: int, **kwargs: int) -> int:
    """Record each attempt; retry the first shortly, then return as ``r.step``.

    Not at once: natively, a retry that runs before the first attempt's
    RETRY state is stored can leave that state in the result backend (the
    result never comes), which is a race of Celery's, not a difference.
    """
    _record("r.retry", label, inputs, kwargs, self.request.retries)
    if self.request.retries == 0:
        raise self.retry(countdown=RETRY_SECONDS)
    return (label * 31 + _fold(inputs) + _fold(list(kwargs.values()))) % 997


@app.task(name="r.replace", bind=True, shared=False)
def replace(
    self: Any, *inputs: Any, label: int, canvas: dict[str, Any], **kwargs: int
) -> Any:
    """Record the call (not ``canvas``); replace itself with ``canvas``."""
    _record("r.replace", label, inputs, kwargs)
    return self.replace(signature(canvas, app=self.app))


@app.task(name="r.errback", shared=False)
def errback(request: Any, exc: BaseException, traceback: Any, *, label: int) -> None:
    """A new-style errback: records its label and the exception it was given."""
    _record("r.errback", label, type(exc).__name__, str(exc))


# -- read by the test process ---------------------------------------------------


def ran() -> list[str]:
    """Every record, as JSON text, sorted: a multiset to compare."""
    return sorted(item.decode() for item in client().lrange(RAN_KEY, 0, -1))


def forget_ran() -> None:
    """Start a new record."""
    client().delete(RAN_KEY)


def backlog() -> int:
    """Messages of the app's queue not yet worked off (queued, or unacked)."""
    queue = str(app.conf.task_default_queue)
    queued = sum(client().llen(key) for key in client().scan_iter(f"{queue}*"))
    return int(queued) + int(client().hlen("unacked"))
