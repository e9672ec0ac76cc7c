"""Where celeriac's configuration comes from."""

from __future__ import annotations

import os

DEFAULT_DATABASE_URL = "sqlite:///celeriac.db"
DATABASE_URL_VARIABLE = "CELERIAC_DATABASE_URL"
APP_VARIABLE = "CELERIAC_APP"


def database_url(explicit: str | None = None) -> str:
    """The database URL: the argument, else $CELERIAC_DATABASE_URL, else SQLite."""
    return explicit or os.environ.get(DATABASE_URL_VARIABLE) or DEFAULT_DATABASE_URL
