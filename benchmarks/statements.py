"""``run.py --statements WORKLOAD``: where PostgreSQL's time goes, by statement.

Runs one workload through celeriac on one real worker, against the run's
PostgreSQL started with ``pg_stat_statements`` loaded (``SETTINGS``), and
returns, per node: the server's execution time and the WAL it wrote, then
the statements that cost most, with their calls, time, WAL and pages (8 kB
buffers) per call. With ``analyze``, ``ANALYZE`` runs after the warm-up, as
autovacuum would have on an older database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from benchmarks.app import Bench
from benchmarks.harness import Harness
from benchmarks.workloads import (
    Sizes,
    chain_of,
    chord_of,
    group_of,
    replace_of,
    run_once,
)

#: The server settings that make PostgreSQL count each statement's work.
SETTINGS = {
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track": "all",
}
#: The workloads' canvases, by the name of their size in ``Sizes``.
WORKLOADS: dict[str, Callable[[Bench, int], tuple[Any, Any]]] = {
    "chain_short": chain_of,
    "group": group_of,
    "chord": chord_of,
    "replace": replace_of,
}
#: Statements shown.
TOP = 8
#: The WAL the whole server wrote so far.
WAL = sa.text("SELECT wal_bytes, wal_records FROM pg_stat_wal")
STATEMENTS = sa.text(
    "SELECT calls, total_exec_time, wal_bytes, wal_records,"
    " shared_blks_hit + shared_blks_read AS blocks,"
    " regexp_replace(query, '\\s+', ' ', 'g') AS query"
    " FROM pg_stat_statements WHERE dbid = ("
    "   SELECT oid FROM pg_database WHERE datname = current_database())"
    " ORDER BY total_exec_time DESC"
)


def statements(
    harness: Harness,
    key: str,
    sizes: Sizes,
    repeat: int,
    analyze: bool,
    log: Callable[[str], None],
) -> str:
    """Run workload ``key`` ``repeat`` times at its size; the statements' table."""
    make, n = WORKLOADS[key], getattr(sizes, key)
    url = harness.database("statements")
    system = harness.system("celeriac", "celeriac", database_url=url)
    system.start()
    db = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        run_once(system, *make(system.bench, sizes.warmup))
        with db.begin() as conn:
            loaded = conn.exec_driver_sql("SHOW shared_preload_libraries").scalar()
            if "pg_stat_statements" not in str(loaded):
                return "this PostgreSQL does not load pg_stat_statements"
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            if analyze:
                conn.exec_driver_sql("ANALYZE")
            conn.exec_driver_sql("SELECT pg_stat_statements_reset()")
            before = conn.execute(WAL).one()
        for _ in range(repeat):
            seconds = run_once(system, *make(system.bench, n))["seconds"]
            log(f"  {key} of {n}: {seconds:.3f} s")
        with db.begin() as conn:
            after = conn.execute(WAL).one()
            rows = conn.execute(STATEMENTS).all()
    finally:
        system.stop()
        db.dispose()
    return table(rows, before, after, n * repeat)


def table(rows: Sequence[Any], before: Any, after: Any, nodes: int) -> str:
    """The per-node totals and the ``TOP`` statements by execution time."""
    total = sum(row.total_exec_time for row in rows)
    lines = [
        f"per node: {total / nodes:.3f} ms of execution,"
        f" {(after.wal_bytes - before.wal_bytes) / nodes:,.0f} bytes of WAL"
        f" in {(after.wal_records - before.wal_records) / nodes:.1f} records",
        line(("calls", "ms/node", "ms/call", "WAL/call", "blocks/call"), ""),
    ]
    for row in rows[:TOP]:
        calls = max(row.calls, 1)
        figures = (
            f"{row.calls}",
            f"{row.total_exec_time / nodes:.3f}",
            f"{row.total_exec_time / calls:.3f}",
            f"{int(row.wal_bytes) / calls:.0f}",
            f"{row.blocks / calls:.1f}",
        )
        lines.append(line(figures, row.query[:90]))
    return "\n".join(lines)


def line(cells: tuple[str, ...], query: str) -> str:
    """One row of the statements' table: five right-aligned cells, the query."""
    widths = (8, 8, 8, 9, 11)
    aligned = " ".join(
        cell.rjust(width) for cell, width in zip(cells, widths, strict=True)
    )
    return f"{aligned}  {query}"
