"""The workloads: each runs on the systems it compares and returns its figures.

Times are wall-clock seconds measured in this (the submitting) process, from
the call that hands the canvas over (``canvas.apply_async()`` or
``engine.submit(canvas)``) to the moment the final result is in this
process's hands (``AsyncResult.get()`` or ``Workflow.get()``). Building the
canvas object is not timed: it is the same for both.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import redis
import sqlalchemy as sa
from celery import chain, chord, group

from benchmarks.app import READY, Bench, clear_stamps, stamps
from benchmarks.harness import ROOT, Harness, System
from benchmarks.instrument import FLUSH_INTERVAL, read_counts
from celeriac.storage.schema import events

#: Seconds one canvas may take before the run counts as failed.
TIMEOUT = 600.0
#: Engine options of the recovery workload: a dead worker is noticed quickly.
FAST_RECOVERY = {
    "recovery_delay": 2.0,
    "worker_timeout": 2.0,
    "heartbeat_interval": 0.5,
    "recovery_interval": 0.5,
}

Canvas = tuple[Any, Any]
#: Store methods that run once per node (the rest run once per workflow).
NODE_METHODS = ("claim_node", "record_success", "record_failure", "record_retry")


class WrongResult(Exception):
    """A canvas returned something else than expected."""


@dataclass(frozen=True)
class Sizes:
    """How big each workload is."""

    chain_short: int = 100
    chain_long: int = 1000
    group: int = 1000
    chord: int = 1000
    submit: int = 100_000
    #: the 200 ms tasks of the pause workload, run four at a time
    pause: int = 40
    #: the chain of 500 ms tasks whose worker is killed
    recovery: int = 6
    warmup: int = 10
    #: the workflow submitted, then cancelled, in fresh processes
    million: int = 1_000_000
    #: the workflow whose get() poll is timed against a 10-node one's
    poll: int = 100_000
    #: finished nodes in the tables under a chain of ``chain_short``
    history: int = 10_000_000
    #: of those, the nodes purged at the end (purge throughput)
    purge: int = 1_000_000
    #: nodes per second of a group of chains of 5 this large ...
    flat: int = 100_000
    #: ... against one this large, on the same worker
    flat_small: int = 5_000
    #: the chord a task replaces itself with (``Task.replace``)
    replace: int = 10_000
    #: the throughput workload's chains of 10 and chords of 100, at once
    throughput_chains: int = 200
    throughput_chords: int = 20

    @classmethod
    def quick(cls) -> Sizes:
        """N = 20 for every size (a few thousand for the scale rows): a smoke test."""
        return cls(
            20,
            20,
            20,
            20,
            20,
            20,
            4,
            5,
            2_000,
            2_000,
            20_000,
            10_000,
            200,
            50,
            20,
            20,
            2,
        )


# -- canvases -------------------------------------------------------------------


def chain_of(bench: Bench, n: int) -> Canvas:
    """``n`` no-op tasks one after the other; the result is the last one's."""
    return chain(*[bench.noop.s() for _ in range(n)]), None


def group_of(bench: Bench, n: int) -> Canvas:
    """``n`` no-op tasks side by side; the result is the list of theirs."""
    return group([bench.noop.s() for _ in range(n)]), [None] * n


def chord_of(bench: Bench, n: int) -> Canvas:
    """``n`` no-op tasks, then a body that counts their results."""
    return chord([bench.noop.s() for _ in range(n)], bench.count.s()), n


def replace_of(bench: Bench, n: int) -> Canvas:
    """A task that replaces itself with a chord of ``n`` no-op tasks and a body."""
    return bench.fan_out.si(n), n


# -- one run ----------------------------------------------------------------------


