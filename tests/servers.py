"""Database fixtures. (PostgreSQL and Redis servers are added by issue 3.)"""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite"])
def database_url(request, sqlite_url: str) -> str:
    return sqlite_url
