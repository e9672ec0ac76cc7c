"""A login from a new device: check, notify and save, score, post-process.

::

    check_device ─┬─ notify_user ─┬─ score (external API, retried) ─ post_process
                  └─ save_event  ─┘      └─ link_error: alert_security

The scoring API is simulated: it is down for the first two calls. The score
task retries by itself (Celery's ``autoretry_for`` with ``retry_backoff``),
and ``alert_security`` is its ``link_error`` errback, which runs only if the
retries are spent. At the end every node's attempts are printed.
"""

from __future__ import annotations

import os
import sys
import threading
from datetime import datetime
from typing import Any

from celery import Celery, chain, group

from celeriac import Engine, Workflow

DATABASE_URL = os.environ.get("CELERIAC_DATABASE_URL", "sqlite:///logins.db")

app = Celery("logins", set_as_current=False)
engine = Engine(app, DATABASE_URL)


class FlakyScoringAPI:
    """Stands in for an external HTTP API that fails its first calls."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.lock = threading.Lock()

    def post(self, event: dict[str, Any]) -> float:
        with self.lock:
            self.calls += 1
            if self.calls <= self.failures:
                raise ConnectionError(f"503 from scoring API (call {self.calls})")
        return 0.91 if event["new_device"] else 0.05


scoring_api = FlakyScoringAPI(failures=2)


@app.task(name="logins.check_device", shared=False)
def check_device(user: str, device: str) -> dict[str, Any]:
    known = {"alice": ["laptop-7f3a"]}
    return {"user": user, "device": device, "new_device": device not in known[user]}


@app.task(name="logins.notify_user", shared=False)
def notify_user(login: dict[str, Any]) -> dict[str, Any]:
    # a real one would send an e-mail; the login passes on to the next step
    return {**login, "notified": f"{login['user']}@example.com"}


@app.task(name="logins.save_event", shared=False)
def save_event(login: dict[str, Any]) -> dict[str, Any]:
    return {**login, "event_id": f"evt-{login['user']}-{login['device']}"}


@app.task(
    name="logins.score",
    shared=False,
    autoretry_for=(ConnectionError,),
    # Celery rounds the backoff factor up to whole seconds: waits of 1 s, 2 s
    retry_backoff=1,
    retry_backoff_max=2,
    retry_jitter=False,
    max_retries=4,
)
def score(branches: list[dict[str, Any]]) -> dict[str, Any]:
    event = {key: value for branch in branches for key, value in branch.items()}
    return {**event, "score": scoring_api.post(event)}


@app.task(name="logins.alert_security", shared=False)
def alert_security(task_id: str) -> str:
    print(f"scoring failed for good ({task_id}): paging security")
    return task_id


@app.task(name="logins.post_process", shared=False)
def post_process(scored: dict[str, Any]) -> str:
    verdict = "challenge with 2FA" if scored["score"] > 0.5 else "allow"
    return f"{scored['user']} on {scored['device']}: {verdict} ({scored['score']})"


def new_device_login(user: str, device: str) -> Any:
    return chain(
        check_device.s(user, device),
        group(notify_user.s(), save_event.s()),
        score.s().on_error(alert_security.s()),
        post_process.s(),
    )


def print_attempts(workflow: Workflow) -> None:
    nodes = workflow.nodes()
    starts = [a.started_at for n in nodes for a in n.attempts if a.started_at]
    origin = min(starts, default=None)
    for node in nodes:
        print(f"{node.task:<22} {node.state:<10} {len(node.attempts)} attempt(s)")
        for attempt in node.attempts:
            error = f"  {attempt.exc_type}: {attempt.exc_message}"
            print(
                f"    #{attempt.number} {attempt.state:<9} "
                f"at +{_seconds(attempt.started_at, origin)}"
                f"{error if attempt.exc_type else ''}"
            )


def _seconds(moment: datetime | None, origin: datetime | None) -> str:
    if moment is None or origin is None:
        return "?"
    return f"{(moment - origin).total_seconds():.2f}s"


def main() -> int:
    print(f"database {DATABASE_URL}, embedded worker with 2 threads")
    with engine.embedded_worker(concurrency=2):
        workflow = engine.submit(
            new_device_login("alice", "phone-91c2"), name="new-device-login"
        )
        print(f"workflow {workflow.id} submitted; the scoring API is down twice")
        outcome = workflow.get(timeout=20)
    print(f"outcome: {outcome}")
    print(f"state: {workflow.state}")
    print_attempts(workflow)
    scoring = next(node for node in workflow.nodes() if node.task == "logins.score")
    states = [attempt.state for attempt in scoring.attempts]
    return 0 if states == ["RETRY", "RETRY", "SUCCEEDED"] else 1


if __name__ == "__main__":
    sys.exit(main())
