"""The throughput workload: many workflows at once, and what a node costs.

``chains`` chains of 10 no-op tasks and ``chords`` chords of 100 no-op tasks
plus a body, all handed over at once, run on two worker processes of
concurrency 2, natively and through celeriac, alternating. Per run:

- nodes per second, from the first hand-over to the last result in hand;
- worker CPU per node: the user and system time of the worker processes
  (each worker's process group, pool processes and reaped children too);
- celeriac only: PostgreSQL's CPU time (the postmaster's process tree, read
  from ``/proc``) per node, and nodes per database CPU-second;
- celeriac only: dispatch latency, from a node's last parent finishing (its
  recorded ``finished_at``) to the node's message being published (the
  workers' ``after_task_publish`` times, ``benchmarks/worker.py``), p50 and
  p95 over every node that has a parent.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from celery import chain, chord

from benchmarks.app import PUBLISHED, Bench, client
from benchmarks.harness import Harness, System
from benchmarks.instrument import as_text
from benchmarks.rows import Row, error_row, verdict
from benchmarks.workloads import TIMEOUT, WrongResult, compare_order
from celeriac.storage.schema import edges, nodes

#: steps of each chain; members of each chord's header
CHAIN = 10
CHORD = 100
#: targets (issue 17): celeriac's nodes per second against native's, at least;
#: its worker CPU per node against native's, at most; nodes per database
#: CPU-second, at least; dispatch latency p50 and p95 (seconds), at most
RATE_RATIO = 0.8
CPU_RATIO = 1.3
NODES_PER_DB_SECOND = 1000.0
LATENCY_P50 = 0.003
LATENCY_P95 = 0.015
TICKS = os.sysconf("SC_CLK_TCK")

Log = Callable[[str], None]


def canvases(bench: Bench, chains: int, chords: int) -> list[tuple[Any, Any]]:
    """The workflows of one run, each with the result it must give."""
    made: list[tuple[Any, Any]] = [
        (chain(*[bench.noop.s() for _ in range(CHAIN)]), None) for _ in range(chains)
    ]
    made += [
        (chord([bench.noop.s() for _ in range(CHORD)], bench.count.s()), CHORD)
        for _ in range(chords)
    ]
    return made


def node_count(chains: int, chords: int) -> int:
    """How many task nodes one run runs."""
    return chains * CHAIN + chords * (CHORD + 1)


# -- CPU time from /proc ------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command, or None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _processes() -> Iterator[tuple[int, list[str]]]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None:
                yield int(entry), fields


def _seconds(fields: list[str], reaped: bool) -> float:
    """utime + stime (+ the reaped children's, with ``reaped``), in seconds."""
    # fields[0] is the state (field 3 of stat): utime is field 14
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICKS


def group_cpu(leaders: list[int]) -> float:
    """CPU seconds of the process groups led by ``leaders`` (their reaped too)."""
    wanted = set(leaders)
    return sum(
        _seconds(fields, reaped=True)
        for _, fields in _processes()
        if int(fields[2]) in wanted  # the process group id
    )


def tree_cpu(root: int) -> float:
    """CPU seconds of ``root`` (with its reaped children) and its live children."""
    total = 0.0
    for pid, fields in _processes():
        if pid == root:
            total += _seconds(fields, reaped=True)
        elif int(fields[1]) == root:  # the parent pid
            total += _seconds(fields, reaped=False)
    return total


def postmaster_pid(harness: Harness) -> int | None:
    """The PostgreSQL server's pid, when it runs on this machine."""
    db = sa.create_engine(harness.postgres.url, poolclass=sa.pool.NullPool)
    try:
        with db.connect() as conn:
            directory = conn.exec_driver_sql("SHOW data_directory").scalar()
    finally:
        db.dispose()
    try:
        first = (Path(str(directory)) / "postmaster.pid").read_text().split()[0]
    except (OSError, IndexError):
        return None
    return int(first)


# -- one run ------------------------------------------------------------------------


def run_once(
    harness: Harness, system: System, chains: int, chords: int, postmaster: int | None
) -> dict[str, Any]:
    """Hand over every workflow at once, wait for all; the run's figures."""
    bench = system.bench
    published = client(harness.broker_url)
    published.delete(PUBLISHED.format(queue=bench.queue))
    made = canvases(bench, chains, chords)
    leaders = [process.pid for process in system.workers.processes.values()]
    workers_before = group_cpu(leaders)
    db_before = tree_cpu(postmaster) if postmaster else 0.0
    wall = time.time()
    start = time.perf_counter()
    if bench.engine is None:
        handles = [canvas.apply_async() for canvas, _ in made]
        values = [handle.get(timeout=TIMEOUT) for handle in handles]
    else:
        workflows = [bench.engine.submit(canvas) for canvas, _ in made]
        values = [workflow.get(timeout=TIMEOUT) for workflow in workflows]
    seconds = time.perf_counter() - start
    worker_cpu = group_cpu(leaders) - workers_before
    expected = [value for _, value in made]
    if values != expected:
        raise WrongResult(f"{system.name}: a workflow returned something else")
    nodes_run = node_count(chains, chords)
    figures: dict[str, Any] = {
        "seconds": seconds,
        "nodes_per_second": nodes_run / seconds,
        "worker_cpu_per_node": worker_cpu / nodes_run,
    }
    if bench.engine is not None:
        if postmaster:
            db_cpu = tree_cpu(postmaster) - db_before
            figures["db_cpu_per_node"] = db_cpu / nodes_run
            figures["nodes_per_db_second"] = nodes_run / db_cpu
        figures.update(dispatch_latency(harness, system, [w.id for w in workflows]))
    figures["started_at"] = wall
    return figures


def dispatch_latency(
    harness: Harness, system: System, workflow_ids: list[str]
) -> dict[str, float]:
    """p50 and p95 of (message published - last parent finished), in seconds."""
    assert system.bench.engine is not None
    raw = client(harness.broker_url).hgetall(PUBLISHED.format(queue=system.bench.queue))
    sent = {as_text(key): float(value) for key, value in raw.items()}
    parent = nodes.alias("parent")
    query = (
        sa.select(edges.c.child_id, sa.func.max(parent.c.finished_at))
        .join(
            parent,
            sa.and_(
                parent.c.workflow_id == edges.c.workflow_id,
                parent.c.id == edges.c.parent_id,
            ),
        )
        .where(edges.c.workflow_id.in_(workflow_ids), edges.c.on_error.is_(False))
        .group_by(edges.c.child_id)
    )
    with system.bench.engine._db.connect() as conn:
        ready = conn.execute(query).all()
    waits = sorted(
        sent[child] - finished.timestamp()
        for child, finished in ready
        if child in sent and finished is not None
    )
    if len(waits) < 2:
        return {}
    cuts = statistics.quantiles(waits, n=20)
    return {"latency_p50": statistics.median(waits), "latency_p95": cuts[18]}


def throughput(
    harness: Harness,
    systems: list[System],
    chains: int,
    chords: int,
    repeat: int,
    log: Log,
) -> dict[str, Any]:
    """``run_once`` on each system, alternating, ``repeat`` times; medians."""
    postmaster = postmaster_pid(harness)
    for system in systems:  # connections, imports, the first lease
        run_once(harness, system, 2, 1, postmaster)
    runs: dict[str, list[dict[str, Any]]] = {s.name: [] for s in systems}
    for order in compare_order(systems, repeat):
        for system in order:
            figures = run_once(harness, system, chains, chords, postmaster)
            runs[system.name].append(figures)
            log(
                f"  {system.name:<14} {figures['nodes_per_second']:8.0f} nodes/s, "
                f"worker CPU {1000 * figures['worker_cpu_per_node']:.2f} ms/node"
            )
    medians = {
        name: {
            key: statistics.median(run[key] for run in found)
            for key in found[0]
            if key != "started_at" and all(key in run for run in found)
        }
        for name, found in runs.items()
    }
    return {
        "chains": chains,
        "chords": chords,
        "nodes": node_count(chains, chords),
        "runs": runs,
        "medians": medians,
        "db_measured": postmaster is not None,
    }


# -- rows ---------------------------------------------------------------------------


def title(chains: int, chords: int) -> str:
    """The table's name of the workload."""
    return (
        f"throughput: {chains} chains of {CHAIN} and {chords} chords of {CHORD} "
        "at once, 2 workers of concurrency 2"
    )


def rows(title_: str, figures: dict[str, Any]) -> list[Row]:
    """Nodes per second, worker and database CPU, dispatch latency: each a row."""
    if "error" in figures:
        return [error_row(title_, figures)]
    native, ours = figures["medians"]["celery-redis"], figures["medians"]["celeriac"]
    rate = ours["nodes_per_second"] / native["nodes_per_second"]
    cpu = ours["worker_cpu_per_node"] / native["worker_cpu_per_node"]
    checks = {"rate": rate >= RATE_RATIO, "cpu": cpu <= CPU_RATIO}
    found = [
        Row(
            f"{title_}: nodes per second",
            f"{native['nodes_per_second']:,.0f} (Redis result backend)",
            f"{ours['nodes_per_second']:,.0f}",
            f"{rate:.2f}",
            f"ratio ≥ {RATE_RATIO}",
            verdict(checks["rate"]),
        ),
        Row(
            "worker CPU per node (same runs)",
            f"{1000 * native['worker_cpu_per_node']:.2f} ms",
            f"{1000 * ours['worker_cpu_per_node']:.2f} ms",
            f"{cpu:.2f}",
            f"ratio ≤ {CPU_RATIO}",
            verdict(checks["cpu"]),
        ),
    ]
    if "nodes_per_db_second" in ours:
        per_second = ours["nodes_per_db_second"]
        checks["db"] = per_second >= NODES_PER_DB_SECOND
        found.append(
            Row(
                "nodes per PostgreSQL CPU-second (same runs)",
                "—",
                f"{per_second:,.0f} ({1000 * ours['db_cpu_per_node']:.2f} ms "
                "of database CPU per node)",
                "—",
                f"≥ {NODES_PER_DB_SECOND:,.0f}",
                verdict(checks["db"]),
            )
        )
    if "latency_p50" in ours:
        p50, p95 = ours["latency_p50"], ours["latency_p95"]
        checks["latency"] = p50 <= LATENCY_P50 and p95 <= LATENCY_P95
        found.append(
            Row(
                "dispatch latency, a node's last parent finished to its message "
                "published (same runs)",
                "—",
                f"p50 {1000 * p50:.1f} ms, p95 {1000 * p95:.1f} ms",
                "—",
                f"p50 ≤ {1000 * LATENCY_P50:.0f} ms, p95 ≤ {1000 * LATENCY_P95:.0f} ms",
                verdict(checks["latency"]),
            )
        )
    figures["pass"] = all(checks.values())
    return found
