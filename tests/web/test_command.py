"""``celeriac web``, run in a subprocess; the live stream it serves."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx2 as httpx

from celeriac.web.auth import PASSWORD_VARIABLE, TOKEN_VARIABLE, USER_VARIABLE
from tests.servers import free_port
from tests.waiting import wait_for

CELERIAC = [sys.executable, "-m", "celeriac.cli"]


def environment(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in (TOKEN_VARIABLE, USER_VARIABLE, PASSWORD_VARIABLE)
    }
    return {**env, **extra}


def test_refuses_to_listen_off_loopback_without_credentials(sqlite_url):
    result = subprocess.run(
        [*CELERIAC, "--database-url", sqlite_url, "web", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "refusing to listen on 0.0.0.0 without authentication" in result.stderr
    half = environment(**{USER_VARIABLE: "ops"})
    result = subprocess.run(
        [*CELERIAC, "--database-url", sqlite_url, "web", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        env=half,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert f"set both {USER_VARIABLE} and {PASSWORD_VARIABLE}" in result.stderr


def test_serves_the_console_and_its_live_stream(engine, tasks, tmp_path):
    workflow = engine.submit(tasks.add.s(1, 1), name="served")
    port = free_port()
    log = Path(tmp_path / "web.log")
    with log.open("w") as out:
        server = subprocess.Popen(
            [
                *CELERIAC,
                "--database-url",
                engine.database_url,
                "web",
                "--port",
                str(port),
                "--safety-poll-interval",
                "5",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environment(),
        )
    try:
        wait_for(lambda: "Ctrl+C" in log.read_text(), timeout=30)
        assert f"http://127.0.0.1:{port}/" in log.read_text()
        url = f"http://127.0.0.1:{port}"
        assert workflow.id[:8] in wait_for(lambda: _page(f"{url}/"), timeout=30)
        stream = f"{url}/events/workflows/{workflow.id}"
        with httpx.stream("GET", stream, timeout=10) as answer:
            assert answer.headers["content-type"].startswith("text/event-stream")
            lines = answer.iter_lines()
            first = next(line for line in lines if line.startswith("event:"))
            data = next(lines)
        assert first == "event: summary"
        assert "IN_PROGRESS" in data or "IN_PROGRESS" in next(lines, "")
    finally:
        server.terminate()
        server.wait(timeout=30)


def _page(url: str) -> str | None:
    try:
        return httpx.get(url, timeout=5).text
    except httpx.TransportError:
        return None
