"""celeriac side by side with native Celery: one command, every workload.

    python benchmarks/run.py [--repeat N] [--quick] [--no-docs] [--only KEYS]
    python benchmarks/run.py --profile chain_short|group [--repeat N]
    python benchmarks/run.py --statements group [--analyze] [--durable]
    python benchmarks/run.py --render     # the docs again, from latest.json

Starts its own PostgreSQL and Redis (as the tests do), real ``celery worker``
processes, runs each workload on native Celery and on celeriac, alternating,
prints medians, ratios, targets and PASS/MISS, writes the figures to
``benchmarks/results/latest.json`` and rewrites ``docs/benchmarks.md``.
Targets are reported, never asserted: the exit code is 0 unless a workload
could not run. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: import benchmarks, tests, celeriac
    sys.path.insert(0, str(ROOT))

from benchmarks import report, scale, throughput  # noqa: E402
from benchmarks.harness import Harness, System, Unavailable  # noqa: E402
from benchmarks.statements import SETTINGS as STATEMENT_SETTINGS  # noqa: E402
from benchmarks.statements import WORKLOADS as STATEMENT_WORKLOADS  # noqa: E402
from benchmarks.statements import statements  # noqa: E402
from benchmarks.workloads import (  # noqa: E402
    FAST_RECOVERY,
    Sizes,
    as_dict,
    chain_of,
    chord_of,
    compare,
    group_of,
    pause_latency,
    recovery,
    replace_of,
    submit_big,
)

RESULTS = ROOT / "benchmarks" / "results"
WORKLOADS = (
    "chain_short",
    "chain_long",
    "group",
    "chord",
    "replace",
    "submit",
    "pause",
    "recovery",
    "million",
    "poll",
    "history",
    "purge",
    "flat",
    "throughput",
)
COMPARED = ("chain_short", "chain_long", "group", "chord", "replace")


def log(message: str) -> None:
    """Progress, on stderr."""
    print(message, file=sys.stderr, flush=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="celeriac side by side with native Celery."
    )
    parser.add_argument(
        "--repeat", type=int, default=None, help="repetitions of each (default 3)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke test: N = 20 for every size, 1 repetition",
    )
    parser.add_argument(
        "--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md"
    )
    parser.add_argument(
        "--only",
        default=",".join(WORKLOADS),
        help=f"comma-separated workloads to run, of {', '.join(WORKLOADS)}",
    )
    parser.add_argument(
        "--durable",
        action="store_true",
        help="run the throwaway PostgreSQL with fsync on (default: off, as the tests)",
    )
    parser.add_argument(
        "--json", type=Path, default=RESULTS / "latest.json", help="where to write"
    )
    parser.add_argument(
        "--render",
        action="store_true",
        help="measure nothing: print and write the docs from the --json figures",
    )
    parser.add_argument(
        "--profile",
        choices=("chain_short", "group"),
        help="profile the workers (cProfile) on one workload instead",
    )
    parser.add_argument(
        "--statements",
        choices=sorted(STATEMENT_WORKLOADS),
        help="PostgreSQL's time, WAL and pages by statement on one workload instead",
    )
    parser.add_argument(
        "--analyze",
        action="store_true",
        help="with --statements: ANALYZE after the warm-up, as on an older database",
    )
    args = parser.parse_args(argv)
    args.only = [key.strip() for key in args.only.split(",") if key.strip()]
    unknown = set(args.only) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def comparisons(
    harness: Harness, sizes: Sizes, keys: list[str], repeat: int
) -> dict[str, Any]:
    """The workloads run on native Celery and on celeriac."""
    found: dict[str, Any] = {}
    if not keys:
        return found
    native = harness.system(
        "celery-redis", "native", result_backend=harness.results_url
    )
    celeriac = harness.system(
        "celeriac", "celeriac", database_url=harness.database("celeriac")
    )
    # the SQL is counted in workers of their own, on an untimed run
    counted = harness.system(
        "celeriac-counted",
        "celeriac",
        database_url=harness.database("celeriac_counted"),
        count_sql=True,
    )
    for system in (native, celeriac, counted):
        system.start()
    plans: dict[str, tuple[Callable[..., Any], int, int]] = {
        "chain_short": (chain_of, sizes.chain_short, sizes.chain_short),
        "chain_long": (chain_of, sizes.chain_long, sizes.chain_long),
        "group": (group_of, sizes.group, sizes.group),
        "chord": (chord_of, sizes.chord, sizes.chord + 1),
        "replace": (replace_of, sizes.replace, sizes.replace + 2),
    }
    try:
        for key in keys:
            make, n, nodes = plans[key]
            systems = [native, celeriac]
            sql: System | None = None
            if key == "chord":
                sql = sql_backend_system(harness)
                systems.insert(1, sql)
            log(f"{key}: n = {n}, {repeat} repetitions")
            found[key] = attempt(
                compare,
                harness,
                systems,
                make,
                n,
                nodes,
                repeat,
                sizes.warmup,
                log,
                counted,
            )
            if sql is not None:
                sql.stop()
    finally:
        for system in (native, celeriac, counted):
            system.stop()
    return found


def sql_backend_system(harness: Harness) -> System:
    """Native Celery with its SQL result backend on the benchmark's PostgreSQL."""
    url = harness.database("celery_results", migrate=False)
    backend = "db+" + url  # postgresql+psycopg://…: SQLAlchemy with psycopg 3
    system = harness.system("celery-sql", "native", result_backend=backend)
    # create Celery's tables here, once, not in two pool processes at a time
    system.bench.app.backend.ResultSession().close()  # type: ignore[attr-defined]
    system.start()
    return system


