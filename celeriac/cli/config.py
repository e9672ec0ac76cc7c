"""Where the command line gets its engine: --app, --database-url, the environment."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import click
import sqlalchemy as sa
from celery import Celery

from celeriac import CeleriacError, Engine
from celeriac.cli.connection import parse_url, reach, reason, safe_url
from celeriac.settings import database_url


class Config:
    """The group's options; builds the engine once, when a command needs it.

    ``url_hint`` names where the URL came from, for the usage error of a bad one.
    """

    def __init__(
        self, app: str | None, url: str | None, url_hint: str = "'--database-url'"
    ) -> None:
        self.app = app
        self.url = url
        self.url_hint = url_hint
        self._engine: Engine | None = None

    @property
    def database_url(self) -> str:
        """The URL of the option, the environment or the default; checked."""
        url = database_url(self.url)
        parse_url(url, self.url_hint)
        return url

    def reachable_url(self) -> str:
        """:attr:`database_url`, once a connection to it worked."""
        url = database_url(self.url)
        reach(parse_url(url, self.url_hint))
        return url

    def engine(self, need_app: str | None = None, migrated: bool = True) -> Engine:
        """The app's engine, or one on a bare app when ``need_app`` is not set.

        ``need_app`` names what needs the app, for the usage error;
        ``migrated`` refuses a database without celeriac's schema.
        """
        if self._engine is None:
            if self.app:
                target = load_target(self.app)
                engine = (
                    target
                    if isinstance(target, Engine)
                    else Engine.bound_to(target) or Engine(target, self.database_url)
                )
            elif need_app:
                raise click.UsageError(f"{need_app} needs the Celery app: pass --app")
            else:
                engine = bare_engine(self.database_url, migrated)
            reach(sa.engine.make_url(engine.database_url))
            self._engine = engine
        if migrated:
            check_schema(self._engine)
        return self._engine

    def failure(self, exc: sa.exc.DBAPIError) -> str:
        """One line for a database error that outlasted the store's retries."""
        url = sa.engine.make_url(self._engine.database_url) if self._engine else None
        where = f" at {safe_url(url)}" if url else ""
        return f"the database{where} failed: {reason(exc, url)}"


class Group(click.Group):
    """Shows every error on one line of stderr.

    A refusal by celeriac, or a database that fails mid-command, exits 1;
    bad usage exits 2, with the command whose ``--help`` explains it.
    """

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        with one_line_usage():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with one_line_usage():
                return super().invoke(ctx)
        except CeleriacError as exc:
            raise click.ClickException(str(exc)) from exc
        except sa.exc.DBAPIError as exc:  # also a file that is not a database
            config = ctx.find_object(Config)
            message = config.failure(exc) if config else str(exc).splitlines()[0]
            raise click.ClickException(message) from exc


class UsageLine(click.UsageError):
    """A usage error on one line: the message, then where help is."""

    def show(self, file: IO[Any] | None = None) -> None:
        hint = f" (see '{self.ctx.command_path} --help')" if self.ctx else ""
        click.echo(f"Error: {self.format_message()}{hint}", file=file, err=True)


@contextmanager
def one_line_usage() -> Iterator[None]:
    try:
        yield
    except UsageLine:
        raise
    except click.UsageError as exc:
        raise UsageLine(exc.format_message(), exc.ctx) from exc


def load_target(spec: str) -> Engine | Celery:
    """The Engine for ``--app module:attribute``, or the Celery app if it has none.

    The attribute is ``app`` if omitted; a module's Engine bound to the app wins.
    """
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
    return target


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
    if engine.schema_revision() is None:
        raise click.ClickException(
            f"the database {safe_url(engine.database_url)} has no celeriac schema; "
            "run `celeriac db upgrade`"
        )
