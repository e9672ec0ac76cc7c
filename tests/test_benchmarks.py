"""The benchmarks still run: ``benchmarks/run.py --quick`` as a smoke test.

It starts its own PostgreSQL and Redis (as these tests do) and its own worker
processes, so it needs the servers' binaries; it checks that every workload
ran and produced figures, never the figures themselves.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = {
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
}


def run_benchmark(*options: str, timeout: float) -> str:
    """Run ``benchmarks/run.py`` with ``options``; what it printed (it must succeed)."""
    done = subprocess.run(
        [sys.executable, "benchmarks/run.py", *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    return done.stdout


def _positive(figures: dict[str, float]) -> bool:
    return bool(figures) and all(value > 0 for value in figures.values())


@pytest.mark.timeout(300)
def test_the_quick_benchmark_runs_every_workload_on_both_systems(
    tmp_path: Path,
) -> None:
    output = tmp_path / "latest.json"
    run_benchmark("--quick", "--no-docs", "--json", str(output), timeout=280)

    results = json.loads(output.read_text())
    workloads = results["workloads"]
    assert set(workloads) == WORKLOADS
    throughput = workloads.pop("throughput")
    for key, figures in workloads.items():
        assert "error" not in figures, (key, figures)
        assert _positive(figures["medians"]), (key, figures["medians"])
    assert "error" not in throughput, throughput
    assert set(throughput["medians"]) == {"celery-redis", "celeriac"}
    assert all(map(_positive, throughput["medians"].values()))
    assert {"latency_p50", "latency_p95", "nodes_per_db_second"} <= set(
        throughput["medians"]["celeriac"]
    )
    for key in ("chain_short", "chain_long", "group", "chord"):
        assert {"celery-redis", "celeriac"} <= set(workloads[key]["medians"])
        counted = workloads[key]["sql_per_node"]["celeriac"]
        assert counted["transactions"] > 0
        assert counted["statements"] > 0
    assert "celery-sql" in workloads["chord"]["medians"]
    assert workloads["submit"]["runs"][0]["stored_nodes"] >= 20
    assert workloads["million"]["cancelled_state"] == "CANCELLED"
    assert workloads["purge"]["n"] == results["sizes"]["purge"]
    assert set(workloads["history"]["medians"]) == {
        "celeriac-empty",
        "celeriac-history",
    }
    assert results["machine"]["postgresql"]


@pytest.mark.timeout(120)
def test_postgresql_work_by_statement_names_the_claim_and_the_success() -> None:
    printed = run_benchmark(
        "--statements", "group", "--quick", "--repeat", "1", timeout=110
    )
    assert "ms of execution" in printed, printed
    listed = printed.split("blocks/call", 1)[1]
    assert "WITH claimed AS (UPDATE celeriac_nodes" in listed  # the claim
    # a member's success, which counts END down: it looks the edges up first
    assert "WITH edge AS (SELECT min(celeriac_edges.child_id)" in listed
