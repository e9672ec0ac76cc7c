"""Fixtures for the web console: an app over a real engine, a client for it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
from starlette.testclient import TestClient

from celeriac.web import create_app
from celeriac.web.auth import Credentials
from tests.servers import free_port
from tests.waiting import wait_for


@pytest.fixture
def web_app(engine):
    return create_app(engine, credentials=Credentials(), poll_interval=0.05)


@pytest.fixture
def client(web_app):
    with TestClient(web_app) as client:
        client.get("/api/v1/openapi.json")  # the CSRF cookie
        yield client


def csrf(client) -> dict[str, str]:
    """The header a POST of ``client`` needs."""
    return {"X-CSRF-Token": client.cookies["celeriac_csrf"]}


@contextmanager
def serving(app: Any, console: Any) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port, in a thread.

    ``console`` (``app`` itself, or the console mounted in it) ends its live
    streams first when the server stops, as ``celeriac web`` does: none is
    cancelled in the middle of a look at the database.
    """
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, what="uvicorn to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        console.state.console.stopping.set()
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def live_url(web_app) -> Iterator[str]:
    """``web_app`` served by uvicorn, in a thread."""
    with serving(web_app, web_app) as url:
        yield url
