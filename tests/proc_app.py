"""The app that real ``celery -A tests.proc_app worker`` processes import.

Everything comes from the environment, as in a deployment: the broker
(``CELERIAC_TEST_BROKER_URL``, a Redis URL), the queue
(``CELERIAC_TEST_QUEUE``) and celeriac's database (``CELERIAC_DATABASE_URL``).
The test process imports this module too, with the same environment, to
submit workflows and to read what the tasks recorded.
``CELERIAC_TEST_ENGINE_OPTIONS`` (JSON) adds options to the ``Engine``,
``CELERIAC_TEST_TRANSPORT_OPTIONS`` (JSON) sets the broker transport options, and
``CELERIAC_TEST_LOSE_COMMIT_REPLY`` and ``CELERIAC_TEST_DIE_AFTER`` inject
faults (see ``lose_commit_reply`` and ``die_after``).

Tasks record in Redis (the broker's database, flushed per test), since the
test runs in another process than they do: each body's start, as
``[tag, time.time(), worker name, pid]`` for ``p.stamp``, and a run count per
task name for all of them.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import redis
import sqlalchemy as sa
from celery import Celery, chord

from celeriac import Engine
from tests import faults

BROKER_URL = os.environ["CELERIAC_TEST_BROKER_URL"]
STAMPS_KEY = "proc:stamps"
RUNS_KEY = "proc:runs"

# not the current app: the test process imports this module next to others
app = Celery("proc", broker=BROKER_URL, set_as_current=False)
app.conf.update(
    task_default_queue=os.environ.get("CELERIAC_TEST_QUEUE", "proc"),
    # docs/operations.md's crash-safe settings, with task_reject_on_worker_lost
    # on: the dead-worker tests count on the broker delivering again
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
# Broker transport options from the environment (JSON), e.g. a short Redis
# visibility timeout and a quick sweep of unacknowledged messages
if os.environ.get("CELERIAC_TEST_TRANSPORT_OPTIONS"):
    app.conf.broker_transport_options = json.loads(
        os.environ["CELERIAC_TEST_TRANSPORT_OPTIONS"]
    )

engine = Engine(
    app,
    os.environ["CELERIAC_DATABASE_URL"],
    **json.loads(os.environ.get("CELERIAC_TEST_ENGINE_OPTIONS") or "{}"),
)

_clients: dict[int, redis.Redis[bytes]] = {}


def client() -> redis.Redis[bytes]:
    """A Redis client of this process's own: prefork children must not share one."""
    pid = os.getpid()
    if pid not in _clients:
        _clients[pid] = redis.Redis.from_url(BROKER_URL)
    return _clients[pid]


def _first_in_all_processes(method: str) -> bool:
    """Whether no process broke a COMMIT yet (a Redis flag): this one does."""
    return bool(client().set("proc:reply-lost", method, nx=True))


def lose_commit_reply(db: sa.Engine, method: str) -> None:
    """Fault injection: the first COMMIT made inside Store.``method`` loses its reply.

    Once in all processes (see ``tests.faults.lose_commit_reply``).
    """
    faults.lose_commit_reply(db, method, _first_in_all_processes)


if os.environ.get("CELERIAC_TEST_LOSE_COMMIT_REPLY"):
    lose_commit_reply(engine._db, os.environ["CELERIAC_TEST_LOSE_COMMIT_REPLY"])


def die_after(method: str) -> None:
    """Fault injection: the process SIGKILLs itself once Store.``method`` committed.

    Once in all processes (a Redis flag): a pool process dies between
    recording an outcome and acting on it (running an errback, say).
    """
    real = getattr(engine._store, method)

    def committed_then_die(*args: Any, **kwargs: Any) -> Any:
        outcome = real(*args, **kwargs)
        if client().set("proc:died-after", method, nx=True):
            os.kill(os.getpid(), signal.SIGKILL)
        return outcome

    setattr(engine._store, method, committed_then_die)