def run_once(
    system: System, canvas: Any, expected: Any, timeout: float = TIMEOUT
) -> dict[str, float]:
    """Run ``canvas`` to its result on ``system`` within ``timeout`` seconds."""
    engine = system.bench.engine
    wall = time.time()
    start = time.perf_counter()
    if engine is None:
        result = canvas.apply_async()
        submitted = time.perf_counter() - start
        value = result.get(timeout=timeout)
        seconds = time.perf_counter() - start
        times = {"seconds": seconds, "submit": submitted}
    else:
        workflow = engine.submit(canvas)
        submitted = time.perf_counter() - start
        value = workflow.get(timeout=timeout)
        seconds = time.perf_counter() - start
        record = workflow.record()
        times = {"seconds": seconds, "submit": submitted}
        if record.finished_at is not None:
            # when the workflow was COMPLETED in the database, before get() saw it
            times["settled"] = record.finished_at.timestamp() - wall
    if value != expected:
        raise WrongResult(f"{system.name}: expected {expected!r}, got {value!r}")
    return times


def sql_snapshot(harness: Harness, system: System) -> dict[str, int]:
    """The SQL counts of a counting system so far, once its workers flushed."""
    assert system.sql_key is not None, f"{system.name} does not count its SQL"
    time.sleep(3 * FLUSH_INTERVAL)
    return read_counts(harness.redis_client(), system.sql_key)


def per_node(
    before: dict[str, int], after: dict[str, int], nodes: int
) -> dict[str, Any]:
    """Transactions and statements per node between two snapshots, by method."""
    delta = {key: after.get(key, 0) - before.get(key, 0) for key in after}
    methods: dict[str, dict[str, float]] = {}
    for key, value in delta.items():
        what, _, method = key.partition(":")
        if method and value:
            methods.setdefault(method, {})[what] = round(value / nodes, 2)
    node_tx = sum(delta.get(f"tx:{method}", 0) for method in NODE_METHODS)
    return {
        "transactions": round(delta.get("tx", 0) / nodes, 2),
        "node_transactions": round(node_tx / nodes, 2),
        "commits": round(delta.get("commit", 0) / nodes, 2),
        "statements": round(delta.get("stmt", 0) / nodes, 2),
        "by_method": dict(sorted(methods.items())),
    }


def compare_order(systems: list[System], repeat: int) -> Iterator[list[System]]:
    """``repeat`` rounds over ``systems``, the order reversed every other round.

    (A B, B A, A B, …): neither side always runs on a machine the other just
    warmed or loaded.
    """
    for index in range(repeat):
        yield systems if index % 2 == 0 else systems[::-1]


def compare(
    harness: Harness,
    systems: list[System],
    make: Callable[[Bench, int], Canvas],
    n: int,
    task_nodes: int,
    repeat: int,
    warmup: int,
    log: Callable[[str], None],
    counted: System | None = None,
) -> dict[str, Any]:
    """Run the same canvas on every system, alternating, ``repeat`` times each.

    ``counted``: a celeriac system whose workers count their SQL, run once
    after the timed runs, untimed (``sql_per_node``, under ``celeriac``): the
    timed workers run without instrumentation, as native Celery's do.
    """
    for system in systems:  # connections, imports, the first lease
        run_once(system, *make(system.bench, warmup))
    runs: dict[str, list[dict[str, float]]] = {s.name: [] for s in systems}
    for order in compare_order(systems, repeat):
        for system in order:
            canvas, expected = make(system.bench, n)
            times = run_once(system, canvas, expected)
            runs[system.name].append(times)
            log(f"  {system.name:<14} {times['seconds']:8.3f} s")
    medians = {
        name: statistics.median(t["seconds"] for t in times)
        for name, times in runs.items()
    }
    found: dict[str, Any] = {"n": n, "runs": runs, "medians": medians}
    if counted is not None:
        found["sql_per_node"] = {
            "celeriac": sql_per_node(harness, counted, make, n, task_nodes, warmup)
        }
    return found


def sql_per_node(
    harness: Harness,
    counted: System,
    make: Callable[[Bench, int], Canvas],
    n: int,
    task_nodes: int,
    warmup: int,
) -> dict[str, Any]:
    """Transactions and statements per node of one untimed run on ``counted``."""
    run_once(counted, *make(counted.bench, warmup))
    before = sql_snapshot(harness, counted)
    run_once(counted, *make(counted.bench, n))
    return per_node(before, sql_snapshot(harness, counted), task_nodes)


