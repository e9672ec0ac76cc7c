"""Where PostgreSQL's time goes, statement by statement, on one workload.

    python benchmarks/statements.py [group|chord|chain|replace] [--n N] [--repeat R]
                                    [--analyze] [--durable] [--top K]

Starts a throwaway PostgreSQL with ``pg_stat_statements`` loaded, runs the
workload through celeriac on one real worker (as ``run.py`` does), and
prints, per node: the server's execution time, the WAL it wrote, and the
statements that cost most, with their calls, time, WAL and buffers per call.
``--analyze`` runs ``ANALYZE`` after the warm-up, as on a database that
autovacuum has already analyzed: without it the planner has no statistics
for the fresh tables, as in the first minute of a new database.
Figures are for reading, never asserted. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: import benchmarks, tests, celeriac
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from benchmarks.app import Bench  # noqa: E402
from benchmarks.harness import Harness  # noqa: E402
from benchmarks.workloads import (  # noqa: E402
    chain_of,
    chord_of,
    group_of,
    replace_of,
    run_once,
)

CANVASES: dict[str, Callable[[Bench, int], tuple[Any, Any]]] = {
    "group": group_of,
    "chord": chord_of,
    "chain": chain_of,
    "replace": replace_of,
}
#: Read after the runs: the WAL the whole server wrote.
WAL = sa.text("SELECT wal_bytes, wal_records FROM pg_stat_wal")
STATEMENTS = sa.text(
    "SELECT calls, total_exec_time, wal_bytes, wal_records,"
    " shared_blks_hit + shared_blks_read AS blocks,"
    " regexp_replace(query, '\\s+', ' ', 'g') AS query"
    " FROM pg_stat_statements WHERE dbid = ("
    "   SELECT oid FROM pg_database WHERE datname = current_database())"
    " ORDER BY total_exec_time DESC"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "workload", nargs="?", choices=sorted(CANVASES), default="group"
    )
    parser.add_argument("--n", type=int, default=1000, help="nodes (default 1000)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--top", type=int, default=8, help="statements shown")
    parser.add_argument("--analyze", action="store_true", help="ANALYZE after warm-up")
    parser.add_argument("--durable", action="store_true", help="fsync on")
    args = parser.parse_args(argv)
    make = CANVASES[args.workload]
    logs = ROOT / "benchmarks" / "results" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    harness = Harness(logs)
    try:
        harness.start_servers(
            args.durable,
            {
                "shared_preload_libraries": "pg_stat_statements",
                "pg_stat_statements.track": "all",
            },
        )
        url = harness.database("statements")
        system = harness.system("celeriac", "celeriac", database_url=url)
        system.start()
        run_once(system, *make(system.bench, 10))  # connections, imports, a lease
        db = sa.create_engine(url, poolclass=sa.pool.NullPool)
        with db.begin() as conn:
            loaded = conn.exec_driver_sql("SHOW shared_preload_libraries").scalar()
            if "pg_stat_statements" not in str(loaded):
                print(
                    "this PostgreSQL does not load pg_stat_statements", file=sys.stderr
                )
                return 2
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            if args.analyze:
                conn.exec_driver_sql("ANALYZE")
            conn.exec_driver_sql("SELECT pg_stat_statements_reset()")
            wal_before = conn.execute(WAL).one()
        for _ in range(args.repeat):
            seconds = run_once(system, *make(system.bench, args.n))["seconds"]
            print(f"{args.workload} of {args.n}: {seconds:.3f} s")
        with db.begin() as conn:
            wal_after = conn.execute(WAL).one()
            rows = conn.execute(STATEMENTS).all()
        system.stop()
        db.dispose()
        report(rows, wal_before, wal_after, args.n * args.repeat, args.top)
    finally:
        harness.close()
    return 0


def report(rows: list[Any], before: Any, after: Any, nodes: int, top: int) -> None:
    """Print the per-node totals and the ``top`` statements by execution time."""
    total = sum(row.total_exec_time for row in rows)
    print(
        f"per node: {total / nodes:.3f} ms of execution,"
        f" {(after.wal_bytes - before.wal_bytes) / nodes:,.0f} bytes of WAL"
        f" in {(after.wal_records - before.wal_records) / nodes:.1f} records"
    )
    print(line(("calls", "ms/node", "ms/call", "WAL/call", "blocks/call"), ""))
    for row in rows[:top]:
        calls = max(row.calls, 1)
        figures = (
            f"{row.calls}",
            f"{row.total_exec_time / nodes:.3f}",
            f"{row.total_exec_time / calls:.3f}",
            f"{int(row.wal_bytes) / calls:.0f}",
            f"{row.blocks / calls:.1f}",
        )
        print(line(figures, row.query[:90]))


def line(cells: tuple[str, ...], query: str) -> str:
    """One row of the statements' table: five right-aligned cells, the query."""
    widths = (8, 8, 8, 9, 11)
    aligned = " ".join(
        cell.rjust(width) for cell, width in zip(cells, widths, strict=True)
    )
    return f"{aligned}  {query}"


if __name__ == "__main__":
    sys.exit(main())