def attempt(run: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run a workload; an error is recorded instead of ending the benchmark."""
    try:
        return run(*args)
    except Exception as exc:
        log(traceback.format_exc())
        return {"error": f"{type(exc).__name__}: {exc}"}


def run_pause(harness: Harness, sizes: Sizes, repeat: int) -> dict[str, Any]:
    system = harness.system(
        "celeriac-pause", "celeriac", database_url=harness.database("pause")
    )
    try:
        system.start(2)
        log(f"pause: {sizes.pause} tasks of 200 ms, 2 workers, {repeat} repetitions")
        return attempt(pause_latency, harness, system, sizes.pause, repeat, log)
    finally:
        system.stop()


def run_recovery(harness: Harness, sizes: Sizes, repeat: int) -> dict[str, Any]:
    system = harness.system(
        "celeriac-recovery",
        "celeriac",
        database_url=harness.database("recovery"),
        engine_options=FAST_RECOVERY,
    )
    try:
        log(f"recovery: a chain of {sizes.recovery} tasks, {repeat} repetitions")
        return attempt(recovery, harness, system, sizes.recovery, repeat, log)
    finally:
        system.stop()


def run_throughput(harness: Harness, sizes: Sizes, repeat: int) -> dict[str, Any]:
    """Many workflows at once, natively and through celeriac, 2 workers each."""
    native = harness.system(
        "celery-redis",
        "native",
        result_backend=harness.results_url,
        prefix="throughput-native_",
        publish_times=True,
    )
    celeriac = harness.system(
        "celeriac",
        "celeriac",
        database_url=harness.database("throughput"),
        prefix="throughput-celeriac_",
        publish_times=True,
    )
    chains, chords = sizes.throughput_chains, sizes.throughput_chords
    try:
        for system in (native, celeriac):
            system.start(2)
        log(f"throughput: {chains} chains and {chords} chords, {repeat} repetitions")
        return attempt(
            throughput.throughput,
            harness,
            [native, celeriac],
            chains,
            chords,
            repeat,
            log,
        )
    finally:
        native.stop()
        celeriac.stop()


def run_scale(
    harness: Harness, sizes: Sizes, args: argparse.Namespace
) -> dict[str, Any]:
    """The scale rows asked for (``benchmarks/scale.py``)."""
    found: dict[str, Any] = {}
    if "million" in args.only:
        log(f"million: submit and cancel {sizes.million} nodes")
        found["million"] = attempt(scale.million, harness, sizes.million, log)
    if "poll" in args.only:
        log(f"poll: get() on {sizes.poll} nodes and on 10")
        found["poll"] = attempt(scale.poll, harness, sizes.poll, log)
    if "flat" in args.only:
        log(f"flat: nodes per second, {sizes.flat} nodes and {sizes.flat_small}")
        found["flat"] = attempt(scale.flat, harness, sizes, log)
    wanted = [key for key in ("history", "purge") if key in args.only]
    if wanted:
        log(f"history: {sizes.history} finished nodes, then purge {sizes.purge}")
        both = attempt(scale.history_and_purge, harness, sizes, args.repeat, log)
        for key in wanted:  # an error is both rows' error
            found[key] = both.get(key, both)
    return found


def benchmark(args: argparse.Namespace, harness: Harness) -> dict[str, Any]:
    sizes = Sizes.quick() if args.quick else Sizes()
    results: dict[str, Any] = {
        "machine": report.machine(harness.postgres_version(), harness.redis_version()),
        "durable": args.durable,
        "repeat": args.repeat,
        "quick": args.quick,
        "sizes": as_dict(sizes),
        "results_db": int(harness.results_url.rsplit("/", 1)[1]),
        "workloads": {},
    }
    workloads = results["workloads"]
    started = time.monotonic()
    workloads.update(
        comparisons(
            harness, sizes, [k for k in COMPARED if k in args.only], args.repeat
        )
    )
    if "submit" in args.only:
        log(f"submit: {sizes.submit} nodes, {args.repeat} repetitions")
        workloads["submit"] = attempt(
            submit_big, harness, sizes.submit, args.repeat, log
        )
    if "pause" in args.only:
        workloads["pause"] = run_pause(harness, sizes, args.repeat)
    if "recovery" in args.only:
        workloads["recovery"] = run_recovery(harness, sizes, args.repeat)
    if "throughput" in args.only:
        workloads["throughput"] = run_throughput(harness, sizes, args.repeat)
    workloads.update(run_scale(harness, sizes, args))
    results["elapsed"] = time.monotonic() - started
    results["machine"]["load_after"] = round(os.getloadavg()[0], 2)
    return results


def render(args: argparse.Namespace) -> int:
    """Print the table and rewrite the docs from figures measured before."""
    results = json.loads(args.json.read_text())
    print(report.console(results))
    if not args.no_docs:
        log(f"table written to {report.write_docs(results)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.render:
        return render(args)
    logs = RESULTS / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    harness = Harness(logs)
    try:
        settings = STATEMENT_SETTINGS if args.statements else None
        harness.start_servers(durable=args.durable, settings=settings)
        if args.statements:
            sizes = Sizes.quick() if args.quick else Sizes()
            found = statements(
                harness, args.statements, sizes, args.repeat, args.analyze, log
            )
            print(found)
            return 0
        if args.profile:
            from benchmarks.profiling import profile

            print(profile(harness, args.profile, args.repeat, RESULTS / "profile", log))
            return 0
        results = benchmark(args, harness)
    except Unavailable as exc:
        log(f"cannot run the benchmark: {exc}")
        return 2
    finally:
        harness.close()

    print(report.console(results))  # also records each verdict in ``results``
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    log(f"figures written to {args.json} ({results['elapsed']:.0f} s)")
    if not args.no_docs:
        log(f"table written to {report.write_docs(results)}")
    failed = [
        key for key, figures in results["workloads"].items() if "error" in figures
    ]
    if failed:
        log(f"workloads that could not run: {', '.join(failed)} (logs in {logs})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
