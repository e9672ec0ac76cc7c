"""Submit one big canvas and report time and memory (run in a fresh process).

``python -m benchmarks.submit --broker URL --database-url URL --queue Q
--nodes N`` builds a group of 10-task chains with ``N`` tasks in all, then
times ``engine.submit()``: compiling, storing in one transaction, and
publishing the first task of every chain. Memory is the peak resident set
while submitting (``ru_maxrss``) less the resident set just before, so the
interpreter, the imports and the canvas object itself are not counted. It
prints one line of JSON.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import time
from typing import Any

import redis
from celery import chain, group

from benchmarks.app import Bench, build

CHAIN = 10
MB = 1024 * 1024


def resident() -> int:
    """This process's resident set now, in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak() -> int:
    """The largest resident set this process had so far, in bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def chains_of(bench: Bench, nodes: int) -> tuple[Any, int]:
    """A group of 10-task chains with about ``nodes`` tasks; the exact count."""
    length = min(CHAIN, nodes)
    chains = max(1, nodes // length)
    canvas = group(
        [chain(*[bench.noop.s() for _ in range(length)]) for _ in range(chains)]
    )
    return canvas, chains * length


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--nodes", type=int, default=100_000)
    args = parser.parse_args()

    bench = build("celeriac", args.broker, args.queue, database_url=args.database_url)
    assert bench.engine is not None
    canvas, nodes = chains_of(bench, args.nodes)
    gc.collect()
    before, peak_before = resident(), peak()

    start = time.perf_counter()
    workflow = bench.engine.submit(canvas)
    seconds = time.perf_counter() - start

    peak_after = peak()
    stored = sum(workflow.node_counts().values())
    client = redis.Redis.from_url(args.broker)
    published = int(client.llen(args.queue))
    client.close()
    bench.close()
    figures = {
        "workflow": workflow.id,
        "nodes": nodes,
        "stored_nodes": stored,
        "published": published,
        "seconds": seconds,
        "rss_before_mb": before / MB,
        "peak_mb": peak_after / MB,
        "peak_delta_mb": (max(peak_after, peak_before) - before) / MB,
        "peak_grew": peak_after > peak_before,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
