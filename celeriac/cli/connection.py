"""Reaching the database once, quickly, before a command relies on it.

The store retries transient database errors for up to a minute: right for a
worker riding out a failover, wrong for someone at a shell, who would wait
that long for a traceback. So the command line reads the URL first (a URL
SQLAlchemy cannot use is bad usage, exit 2), then opens one connection with a
short timeout and no retries (a database it cannot reach is a refusal, exit 1),
and only then calls the store. No message shows the URL's password.
"""

from __future__ import annotations

import re

import click
import sqlalchemy as sa

from celeriac.settings import normalize_url

#: Seconds the first connection may take, unless the URL sets ``connect_timeout``.
CONNECT_TIMEOUT = 5
_EXAMPLES = "e.g. sqlite:///celeriac.db or postgresql+psycopg://user:password@host/db"


def parse_url(url: str, param_hint: str) -> sa.URL:
    """``url`` as SQLAlchemy reads it; ``click.BadParameter`` if it cannot be used."""
    try:
        parsed = sa.engine.make_url(normalize_url(url))
    except (sa.exc.ArgumentError, ValueError) as exc:
        # the text may hold a password that could not be parsed out: not echoed
        raise click.BadParameter(
            f"not a database URL ({_EXAMPLES})", param_hint=param_hint
        ) from exc
    shown = safe_url(parsed)
    try:
        parsed.get_dialect().import_dbapi()
    except sa.exc.NoSuchModuleError as exc:
        raise click.BadParameter(
            f"{shown}: SQLAlchemy has no database dialect {parsed.drivername!r}",
            param_hint=param_hint,
        ) from exc
    except ImportError as exc:
        raise click.BadParameter(
            f"{shown}: the driver for {parsed.drivername!r} is not installed ({exc})",
            param_hint=param_hint,
        ) from exc
    return parsed


def reach(url: sa.URL) -> None:
    """Open and close one connection to ``url``; a ``ClickException`` if it fails.

    The connection is the probe's own, unpooled, and gives up after
    ``CONNECT_TIMEOUT`` seconds on PostgreSQL.
    """
    connect_args = {}
    if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT
    probe = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args=connect_args)
    try:
        with probe.connect():
            pass
    except sa.exc.DBAPIError as exc:
        raise click.ClickException(
            f"cannot connect to the database at {safe_url(url)}: {reason(exc, url)}"
        ) from exc
    finally:
        probe.dispose()


def reason(exc: sa.exc.DBAPIError, url: sa.URL | None) -> str:
    """The driver's own words for what went wrong, on one line.

    psycopg says ``connection failed: connection to server at "h", port 1
    failed: Connection refused`` and a hint on further lines: the URL already
    names the server, so only the last clause is kept.
    """
    lines = str(exc.orig if exc.orig is not None else exc).strip().splitlines()
    text = lines[0] if lines else type(exc.orig or exc).__name__
    if text.startswith("connection failed: "):
        text = text.rpartition(" failed: ")[2]
    text = re.sub(r"^(FATAL|ERROR):\s+", "", text)
    # The drivers do not echo the password; make sure. (A password of a few
    # letters would only garble words it happens to be part of.)
    password = str(url.password) if url is not None and url.password else ""
    if len(password) >= 4:
        text = text.replace(password, "***")
    return text


def safe_url(url: str | sa.URL) -> str:
    """The URL with its password replaced by ``***``."""
    return sa.engine.make_url(url).render_as_string(hide_password=True)
