"""What the benchmark prints and writes: the machine, the table, docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from benchmarks import scale, throughput
from benchmarks.rows import Row, error_row, seconds, verdict
from benchmarks.workloads import FAST_RECOVERY

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"

#: Target of each compared workload: celeriac's time / native Celery's, at most.
RATIO_TARGETS = {
    ("chain_short", "celery-redis"): 1.2,
    ("chain_long", "celery-redis"): 0.4,
    ("group", "celery-redis"): 1.2,
    ("chord", "celery-redis"): 1.0,
    ("chord", "celery-sql"): 0.7,
    ("replace", "celery-redis"): 1.6,
}
SUBMIT_SECONDS = 10.0
SUBMIT_MB = 500.0
PAUSE_SECONDS = 0.050
RECOVERY_SECONDS = FAST_RECOVERY["recovery_delay"] + 1.0
#: Commits per node, at most (a statement in autocommit is one).
COMMITS_PER_NODE = 1.2
BACKENDS = {"celery-redis": "Redis result backend", "celery-sql": "SQL result backend"}


# -- the machine ------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def _git_revision() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    revision = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--", "celeriac"):
        revision += " with uncommitted changes to celeriac/"
    return revision


def machine(postgres: str, redis: str) -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(_memory_gib(), 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "celery": version("celery"),
        "kombu": version("kombu"),
        "sqlalchemy": version("sqlalchemy"),
        "psycopg": version("psycopg"),
        "redis_py": version("redis"),
        "postgresql": postgres,
        "redis": redis,
        "celeriac": f"{version('celeriac')} (git {_git_revision()})",
        "load_before": round(os.getloadavg()[0], 2),
    }


# -- rows ---------------------------------------------------------------------------


def compared_rows(key: str, title: str, figures: dict[str, Any]) -> list[Row]:
    """Rows of a workload run on native Celery and on celeriac."""
    if "error" in figures:
        return [error_row(title, figures)]
    medians = figures["medians"]
    rows = []
    for (workload, native), target in RATIO_TARGETS.items():
        if workload != key or native not in medians:
            continue
        ratio = medians["celeriac"] / medians[native]
        figures.setdefault("ratios", {})[native] = {
            "ratio": ratio,
            "target": target,
            "pass": ratio <= target,
        }
        rows.append(
            Row(
                title,
                f"{seconds(medians[native])} ({BACKENDS[native]})",
                seconds(medians["celeriac"]),
                f"{ratio:.2f}",
                f"ratio ≤ {target}",
                verdict(ratio <= target),
            )
        )
    return rows


def submit_row(title: str, figures: dict[str, Any]) -> Row:
    """The row of the big submit."""
    if "error" in figures:
        return error_row(title, figures)
    time_, mb = figures["medians"]["seconds"], figures["medians"]["peak_delta_mb"]
    ok = time_ < SUBMIT_SECONDS and mb < SUBMIT_MB
    figures["pass"] = ok
    return Row(
        title,
        "—",
        f"{seconds(time_)}, peak +{mb:.0f} MB",
        "—",
        f"< {SUBMIT_SECONDS:.0f} s, < {SUBMIT_MB:.0f} MB",
        verdict(ok),
    )


def pause_row(title: str, figures: dict[str, Any]) -> Row:
    """The row of the pause latency."""
    if "error" in figures:
        return error_row(title, figures)
    median, worst = figures["medians"]["latency"], figures["max_latency"]
    late = figures["started_after_pause"]
    ok = worst <= PAUSE_SECONDS and late == 0
    figures["pass"] = ok
    return Row(
        title,
        "—",
        f"PAUSED {median * 1000:.0f} ms (worst {worst * 1000:.0f} ms) after the "
        f"last task ended; {late} started after pause()",
        "—",
        f"≤ {PAUSE_SECONDS * 1000:.0f} ms; 0 started",
        verdict(ok),
    )


def recovery_row(title: str, figures: dict[str, Any]) -> Row:
    """The row of the recovery after a SIGKILL."""
    if "error" in figures:
        return error_row(title, figures)
    median, worst = figures["medians"]["delay"], figures["max_delay"]
    ok = worst <= RECOVERY_SECONDS
    figures["pass"] = ok
    return Row(
        title,
        "—",
        f"continued {seconds(median)} (worst {seconds(worst)}) after a new "
        "worker was ready",
        "—",
        f"≤ {RECOVERY_SECONDS:.0f} s (recovery delay + 1 s)",
        verdict(ok),
    )


def titles(sizes: dict[str, int]) -> dict[str, str]:
    """The table's name of each workload, with its size."""
    found = {
        "chain_short": f"chain of {sizes['chain_short']:,} no-op tasks, end to end",
        "chain_long": f"chain of {sizes['chain_long']:,} no-op tasks",
        "group": f"group of {sizes['group']:,}, until all results are in",
        "chord": f"chord of {sizes['chord']:,} + body",
        "replace": f"a task replacing itself with a chord of {sizes['replace']:,}",
        "submit": f"submit a {sizes['submit']:,}-node canvas (group of chains)",
        "pause": "pause latency: pause() with 4 running 200 ms tasks",
        "recovery": "recovery: a worker SIGKILLed mid-workflow",
        **scale.titles(sizes),
    }
    if "throughput_chains" in sizes:  # not in the figures of earlier runs
        found["throughput"] = throughput.title(
            sizes["throughput_chains"], sizes["throughput_chords"]
        )
    return found