def died_after() -> str | None:
    """The Store method after whose commit ``die_after`` killed a process."""
    died = client().get("proc:died-after")
    return died.decode() if died is not None else None


if os.environ.get("CELERIAC_TEST_DIE_AFTER"):
    die_after(os.environ["CELERIAC_TEST_DIE_AFTER"])


def reply_lost() -> str | None:
    """The Store method whose COMMIT reply ``lose_commit_reply`` lost, if any."""
    lost = client().get("proc:reply-lost")
    return lost.decode() if lost is not None else None


def _ran(name: str) -> None:
    client().hincrby(RUNS_KEY, name, 1)


@app.task(name="p.add", shared=False)
def add(x: int, y: int) -> int:
    """Return ``x + y``."""
    _ran("p.add")
    return x + y


@app.task(name="p.tsum", shared=False)
def tsum(values: list[int], *extra: int) -> int:
    """Return the sum of ``values`` and of ``extra``."""
    _ran("p.tsum")
    return sum(values) + sum(extra)


@app.task(name="p.fan_out", bind=True, shared=False)
def fan_out(self: Any, count: int, seconds: float = 0.0) -> Any:
    """Replace itself with a chord of ``p.slow_add(i, i, seconds)``, then ``p.tsum``."""
    _ran("p.fan_out")
    header = (slow_add.si(i, i, seconds) for i in range(count))
    return self.replace(chord(header, tsum.s()))


@app.task(name="p.echo", shared=False)
def echo(values: Any) -> Any:
    """Return what it was given (a chord body that shows its input)."""
    _ran("p.echo")
    return values


@app.task(name="p.sleep", shared=False)
def sleep(seconds: float, value: Any = None) -> Any:
    """Sleep ``seconds``, then return ``value``."""
    _ran("p.sleep")
    time.sleep(seconds)
    return value


@app.task(name="p.step", shared=False)
def step(values: list[int], offset: int, seconds: float = 0.02) -> int:
    """Sleep ``seconds``, then return ``(sum(values) + offset) % 1009``."""
    _ran("p.step")
    time.sleep(seconds)
    return (sum(values) + offset) % 1009


@app.task(name="p.stamp", bind=True, shared=False)
def stamp(self: Any, tag: str, seconds: float = 0.0) -> str:
    """Record when this body started (and where), sleep ``seconds``, return ``tag``."""
    record = [tag, time.time(), self.request.hostname, os.getpid()]
    client().rpush(STAMPS_KEY, json.dumps(record))
    _ran("p.stamp")
    time.sleep(seconds)
    return tag


FLAKY_KEY = "proc:flaky"


def _fails(key: str, failures: int) -> bool:
    """Whether this run of ``key`` is one of its first ``failures`` (all processes)."""
    return int(client().hincrby(FLAKY_KEY, key, 1)) <= failures


@app.task(name="p.slow_add", shared=False)
def slow_add(x: int, y: int, seconds: float = 0.0) -> int:
    """Sleep ``seconds``, then return ``x + y``."""
    _ran("p.slow_add")
    time.sleep(seconds)
    return x + y


@app.task(name="p.flaky", bind=True, shared=False, max_retries=20)
def flaky(
    self: Any, x: int, y: int, key: str, failures: int = 1, countdown: float = 0.1
) -> int:
    """``self.retry`` the first ``failures`` runs of ``key``; then return ``x + y``."""
    _ran("p.flaky")
    if _fails(key, failures):
        raise self.retry(exc=ConnectionError(f"flaky {key}"), countdown=countdown)
    return x + y


@app.task(
    name="p.auto",
    shared=False,
    autoretry_for=(ConnectionError,),
    max_retries=20,
    default_retry_delay=0.1,
)
def auto(x: int, y: int, key: str, failures: int = 1) -> int:
    """Raise the first ``failures`` runs of ``key`` (``autoretry_for`` retries)."""
    _ran("p.auto")
    if _fails(key, failures):
        raise ConnectionError(f"auto {key}")
    return x + y


