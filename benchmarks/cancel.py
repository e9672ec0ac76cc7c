"""Cancel a stored workflow and report time and memory (run in a fresh process).

``python -m benchmarks.cancel --broker URL --database-url URL --queue Q
--workflow ID`` times ``engine.cancel()`` of a workflow that ``benchmarks.submit``
stored (nothing runs: no worker listens). Memory is measured as there: the
peak resident set while cancelling less the resident set just before. It
prints one line of JSON.
"""

from __future__ import annotations

import argparse
import gc
import json
import time

from benchmarks.app import build
from benchmarks.submit import MB, peak, resident


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--workflow", required=True)
    args = parser.parse_args()

    bench = build("celeriac", args.broker, args.queue, database_url=args.database_url)
    assert bench.engine is not None
    gc.collect()
    before, peak_before = resident(), peak()

    start = time.perf_counter()
    bench.engine.cancel(args.workflow)
    seconds = time.perf_counter() - start

    peak_after = peak()
    state = bench.engine.workflow(args.workflow).state
    bench.close()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "state": state,
                "peak_delta_mb": (max(peak_after, peak_before) - before) / MB,
            }
        )
    )


if __name__ == "__main__":
    main()
