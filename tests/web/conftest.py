"""Fixtures for the web console: an app over a real engine, a client for it."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from celeriac.web import create_app
from celeriac.web.auth import Credentials


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
