"""A canvas that grows at run time: a step replaces itself with a fan-out.

``list_accounts`` does not know at submit time how many accounts there are:
it lists them when it runs, then replaces itself (``self.replace``) with a
chord, one ``fetch`` per account and a ``summarise`` over them all. The
chord's nodes are added to the stored workflow where ``list_accounts``
stood, so ``report`` after it receives the summary, exactly as native
Celery would hand it. Halfway through the fetches the workflow is paused,
then resumed: the new nodes are held back and released like any other.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import time
from typing import Any

from celery import Celery, chain, chord

from celeriac import Engine

DATABASE_URL = os.environ.get("CELERIAC_DATABASE_URL", "sqlite:///fanout.db")
ACCOUNTS = 40

app = Celery("fanout", set_as_current=False)
engine = Engine(app, DATABASE_URL)
runs: collections.Counter[str] = collections.Counter()
counting = threading.Lock()


def ran(name: str) -> None:
    with counting:
        runs[name] += 1


@app.task(name="fanout.list_accounts", bind=True, shared=False)
def list_accounts(self: Any, region: str) -> Any:
    """List the region's accounts, then become one fetch per account."""
    ran(f"list {region}")
    accounts = [f"{region}-{number:03d}" for number in range(ACCOUNTS)]
    return self.replace(chord((fetch.s(a) for a in accounts), summarise.s()))


@app.task(name="fanout.fetch", shared=False)
def fetch(account: str) -> dict[str, Any]:
    """Fetch one account's balance (slowly, as a remote API would)."""
    ran(account)
    time.sleep(0.05)
    return {"account": account, "balance": int(account[-3:]) * 7 % 50}


@app.task(name="fanout.summarise", shared=False)
def summarise(balances: list[dict[str, Any]]) -> dict[str, int]:
    ran("summarise")
    return {"accounts": len(balances), "total": sum(b["balance"] for b in balances)}


@app.task(name="fanout.report", shared=False)
def report(summary: dict[str, int]) -> str:
    ran("report")
    return f"{summary['accounts']} accounts, total balance {summary['total']}"


def main() -> int:
    print(f"database {DATABASE_URL}, embedded worker with 4 threads")
    with engine.embedded_worker(concurrency=4):
        workflow = engine.submit(chain(list_accounts.s("eu"), report.s()))
        print(f"workflow {workflow.id}: {len(workflow.nodes())} nodes at submit")
        deadline = time.monotonic() + 30
        while workflow.progress().done < ACCOUNTS // 2:
            if time.monotonic() > deadline:
                print("the fetches did not start in time")
                return 1
            time.sleep(0.02)
        workflow.pause()
        while workflow.state != "PAUSED":
            time.sleep(0.02)
        progress = workflow.progress()
        print(f"PAUSED with {progress.done}/{progress.total} tasks done")
        time.sleep(0.3)
        still = workflow.progress().done
        print(f"nothing ran while paused: {still == progress.done}")
        workflow.resume()
        result = workflow.get(timeout=30)
    nodes = workflow.nodes()
    replaced = nodes[0]
    added = [node for node in nodes if node.replaces == replaced.id]
    print(
        f"{replaced.task} replaced itself with {len(added)} nodes "
        f"({[a.state for a in replaced.attempts]} then {replaced.state})"
    )
    print(
        f"nodes now: {len(nodes)}, all SUCCEEDED: "
        f"{all(node.state == 'SUCCEEDED' for node in nodes)}"
    )
    print(f"report: {result}")
    expected = sum(number * 7 % 50 for number in range(ACCOUNTS))
    once = all(count == 1 for count in runs.values())
    print(f"every task ran once: {once}")
    good = result == f"{ACCOUNTS} accounts, total balance {expected}"
    return 0 if good and once and len(added) == ACCOUNTS + 1 else 1


if __name__ == "__main__":
    sys.exit(main())