def rows(results: dict[str, Any]) -> list[Row]:
    """Every row of the results table, in workload order (and their verdicts)."""
    names = titles(results["sizes"])
    found: list[Row] = []
    for key, figures in results["workloads"].items():
        if key == "submit":
            found.append(submit_row(names[key], figures))
        elif key == "pause":
            found.append(pause_row(names[key], figures))
        elif key == "recovery":
            found.append(recovery_row(names[key], figures))
        elif key == "throughput":
            found.extend(throughput.rows(names[key], figures))
        elif key in scale.ROWS:
            found.extend(scale.ROWS[key](names[key], figures))
        else:
            found.extend(compared_rows(key, names[key], figures))
    return found


def sql_rows(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(title, per-node counts) of the workloads whose SQL was counted."""
    names = titles(results["sizes"])
    return [
        (names[key], figures["sql_per_node"]["celeriac"])
        for key, figures in results["workloads"].items()
        if "celeriac" in figures.get("sql_per_node", {})
    ]


# -- output -------------------------------------------------------------------------


def table(found: list[Row]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| workload | native Celery | celeriac | celeriac / native | target | |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r.workload} | {r.native} | {r.celeriac} | {r.ratio} | {r.target} "
        f"| {r.verdict} |"
        for r in found
    ]
    return "\n".join(lines)


def _commit_verdict(counts: dict[str, Any]) -> str:
    return verdict(counts["commits"] <= COMMITS_PER_NODE)


def sql_table(results: dict[str, Any]) -> str:
    """Commits, transactions and statements per node, in all and per Store method."""
    lines = [
        "| workload | commits / node | transactions / node (in the node's own) "
        "| statements / node | by Store method: commits / statements per node "
        "| target | |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for title, counts in sql_rows(results):
        methods = ", ".join(
            f"`{name}` {value.get('commit', 0):g} / {value.get('stmt', 0):g}"
            for name, value in counts["by_method"].items()
            if value.get("commit") or value.get("stmt")
        )
        lines.append(
            f"| {title} | {counts['commits']:g} | {counts['transactions']:g} "
            f"({counts['node_transactions']:g}) | {counts['statements']:g} "
            f"| {methods} | ≤ {COMMITS_PER_NODE:g} commits per node "
            f"| {_commit_verdict(counts)} |"
        )
    return "\n".join(lines)


def repetitions(results: dict[str, Any]) -> str:
    """Every repetition's figure, per workload and system."""
    names = titles(results["sizes"])
    lines = ["| workload | system | every repetition |", "| --- | --- | --- |"]
    for key, figures in results["workloads"].items():
        if "error" in figures:
            continue
        if key in ("submit", "pause", "recovery"):
            field = {"submit": "seconds", "pause": "latency", "recovery": "delay"}[key]
            values = ", ".join(seconds(run[field]) for run in figures["runs"])
            lines.append(f"| {names[key]} | celeriac | {values} |")
            continue
        for system, runs in figures["runs"].items():
            values = ", ".join(seconds(run["seconds"]) for run in runs)
            lines.append(f"| {names[key]} | {system} | {values} |")
    return "\n".join(lines)


def machine_table(info: dict[str, Any]) -> str:
    """The machine and the software versions."""
    entries = [
        ("date", info["date"]),
        ("CPU", f"{info['cpu']}, {info['cores']} cores"),
        ("memory", f"{info['memory_gib']} GiB"),
        ("OS", info["os"]),
        ("Python", info["python"]),
        ("Celery", f"{info['celery']} (kombu {info['kombu']})"),
        ("PostgreSQL", info["postgresql"]),
        ("Redis", info["redis"]),
        (
            "drivers",
            f"SQLAlchemy {info['sqlalchemy']}, psycopg {info['psycopg']}, "
            f"redis-py {info['redis_py']}",
        ),
        ("celeriac", info["celeriac"]),
        (
            "load average (1 min)",
            f"{info['load_before']} just before the run (other processes); "
            f"{info.get('load_after', '?')} at its end (its own processes count)",
        ),
    ]
    lines = ["| | |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in entries]
    return "\n".join(lines)


def console(results: dict[str, Any]) -> str:
    """What the benchmark prints at the end."""
    found = rows(results)
    width = max(len(r.workload) for r in found)
    lines = []
    for r in found:
        lines.append(f"{r.workload:<{width}}  {r.verdict}")
        if r.native != "—":
            lines.append(f"    native Celery: {r.native}")
        lines.append(f"    celeriac:      {r.celeriac}")
        if r.ratio != "—":
            lines.append(f"    ratio:         {r.ratio}")
        lines.append(f"    target:        {r.target}")
    for title, counts in sql_rows(results):
        lines.append(
            f"{title}: {counts['commits']:g} commits, {counts['transactions']:g} "
            f"transactions ({counts['node_transactions']:g} in the node's own Store "
            f"calls) and {counts['statements']:g} statements per node; target ≤ "
            f"{COMMITS_PER_NODE:g} commits per node {_commit_verdict(counts)}"
        )
    return "\n".join(lines)


DOC = """\
# Benchmarks

celeriac side by side with native Celery, on the same broker, the same worker
processes and the same concurrency. This page is written by
`benchmarks/run.py`: to measure again, run

```bash
{command}
```

([`benchmarks/README.md`](../benchmarks/README.md) says what each workload
does and how it is measured.) Measured on {date}, {repeat} repetitions of
each workload; the figures are medians.

## Machine

{machine}

PostgreSQL and Redis are throwaway servers started by the benchmark, as the
tests start them: on the same machine as the workers, over loopback, Redis
without persistence, and PostgreSQL with autovacuum and {durability}.

## Results

{table}

Each system has one `celery worker` process (prefork pool, concurrency 2) on
its own queue, with the same settings (`task_acks_late=True`,
`worker_prefetch_multiplier=1`, as [operations](operations.md) recommends).
Native Celery stores results in Redis (database {results_db} of the same
server) or in Celery's SQL result backend
(`db+postgresql+psycopg://…`, on the same PostgreSQL); celeriac has no result
backend and stores results in its own tables. Times run from handing the
canvas over (`apply_async()` or `engine.submit()`) until its final result is
back in the submitting process (`AsyncResult.get()` or `Workflow.get()`).

The pause workload runs two workers (four pool processes), and one pause
before the measured ones: a pool process's first pause costs about 60 ms
more, compiling the statements of the pause's path. The recovery
workload runs one worker with quick failure detection
({recovery_options}), SIGKILLs it (with its pool) while a chain's third
task runs, starts a new one, and times from the new worker's `worker_ready`
until the killed task starts again.

The throughput rows hand over every workflow of the mix at once (a submit
or `apply_async()` each, then a `get()` each) to two workers (four pool
processes) per system, alternating between the systems. Nodes per second
run from the first hand-over to the last result; worker CPU is the user and
system time of the worker processes (pool processes included) over the
same window, divided by the nodes run; PostgreSQL's CPU is read the same
way from its server processes (`/proc`). The dispatch latency runs from a
node's last parent's recorded `finished_at` (taken just before the
transaction that records the outcome) to the moment a worker published the
node's message (Celery's `after_task_publish`, which the workers of this
workload record in Redis, natively too).

The scale rows run celeriac alone: the million-node workflow is submitted
and then cancelled in fresh processes with no worker listening (time, and
peak memory above the process's resident set before the call); the poll is
one `get()` read of a running workflow, against a 10-node one; the chain of
the history row runs on tables holding that many finished nodes (inserted
in SQL), against the same chain on empty tables, each on a worker of its
own; the purge deletes part of that history afterwards.

## Database work per node

Counted with SQLAlchemy events (`begin`, `commit`, `before_cursor_execute`)
inside celeriac worker processes of their own, in the threads that run tasks
(the heartbeat and recovery threads are left out), over one more run of the
workload after the timed ones, divided by the number of task nodes run. The
timed workers count nothing: they run as native Celery's, without
instrumentation. A statement on a connection in autocommit (the usual
claim, on PostgreSQL) counts as a commit, since it commits on its own, and
as no transaction: no `BEGIN` goes with it. In parentheses: the
transactions of the Store calls made once per node (`claim_node`,
`record_success`); the rest is made once per workflow
(`transition_workflow` when it completes).

{sql_table}

## Where the time goes

A hop of a chain costs celeriac the same at any length, and usually one
commit: the outcome's transaction records the node's end and, when it makes
exactly one task ready that may run here (same queue, no countdown, ETA,
expiry or time limit), claims that task for the same worker, which runs it
next without a broker round trip ([differences](differences.md), D21). On
PostgreSQL that transaction is one statement. A
node whose successor cannot run in place costs two commits: the claim before
the body (on PostgreSQL one statement that commits on its own) and the
outcome after it (on PostgreSQL usually one statement: the node's and its
attempt's end, its children counted, the successors it made ready marked
`QUEUED`, the events). Native Celery's hop is cheaper on a short chain and
grows with the chain, since each message carries the rest of it. On a
durable server (`--durable`) each commit waits for the disk to flush the
write-ahead log, which native Celery with a Redis result backend never does.
A group's members are published, so each costs the two commits, spread over
the pool processes, but each in one round trip: on PostgreSQL the claim, and
the success of a member that only counts its join down (all but the last),
are each one statement that commits on its own, with no `BEGIN` or `COMMIT`
sent apart. The members queue on one row, the join that counts them, whose
lock each holds until its commit. `Workflow.get()` learns of the
end through PostgreSQL's `LISTEN`/`NOTIFY`, so the figures do not include
polling delays. On a 2-core machine, PostgreSQL, Redis, the worker processes
and the submitting process share the cores, so a workload's time follows the
CPU all of them spend per node, and the spread between repetitions (below)
is wide.

### One chain hop, profiled

`python benchmarks/run.py --durable --profile chain_short --repeat 3` runs the
chain of 100 under cProfile in every pool process, natively and through
celeriac, and prints the time per task inside the pool process. Four runs:
before and after the claim and the outcome were folded into fewer
statements, with the next node run in place (2026-12-06, an Intel Xeon VM),
and with that hop written as one statement (2026-12-07, an AMD EPYC VM).
Compare each run's celeriac with its own native figures: the machines, and
the moments, differ.

{hop_profile}

Run in place, a hop no longer pays for the claim's commit or for sending a
message: what is left is the outcome's one transaction and building the
next node's message as Celery would publish it. On PostgreSQL that
transaction is one statement (`BEGIN`, the statement, `COMMIT`): the node's
and its attempt's end, its successor counted down and claimed, the
successor's attempt 1 and the events. About half of it is waiting on
PostgreSQL, the rest SQLAlchemy's and psycopg's Python.

## Every repetition

{repetitions}
"""


#: ``--profile chain_short`` in four runs: before and after the claim and
#: the outcome were folded (commits 984a43c and ff64bae), with the next node
#: run in place (0a4bb11, 07f7be6), and with that hop as one statement
#: (ba28ad9): milliseconds per task in the pool
#: process, and the chain of 100's median (the runs are on the same machine,
#: not at the same moment; each run's own native figures are beside it).
HOP_PROFILE = [
    (
        "per task, in the pool process",
        "native Celery (before)",
        "celeriac before",
        "native Celery (after)",
        "celeriac after",
        "native Celery (in place)",
        "celeriac, next node run in place",
        "native Celery (one statement)",
        "celeriac, the hop in one statement",
    ),
    (
        "the whole traced task (`trace_task`)",
        "3.07 ms",
        "9.16 ms",
        "2.59 ms",
        "5.62 ms",
        "3.10 ms",
        "3.75 ms",
        "2.41 ms",
        "2.56 ms",
    ),
    (
        "claim (`claim_node`): statements, commits",
        "—",
        "2.63 ms: 3, 1",
        "—",
        "1.45 ms: 1, 1 (autocommit)",
        "—",
        "in the outcome's transaction",
        "—",
        "in the outcome's statement",
    ),
    (
        "outcome (`record_success`): statements, commits",
        "1.15 ms (Redis `store_result`)",
        "4.02 ms: 6, 1",
        "1.01 ms (Redis `store_result`)",
        "2.22 ms: 1, 1",
        "1.08 ms (Redis `store_result`)",
        "3.03 ms: 2, 1 (the next node's claim included)",
        "0.93 ms (Redis `store_result`)",
        "2.00 ms: 1, 1 (the next node's claim included)",
    ),
    (
        "publishing the next node (`apply_async`)",
        "1.65 ms",
        "1.64 ms",
        "1.35 ms",
        "1.24 ms",
        "1.76 ms",
        "0.36 ms (built, not sent)",
        "1.27 ms",
        "0.27 ms (built, not sent)",
    ),
    (
        "waiting on PostgreSQL (`psycopg` execute + commit)",
        "—",
        "3.23 ms",
        "—",
        "2.14 ms",
        "—",
        "1.56 ms",
        "—",
        "1.09 ms",
    ),
    (
        "chain of 100, median of 3",
        "329 ms",
        "980 ms (2.97x)",
        "264 ms",
        "593 ms (2.24x)",
        "321 ms",
        "366 ms (1.14x)",
        "244 ms",
        "244 ms (1.00x)",
    ),
]


def hop_profile() -> str:
    """``HOP_PROFILE`` as a Markdown table."""
    header, *body = HOP_PROFILE
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def command(results: dict[str, Any]) -> str:
    """The command line that measures ``results`` again."""
    line = f"python benchmarks/run.py --repeat {results['repeat']}"
    return line + (" --durable" if results.get("durable") else "")


def write_docs(results: dict[str, Any]) -> Path:
    """Rewrite docs/benchmarks.md from ``results``."""
    info = results["machine"]
    options = ", ".join(f"`{k}={v:g}`" for k, v in FAST_RECOVERY.items())
    text = DOC.format(
        command=command(results),
        date=info["date"],
        repeat=results["repeat"],
        machine=machine_table(info),
        table=table(rows(results)),
        results_db=results.get("results_db", 1),
        recovery_options=options,
        durability=(
            "`fsync` on (`--durable`): each commit waits for the disk"
            if results.get("durable")
            else "`fsync=off`, as the tests run it: a commit costs no disk "
            "flush (on a durable server each of celeriac's two commits per node "
            "and each of Celery's SQL backend writes costs one; `--durable` "
            "measures that)"
        ),
        sql_table=sql_table(results),
        hop_profile=hop_profile(),
        repetitions=repetitions(results),
    )
    DOCS.write_text(text)
    return DOCS