# -- submit a big canvas ----------------------------------------------------------


def child_json(
    harness: Harness, module: str, url: str, queue: str, args: list[str]
) -> dict[str, Any]:
    """Run ``python -m module`` on the database and queue; the JSON it printed."""
    command = [sys.executable, "-m", module, "--broker", harness.broker_url]
    command += ["--database-url", url, "--queue", queue, *args]
    done = subprocess.run(
        command,
        cwd=ROOT,
        env=harness.child_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{module} failed ({done.returncode}):\n{done.stderr[-3000:]}"
        )
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def submit_big(
    harness: Harness, n: int, repeat: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """Submit an ``n``-node group of 10-task chains, in a fresh process each time.

    No worker listens: only storing and starting (publishing the first task
    of each chain) is measured, with the memory the submitting process needed.
    """
    runs = []
    client = harness.redis_client()
    for index in range(repeat):
        url = harness.database(f"submit{index}")
        queue = f"bench-submit-{harness.run_id}-{index}"
        try:
            figures = child_json(
                harness, "benchmarks.submit", url, queue, ["--nodes", str(n)]
            )
        finally:
            client.delete(queue)
            harness.drop(url)
        runs.append(figures)
        log(
            f"  submit {figures['nodes']} nodes {figures['seconds']:8.3f} s, "
            f"+{figures['peak_delta_mb']:.0f} MB"
        )
    return {
        "n": n,
        "runs": runs,
        "medians": {
            "seconds": statistics.median(r["seconds"] for r in runs),
            "peak_delta_mb": statistics.median(r["peak_delta_mb"] for r in runs),
        },
    }


# -- pause --------------------------------------------------------------------------


def _poll(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.002
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def _running(events_: list[tuple[str, str, float, int]]) -> set[str]:
    started = {tag for event, tag, *_ in events_ if event == "start"}
    ended = {tag for event, tag, *_ in events_ if event == "end"}
    return started - ended


def pause_once(harness: Harness, system: System, n: int) -> dict[str, Any]:
    """Pause a group of ``n`` 200 ms tasks while four of them run."""
    bench, engine = system.bench, system.bench.engine
    assert engine is not None
    clear_stamps(bench, harness.broker_url)
    tags = [f"p{i:03d}" for i in range(n)]
    workflow = engine.submit(group([bench.stamp.si(tag, 0.2) for tag in tags]))
    _poll(
        lambda: len(_running(stamps(bench, harness.broker_url))) >= 4,
        timeout=30,
        what="four tasks running",
    )
    called = time.time()
    workflow.pause()
    returned = time.time()
    nodes = workflow.nodes()
    admitted = {tags[i] for i, node in enumerate(nodes) if node.attempts}
    _poll(lambda: workflow.state == "PAUSED", timeout=30, what="PAUSED")
    paused = time.time()
    # deliveries taken after the pause are claimed, held back and acked
    time.sleep(0.5)
    recorded = stamps(bench, harness.broker_url)
    starts = {tag: at for event, tag, at, _ in recorded if event == "start"}
    ends = {tag: at for event, tag, at, _ in recorded if event == "end"}
    running = [
        t for t, at in starts.items() if at <= called and ends.get(t, 1e18) > called
    ]
    late = [t for t, at in starts.items() if at > returned and t not in admitted]
    late_attempts = sum(
        1
        for node in workflow.nodes()
        for attempt in node.attempts
        if attempt.started_at is not None and attempt.started_at.timestamp() > returned
    )
    last_end = max(ends[tag] for tag in starts if tag in ends)
    with engine._db.connect() as conn:
        event_at = conn.execute(
            sa.select(sa.func.max(events.c.at)).where(
                events.c.workflow_id == workflow.id,
                events.c.node_id.is_(None),
                events.c.to_state == "PAUSED",
            )
        ).scalar_one()
    workflow.cancel()
    _poll(
        lambda: workflow.progress().running == 0, timeout=30, what="idle", interval=0.05
    )
    return {
        "latency": paused - last_end,
        "event_latency": event_at.timestamp() - last_end,
        "pause_call": returned - called,
        "running_at_pause": len(running),
        "started_after_pause": len(late) + late_attempts,
        "ran": len(starts),
    }


def pause_latency(
    harness: Harness, system: System, n: int, repeat: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """``pause_once`` ``repeat`` times on two workers (four pool processes).

    After one pause not measured, as the other workloads warm up: each pool
    process compiles the statements of the pause's path on its first pause.
    """
    pause_once(harness, system, n)
    runs = []
    for _ in range(repeat):
        figures = pause_once(harness, system, n)
        runs.append(figures)
        log(
            f"  PAUSED {1000 * figures['latency']:6.1f} ms after the last task "
            f"({figures['running_at_pause']} running at pause(), "
            f"{figures['started_after_pause']} started after)"
        )
    return {
        "n": n,
        "runs": runs,
        "medians": {"latency": statistics.median(r["latency"] for r in runs)},
        "max_latency": max(r["latency"] for r in runs),
        "started_after_pause": sum(r["started_after_pause"] for r in runs),
    }


# -- recovery -------------------------------------------------------------------------


def ready_at(client: redis.Redis, name: str) -> float:
    """When worker ``name`` sent ``worker_ready`` (benchmarks/worker.py)."""
    raw = _poll(
        lambda: client.get(READY.format(name=name)), timeout=10, what=f"{name} ready"
    )
    return float(raw)


def recovery_once(harness: Harness, system: System, steps: int) -> dict[str, Any]:
    """SIGKILL the worker while a chain's third task runs; time the way back."""
    bench, engine = system.bench, system.bench.engine
    assert engine is not None
    client = harness.redis_client()
    clear_stamps(bench, harness.broker_url)
    tags = [f"r{i}" for i in range(steps)]
    victim = tags[2]
    workflow = engine.submit(chain(*[bench.stamp.si(tag, 0.5) for tag in tags]))

    def victim_starts() -> list[float]:
        recorded = stamps(bench, harness.broker_url)
        return [
            at for event, tag, at, _ in recorded if event == "start" and tag == victim
        ]

    _poll(victim_starts, timeout=30, what="the victim task to start", interval=0.01)
    killed = time.time()
    system.kill(system.names[-1])
    (name,) = system.start(1)
    back = ready_at(client, name)
    second = _poll(
        lambda: victim_starts()[1:],
        timeout=60,
        what="the victim to run again",
        interval=0.01,
    )[0]
    value = workflow.get(timeout=60)
    if value != tags[-1]:
        raise WrongResult(f"recovery: expected {tags[-1]!r}, got {value!r}")
    attempts = [len(node.attempts) for node in workflow.nodes()]
    return {
        "delay": second - back,
        "outage": second - killed,
        "restart": back - killed,
        "victim_attempts": attempts[2],
    }


def recovery(
    harness: Harness,
    system: System,
    steps: int,
    repeat: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """``recovery_once`` ``repeat`` times on one worker, killed and replaced."""
    system.start(1)
    runs = []
    for _ in range(repeat):
        figures = recovery_once(harness, system, steps)
        runs.append(figures)
        log(
            f"  continued {figures['delay']:6.2f} s after the new worker was ready "
            f"({figures['outage']:.2f} s after the kill)"
        )
    options = FAST_RECOVERY
    return {
        "runs": runs,
        "options": options,
        "medians": {
            "delay": statistics.median(r["delay"] for r in runs),
            "outage": statistics.median(r["outage"] for r in runs),
        },
        "max_delay": max(r["delay"] for r in runs),
    }


def as_dict(sizes: Sizes) -> dict[str, int]:
    """The sizes, for the JSON."""
    return asdict(sizes)
