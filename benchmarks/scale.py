"""The scale rows: no operation slows down as workflows and tables grow.

- ``million``: submit, then cancel, a workflow of a million nodes, each in a
  fresh process (time and peak memory), with no worker listening;
- ``poll``: one ``Workflow.get()`` poll (a read of the workflow while it
  runs) on a 100,000-node workflow against a 10-node one;
- ``history``: a chain of ``chain_short`` tasks on tables that hold ten
  million finished nodes (inserted in SQL) against the same chain on empty
  tables, alternating, each on a worker of its own;
- ``purge``: then a million of those finished nodes purged: nodes per second;
- ``flat``: nodes per second of a 100,000-node group of chains of 5 against
  a 5,000-node one, run end to end on the same worker.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from celery import chain, group

from benchmarks.harness import Harness
from benchmarks.rows import Row, error_row, seconds, verdict
from benchmarks.submit import chains_of
from benchmarks.workloads import (
    TIMEOUT,
    Sizes,
    chain_of,
    child_json,
    compare,
    run_once,
)
from celeriac.storage import Store, connect
from celeriac.storage.retention_policy import Retention
from celeriac.storage.rows import now
from tests.history import analyze, insert_history

#: Polls timed on each workflow, alternating between the two.
POLLS = 200
#: Finished nodes per workflow of the inserted history.
HISTORY_WORKFLOW = 1_000
SUBMIT_SECONDS = 100.0
SUBMIT_MB = 1536.0
CANCEL_SECONDS = 60.0
POLL_RATIO = 2.0
HISTORY_RATIO = 1.2
#: The large canvas's nodes per second against the small one's, at least.
FLAT_RATIO = 0.9
#: Tasks in each chain of the ``flat`` canvases.
FLAT_CHAIN = 5
#: nodes per second below which a flat run is given up
SLOWEST_NODES_PER_SECOND = 20

Log = Callable[[str], None]


def million(harness: Harness, n: int, log: Log) -> dict[str, Any]:
    """Submit an ``n``-node group of chains in one process, cancel it in another."""
    url = harness.database("million")
    queue = f"bench-million-{harness.run_id}"
    try:
        submitted = child_json(
            harness, "benchmarks.submit", url, queue, ["--nodes", str(n)]
        )
        log(
            f"  submitted {submitted['nodes']} nodes in {submitted['seconds']:.1f} s, "
            f"+{submitted['peak_delta_mb']:.0f} MB"
        )
        cancelled = child_json(
            harness,
            "benchmarks.cancel",
            url,
            queue,
            ["--workflow", submitted["workflow"]],
        )
        log(
            f"  cancelled in {cancelled['seconds']:.1f} s, "
            f"+{cancelled['peak_delta_mb']:.0f} MB: {cancelled['state']}"
        )
    finally:
        harness.redis_client().delete(queue)
        harness.drop(url)
    return {
        "n": submitted["nodes"],
        "runs": {
            "submit": [submitted],
            "cancel": [cancelled],
        },
        "medians": {
            "submit_seconds": submitted["seconds"],
            "cancel_seconds": cancelled["seconds"],
        },
        "peak_mb": {
            "submit": submitted["peak_delta_mb"],
            "cancel": cancelled["peak_delta_mb"],
        },
        "cancelled_state": cancelled["state"],
    }


def poll(harness: Harness, n: int, log: Log) -> dict[str, Any]:
    """Median time of one ``get()`` poll on an ``n``-node and a 10-node workflow."""
    url = harness.database("poll")
    system = harness.system("celeriac-poll", "celeriac", database_url=url)
    engine = system.bench.engine
    assert engine is not None
    try:
        large = engine.submit(chains_of(system.bench, n)[0])
        small = engine.submit(chains_of(system.bench, 10)[0])
        times: dict[str, list[float]] = {"large": [], "small": []}
        for _ in range(POLLS):
            for key, workflow in (("large", large), ("small", small)):
                start = time.perf_counter()
                # it runs: the poll reads it, as get() does, and times out
                with contextlib.suppress(TimeoutError):
                    workflow.get(timeout=0)
                times[key].append(time.perf_counter() - start)
    finally:
        harness.redis_client().delete(system.env["BENCH_QUEUE"])
        harness.drop(url)
    medians = {key: statistics.median(values) for key, values in times.items()}
    log(
        f"  poll: {medians['large'] * 1000:.2f} ms on {n} nodes, "
        f"{medians['small'] * 1000:.2f} ms on 10"
    )
    return {
        "n": n,
        "runs": {key: [{"seconds": value} for value in times[key]] for key in times},
        "medians": medians,
    }


def history_and_purge(
    harness: Harness, sizes: Sizes, repeat: int, log: Log
) -> dict[str, Any]:
    """The ``history`` and ``purge`` rows, on one database full of history."""
    empty_url = harness.database("history_empty")
    full_url = harness.database("history_full")
    db = connect(full_url)
    try:
        started = time.perf_counter()
        with db.begin() as conn:
            insert_history(conn, sizes.history - sizes.purge, HISTORY_WORKFLOW)
            insert_history(conn, sizes.purge, HISTORY_WORKFLOW, prefix="purge")
        with db.begin() as conn:
            analyze(conn)
        log(
            f"  {sizes.history} finished nodes inserted in "
            f"{time.perf_counter() - started:.0f} s"
        )
        systems = [
            harness.system("celeriac-empty", "celeriac", database_url=empty_url),
            harness.system("celeriac-history", "celeriac", database_url=full_url),
        ]
        for system in systems:
            system.start()
        try:
            chains = compare(
                harness,
                systems,
                chain_of,
                sizes.chain_short,
                sizes.chain_short,
                repeat,
                sizes.warmup,
                log,
            )
        finally:
            for system in systems:
                system.stop()
        purge = _purge(db, sizes.purge, log)
    finally:
        db.dispose()
    return {"history": chains, "purge": purge}


def _purge(db: Any, n: int, log: Log) -> dict[str, Any]:
    """Purge the ``n`` history nodes named "purge"; nodes per second."""
    # the rest of the history keeps its events: only the workflows' rows count
    keep_events = timedelta(days=36_500)
    retention = Retention.of(
        now(), timedelta(days=1), name="purge", events_older_than=keep_events
    )
    start = time.perf_counter()
    purged = Store(db).purge(retention)
    took = time.perf_counter() - start
    log(f"  purged {purged.nodes} nodes in {took:.1f} s")
    if purged.nodes != n:
        raise RuntimeError(f"purge deleted {purged.nodes} nodes, not {n}")
    return {
        "n": purged.nodes,
        "runs": {"celeriac": [{"seconds": took}]},
        "medians": {"seconds": took, "nodes_per_second": purged.nodes / took},
    }


def chains_of_five(bench: Any, nodes: int) -> tuple[Any, Any]:
    """A group of chains of 5 no-op tasks, ``nodes`` tasks in all; its result."""
    chains = max(1, nodes // FLAT_CHAIN)
    canvas = group(
        [chain(*[bench.noop.s() for _ in range(FLAT_CHAIN)]) for _ in range(chains)]
    )
    return canvas, [None] * chains


def flat(harness: Harness, sizes: Sizes, log: Log) -> dict[str, Any]:
    """Nodes per second of a large and a small group of chains, one worker."""
    url = harness.database("flat")
    system = harness.system("celeriac-flat", "celeriac", database_url=url)
    system.start()
    try:
        run_once(system, *chains_of_five(system.bench, sizes.warmup * FLAT_CHAIN))
        runs: dict[str, list[dict[str, float]]] = {}
        for key, n in (("small", sizes.flat_small), ("large", sizes.flat)):
            # a million nodes take longer than any one fixed timeout
            timeout = max(TIMEOUT, n / SLOWEST_NODES_PER_SECOND)
            times = run_once(system, *chains_of_five(system.bench, n), timeout)
            times["nodes_per_second"] = n / times["seconds"]
            runs[key] = [times]
            log(
                f"  {n} nodes in {times['seconds']:.1f} s: "
                f"{times['nodes_per_second']:.0f} nodes per second"
            )
    finally:
        system.stop()
        harness.drop(url)
    return {
        "n": sizes.flat,
        "small": sizes.flat_small,
        "runs": runs,
        "medians": {key: value[0]["nodes_per_second"] for key, value in runs.items()},
    }


# -- rows of the results table ----------------------------------------------------


def titles(sizes: dict[str, int]) -> dict[str, str]:
    """The table's name of each scale workload, with its size."""
    return {
        "million": f"a {sizes['million']:,}-node workflow (group of chains)",
        "poll": f"a get() poll on a {sizes['poll']:,}-node workflow",
        "history": f"chain of {sizes['chain_short']:,} on tables holding "
        f"{sizes['history']:,} finished nodes",
        "purge": f"purge {sizes['purge']:,} finished nodes",
        "flat": f"nodes per second, a {sizes['flat']:,}-node group of chains of "
        f"{FLAT_CHAIN}",
    }


