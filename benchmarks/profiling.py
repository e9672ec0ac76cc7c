"""``run.py --profile WORKLOAD``: where the worker processes spend their time.

Runs one workload on native Celery and on celeriac with cProfile in every
pool process (``benchmarks/instrument.py``), stops the workers warmly so that
each process writes its stats, and prints for each system: the time per task
inside the pool process, the time of the functions that matter per task, the
time by package, and the top functions.
"""

from __future__ import annotations

import io
import pstats
import shutil
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.harness import Harness
from benchmarks.workloads import Sizes, chain_of, compare, group_of

#: Functions whose time per task is shown: (file ending, function name).
KEY_FUNCTIONS = [
    ("celery/app/trace.py", "trace_task"),
    ("celeriac/engine/hooks.py", "_admit"),
    ("celeriac/storage/claiming.py", "claim_node"),
    ("celeriac/engine/liveness.py", "lease"),
    ("celeriac/engine/hooks.py", "_on_success"),
    ("celeriac/storage/outcomes.py", "record_success"),
    ("celeriac/engine/publishing.py", "_publish"),
    ("celeriac/engine/control.py", "_transition"),
    ("celeriac/storage/control.py", "transition_workflow"),
    ("celery/backends/base.py", "mark_as_done"),
    ("celery/backends/base.py", "store_result"),
    ("celery/backends/redis.py", "on_chord_part_return"),
    ("celery/app/task.py", "apply_async"),
    ("celery/canvas.py", "apply_async"),
    ("kombu/messaging.py", "publish"),
    ("sqlalchemy/engine/base.py", "_execute_context"),
    ("sqlalchemy/engine/base.py", "commit"),
    ("sqlalchemy/sql/compiler.py", "__init__"),
    ("psycopg/cursor.py", "execute"),
    ("psycopg/connection.py", "commit"),
]


def package(filename: str, name: str) -> str:
    """Which package a profiled function belongs to."""
    if filename == "~":  # a builtin: name it by what it does
        for marker, label in (
            ("socket", "socket I/O (waiting for servers)"),
            ("select", "socket I/O (waiting for servers)"),
            ("poll", "socket I/O (waiting for servers)"),
            ("psycopg", "psycopg (C)"),
            ("json", "json"),
        ):
            if marker in name:
                return label
        return "builtins"
    parts = Path(filename).parts
    for anchor in ("site-packages", "celeriac", "benchmarks"):
        if anchor in parts:
            index = parts.index(anchor)
            if anchor != "site-packages":
                return anchor
            return parts[index + 1].split(".")[0] if index + 1 < len(parts) else "?"
    return "python stdlib"


def summary(stats: pstats.Stats) -> str:
    """The text report of one system's merged stats."""
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    tasks = 0
    for (filename, _, name), (_, calls, _, _, _) in table.items():
        if filename.endswith("celery/app/trace.py") and name == "trace_task":
            tasks = max(tasks, calls)
    out = io.StringIO()
    out.write(f"tasks traced: {tasks}\n\nper task (cumulative ms, calls per task):\n")
    for suffix, wanted in KEY_FUNCTIONS:
        for (filename, _, name), (_, calls, _, cumulative, _) in table.items():
            if name == wanted and filename.endswith(suffix) and tasks:
                out.write(
                    f"  {suffix}:{name:<24} {1000 * cumulative / tasks:8.3f} ms"
                    f"  {calls / tasks:6.2f} calls\n"
                )
    by_package: dict[str, float] = defaultdict(float)
    for (filename, _, name), (_, _, own, _, _) in table.items():
        by_package[package(filename, name)] += own
    total = sum(by_package.values()) or 1.0
    out.write("\nown time by package (builtins include the pool process's idle ")
    out.write("wait for its next task, posix.read):\n")
    for name, own in sorted(by_package.items(), key=lambda item: -item[1])[:16]:
        per_task = 1000 * own / tasks if tasks else 0.0
        out.write(f"  {name:<36} {own:8.3f} s  {100 * own / total:5.1f} %")
        out.write(f"  {per_task:7.3f} ms/task\n")
    for order in ("cumulative", "tottime"):
        out.write(f"\ntop functions by {order}:\n")
        stream = io.StringIO()
        stats.stream = stream  # type: ignore[attr-defined]
        stats.sort_stats(order).print_stats(30)
        text = stream.getvalue()
        out.write(text[text.find("   ncalls") :])
    return out.getvalue()


def profile(
    harness: Harness,
    key: str,
    repeat: int,
    directory: Path,
    log: Callable[[str], None],
) -> str:
    """Profile ``key`` (``chain_short`` or ``group``) on both systems."""
    sizes = Sizes()
    make, n = (
        (chain_of, sizes.chain_short)
        if key == "chain_short"
        else (
            group_of,
            sizes.group,
        )
    )
    shutil.rmtree(directory, ignore_errors=True)
    native = harness.system(
        "celery-redis",
        "native",
        result_backend=harness.results_url,
        profile=directory / "celery-redis",
    )
    celeriac = harness.system(
        "celeriac",
        "celeriac",
        database_url=harness.database("celeriac"),
        profile=directory / "celeriac",
    )
    for system in (native, celeriac):
        system.start()
    log(f"profiling {key}: n = {n}, {repeat} repetitions")
    figures = compare(
        harness, [native, celeriac], make, n, n, repeat, sizes.warmup, log
    )
    for system in (native, celeriac):
        system.stop()  # warm: each pool process writes its stats
    parts = [f"medians: {figures['medians']}"]
    for system in (native, celeriac):
        files = sorted(str(path) for path in (directory / system.name).glob("*.prof"))
        if not files:
            parts.append(f"{system.name}: no profile written")
            continue
        parts.append(f"===== {system.name} ({len(files)} pool processes) =====")
        parts.append(summary(pstats.Stats(*files)))
    return "\n".join(parts)
