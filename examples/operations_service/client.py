"""Drive the operations service end to end over real HTTP.

Starts ``service.py``'s Flask app on a free loopback port and its embedded
worker in this process, then: start an operation, pause it, show it PAUSED
(and that nothing moves), resume it and wait for COMPLETED. Refused actions
come back as HTTP 409 with the reason. Exits 0 if everything went as shown.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import service
from werkzeug.serving import make_server

#: How long the operation stays PAUSED before the client resumes it.
HOLD_SECONDS = 1.0
TIMEOUT = 30.0


class Client:
    """A tiny JSON client for the service's API."""

    def __init__(self, base: str) -> None:
        self.base = base

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else b""
        req = urllib.request.Request(
            self.base + path,
            data=data if method == "POST" else None,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                status, payload = response.status, json.load(response)
        except urllib.error.HTTPError as error:
            status, payload = error.code, json.load(error)
        print(f"{method} {path} -> {status} {_summary(payload)}")
        return status, payload

    def wait(self, operation_id: str, until: Any) -> dict[str, Any]:
        """Poll GET until ``until(operation)`` holds; print each change."""
        deadline = time.monotonic() + TIMEOUT
        seen = None
        while True:
            operation = self.get(operation_id)
            shown = (operation["state"], operation["done"])
            if shown != seen:
                print(f"  ... {_summary(operation)}")
                seen = shown
            if until(operation):
                return operation
            if time.monotonic() > deadline:
                raise TimeoutError(f"operation stuck: {operation}")
            time.sleep(0.05)

    def get(self, operation_id: str) -> dict[str, Any]:
        path = f"{self.base}/operations/{operation_id}"
        with urllib.request.urlopen(path, timeout=10) as response:
            payload: dict[str, Any] = json.load(response)
        return payload


def _summary(payload: dict[str, Any]) -> str:
    if "error" in payload:
        return str(payload["error"])
    return (
        f"{payload['state']}, {payload['done']}/{payload['total']} steps done "
        f"({payload['fraction']:.0%})"
    )


def running_early_in_a_step(op: dict[str, Any]) -> bool:
    """A step after the second runs and has done at most half of its work."""
    step_done = op["fraction"] * op["total"] - op["done"]
    return op["done"] >= 2 and op["running"] == 1 and step_done <= 0.5


def drive(client: Client) -> bool:
    """The scenario; returns whether everything behaved as promised."""
    _, operation = client.call("POST", "/operations", {"size": 12})
    operation_id = operation["id"]
    # pause in the first half of a running step (the third or later), so
    # that the pause has to wait for it: REQUESTING_PAUSE, then PAUSED
    client.wait(operation_id, running_early_in_a_step)

    client.call("POST", f"/operations/{operation_id}/pause")
    paused = client.wait(operation_id, lambda op: op["state"] == "PAUSED")
    print(f"PAUSED with {paused['done']}/{paused['total']} steps done")
    time.sleep(HOLD_SECONDS)
    held = client.get(operation_id)
    print(f"after {HOLD_SECONDS:.0f} s: still {held['done']} done, {held['state']}")
    refused_pause, _ = client.call("POST", f"/operations/{operation_id}/pause")

    client.call("POST", f"/operations/{operation_id}/resume")
    final = client.wait(operation_id, lambda op: op["state"] != "IN_PROGRESS")
    print(f"result: {final.get('result')}")
    refused_cancel, _ = client.call("POST", f"/operations/{operation_id}/cancel")
    missing, _ = client.call("GET", "/operations/no-such-operation")

    return (
        held["done"] == paused["done"]
        and held["state"] == "PAUSED"
        and final["state"] == "COMPLETED"
        and final["done"] == final["total"] == 5
        and (refused_pause, refused_cancel, missing) == (409, 409, 404)
    )


def main() -> int:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server("127.0.0.1", 0, service.web, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    print(f"service on {base}, database {service.DATABASE_URL}")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with service.engine.embedded_worker(concurrency=2):
            ok = drive(Client(base))
    finally:
        server.shutdown()
    print("end to end: OK" if ok else "end to end: something went wrong")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