@app.task(name="p.fold", shared=False)
def fold(values: list[int], offset: int, seconds: float = 0.0) -> int:
    """``p.step`` without touching Redis: for tests that restart Redis under it."""
    time.sleep(seconds)
    return (sum(values) + offset) % 1009


GATE_KEY = "proc:gate"


@app.task(name="p.gate", shared=False)
def gate(value: Any, limit: float = 120.0) -> Any:
    """Return ``value`` once the test opened the gate (``open_gate``)."""
    _ran("p.gate")
    deadline = time.monotonic() + limit
    while not client().exists(GATE_KEY):
        if time.monotonic() > deadline:
            raise TimeoutError("the gate was never opened")
        time.sleep(0.05)
    return value


ERRBACKS_KEY = "proc:errbacks"


@app.task(name="p.fail", shared=False)
def fail(value: Any) -> None:
    """Raise ``ValueError(f"fail {value}")``."""
    _ran("p.fail")
    raise ValueError(f"fail {value}")


@app.task(name="p.on_error", shared=False)
def on_error(task_id: str) -> str:
    """An errback of Celery's old form: given the failed task's id."""
    _ran("p.on_error")
    client().rpush(ERRBACKS_KEY, json.dumps(["p.on_error", task_id]))
    return task_id


@app.task(name="p.on_error_request", shared=False)
def on_error_request(request: Any, exc: BaseException, traceback: Any) -> str:
    """An errback taking ``(request, exc, traceback)``: records what it got."""
    _ran("p.on_error_request")
    got = [request.id, request.task, list(request.args), dict(request.kwargs)]
    got += [type(exc).__name__, str(exc), str(traceback)]
    client().rpush(ERRBACKS_KEY, json.dumps(["p.on_error_request", *got]))
    return str(request.id)


# -- read by the test process -------------------------------------------------


def stamps() -> list[tuple[str, float]]:
    """``(tag, start time)`` of every ``p.stamp`` body that started, in order."""
    raw = client().lrange(STAMPS_KEY, 0, -1)
    return [(str(tag), float(at)) for tag, at, *_ in map(json.loads, raw)]


def stamped_by(tag: str) -> tuple[str, int]:
    """The worker (``-n`` name) and process that first ran ``p.stamp(tag)``."""
    for item in client().lrange(STAMPS_KEY, 0, -1):
        found, _, worker, pid = json.loads(item)
        if found == tag:
            return str(worker), int(pid)
    raise LookupError(tag)


def stamp_workers() -> set[str]:
    """The workers (``-n`` names) that ran a ``p.stamp`` body."""
    raw = client().lrange(STAMPS_KEY, 0, -1)
    return {str(json.loads(item)[2]) for item in raw}


def backlog() -> int:
    """Messages of this app's queue not yet worked off: queued, or taken unacked.

    The workers ack late (after the body, or after refusing to run it), so
    zero means every message published so far went all the way through.
    """
    queue = str(app.conf.task_default_queue)
    queued = sum(client().llen(key) for key in client().scan_iter(f"{queue}*"))
    return int(queued) + int(client().hlen("unacked"))


def runs(name: str) -> int:
    """How many times the body of task ``name`` ran."""
    return int(client().hget(RUNS_KEY, name) or 0)


def open_gate() -> None:
    """Let every ``p.gate`` body return."""
    client().set(GATE_KEY, 1)


def errback_calls() -> list[list[Any]]:
    """What each ``p.on_error``/``p.on_error_request`` call was given, in order."""
    return [json.loads(item) for item in client().lrange(ERRBACKS_KEY, 0, -1)]


def retried(key: str) -> int:
    """How many times ``p.flaky``/``p.auto`` ran for ``key``."""
    return int(client().hget(FLAKY_KEY, key) or 0)