def _failed(title: str, figures: dict[str, Any]) -> list[Row] | None:
    if "error" in figures:
        return [error_row(title, figures)]
    return None


def million_rows(title: str, figures: dict[str, Any]) -> list[Row]:
    """Submit and cancel, each against its targets."""
    failed = _failed(title, figures)
    if failed:
        return failed
    medians, peaks = figures["medians"], figures["peak_mb"]
    submit_ok = medians["submit_seconds"] < SUBMIT_SECONDS and (
        peaks["submit"] < SUBMIT_MB
    )
    cancel_ok = medians["cancel_seconds"] < CANCEL_SECONDS and (
        figures["cancelled_state"] == "CANCELLED"
    )
    figures["pass"] = submit_ok and cancel_ok
    return [
        Row(
            f"submit {title}",
            "—",
            f"{seconds(medians['submit_seconds'])}, peak +{peaks['submit']:.0f} MB",
            "—",
            f"< {SUBMIT_SECONDS:.0f} s, < {SUBMIT_MB / 1024:.1f} GB",
            verdict(submit_ok),
        ),
        Row(
            f"cancel {title}",
            "—",
            f"{seconds(medians['cancel_seconds'])}, peak +{peaks['cancel']:.0f} MB",
            "—",
            f"< {CANCEL_SECONDS:.0f} s",
            verdict(cancel_ok),
        ),
    ]


