"""Where the command line gets its engine: --app, --database-url, the environment."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa
from celery import Celery

from celeriac import CeleriacError, Engine
from celeriac.settings import database_url
from celeriac.storage import migrate


class Config:
    """The group's options; builds the engine once, when a command needs it."""

    def __init__(self, app: str | None, url: str | None) -> None:
        self.app = app
        self.url = url
        self._engine: Engine | None = None

    @property
    def database_url(self) -> str:
        return database_url(self.url)

    def engine(self, need_app: str | None = None, migrated: bool = True) -> Engine:
        """The app's engine, or one on a bare app when ``need_app`` is not set.

        ``need_app`` names what needs the app, for the usage error;
        ``migrated`` refuses a database without celeriac's schema.
        """
        if self._engine is None:
            if self.app:
                self._engine = load_engine(self.app, self.url)
            elif need_app:
                raise click.UsageError(f"{need_app} needs the Celery app: pass --app")
            else:
                self._engine = bare_engine(self.database_url, migrated)
        if migrated:
            check_schema(self._engine)
        return self._engine


class Group(click.Group):
    """Turns a refusal by celeriac into exit code 1 and one line on stderr."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CeleriacError as exc:
            raise click.ClickException(str(exc)) from exc


def load_engine(spec: str, url: str | None) -> Engine:
    """The engine for ``--app module:attribute`` (attribute: ``app`` if omitted)."""
    module_name, _, attribute = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `celery -A` does
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(
            f"cannot import {module_name!r}: {exc}", param_hint="'--app'"
        ) from exc
    target = getattr(module, attribute or "app", None)
    if isinstance(target, Engine):
        return target
    if not isinstance(target, Celery):
        raise click.BadParameter(
            f"{spec!r} is neither a Celery app nor a celeriac Engine",
            param_hint="'--app'",
        )
    for value in vars(module).values():
        if isinstance(value, Engine) and value.app is target:
            return value
    return Engine(target, url)


def bare_engine(url: str, migrated: bool) -> Engine:
    """An engine on an app with no tasks: enough to read and to change states.

    Its broker is in memory, so it cannot reach workers: nothing it would
    publish or revoke leaves this process.
    """
    if migrated and url.startswith("sqlite") and not sqlite_file_exists(url):
        raise click.ClickException(f"no database at {url}; run `celeriac db upgrade`")
    app = Celery("celeriac-cli", broker="memory://localhost/", set_as_current=False)
    return Engine(app, url, auto_migrate=False)


def sqlite_file_exists(url: str) -> bool:
    path = sa.engine.make_url(url).database
    return not path or path == ":memory:" or Path(path).exists()


def check_schema(engine: Engine) -> None:
    if migrate.current(engine.db) is None:
        raise click.ClickException(
            f"the database {safe_url(engine.database_url)} has no celeriac schema; "
            "run `celeriac db upgrade`"
        )


def safe_url(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)