def poll_rows(title: str, figures: dict[str, Any]) -> list[Row]:
    """One poll of the large workflow against one of a 10-node workflow."""
    failed = _failed(title, figures)
    if failed:
        return failed
    large, small = figures["medians"]["large"], figures["medians"]["small"]
    ratio = large / small
    figures["pass"] = ratio <= POLL_RATIO
    return [
        Row(
            title,
            "—",
            f"{large * 1000:.2f} ms (10-node workflow: {small * 1000:.2f} ms)",
            f"{ratio:.2f}",
            f"ratio ≤ {POLL_RATIO} (against the 10-node one)",
            verdict(ratio <= POLL_RATIO),
        )
    ]


def history_rows(title: str, figures: dict[str, Any]) -> list[Row]:
    """The chain over the history against the same chain on empty tables."""
    failed = _failed(title, figures)
    if failed:
        return failed
    full = figures["medians"]["celeriac-history"]
    empty = figures["medians"]["celeriac-empty"]
    ratio = full / empty
    figures["pass"] = ratio <= HISTORY_RATIO
    return [
        Row(
            title,
            "—",
            f"{seconds(full)} (empty tables: {seconds(empty)})",
            f"{ratio:.2f}",
            f"ratio ≤ {HISTORY_RATIO} (against empty tables)",
            verdict(ratio <= HISTORY_RATIO),
        )
    ]


def purge_rows(title: str, figures: dict[str, Any]) -> list[Row]:
    """Purge throughput: measured, no target."""
    failed = _failed(title, figures)
    if failed:
        return failed
    medians = figures["medians"]
    return [
        Row(
            title,
            "—",
            f"{medians['nodes_per_second']:,.0f} nodes per second "
            f"({seconds(medians['seconds'])})",
            "—",
            "measured",
            "—",
        )
    ]


def flat_rows(title: str, figures: dict[str, Any]) -> list[Row]:
    """The large canvas's throughput against the small one's."""
    failed = _failed(title, figures)
    if failed:
        return failed
    large, small = figures["medians"]["large"], figures["medians"]["small"]
    ratio = large / small
    figures["pass"] = ratio >= FLAT_RATIO
    return [
        Row(
            title,
            "—",
            f"{large:.0f} nodes/s ({figures['small']:,} nodes: {small:.0f} nodes/s)",
            f"{ratio:.2f}",
            f"ratio ≥ {FLAT_RATIO} (against the {figures['small']:,}-node one)",
            verdict(ratio >= FLAT_RATIO),
        )
    ]


ROWS = {
    "flat": flat_rows,
    "million": million_rows,
    "poll": poll_rows,
    "history": history_rows,
    "purge": purge_rows,
}
