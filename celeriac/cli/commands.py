"""The ``celeriac`` command line.

The group and its options live here, with ``db upgrade`` and ``demo``; the
read commands (``list``, ``show``, ``watch``, ``graph``: database URL only)
are in ``reading``, the actions (``resume``, ``retry``, ``recover`` and
``cancel --terminate`` need the Celery app: ``--app module:attribute``) in
``actions``, and ``purge`` in ``purging``.

Exit codes: 0 on success, 1 when celeriac refuses (the reason is one line on
stderr), 2 on bad usage.
"""

from __future__ import annotations

import logging
import sys

import click
from click.core import ParameterSource
from rich.markup import escape

from celeriac.cli import actions, purging, reading
from celeriac.cli.config import Config, Group
from celeriac.cli.connection import safe_url
from celeriac.cli.render import console, echo_json, json_option
from celeriac.cli.web import web
from celeriac.demo import run_demo
from celeriac.settings import APP_VARIABLE, DATABASE_URL_VARIABLE


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="celeriac")
@click.option(
    "--app",
    envvar=APP_VARIABLE,
    metavar="MODULE[:ATTR]",
    help="The module that builds the Engine, and the Celery app or Engine in it "
    f"(default attribute: app; ${APP_VARIABLE}).",
)
@click.option(
    "--database-url",
    envvar=DATABASE_URL_VARIABLE,
    metavar="URL",
    help=f"SQLAlchemy URL of celeriac's database (${DATABASE_URL_VARIABLE}; "
    "default: sqlite:///celeriac.db). Ignored when the app module builds "
    "its own Engine.",
)
@click.pass_context
def main(ctx: click.Context, app: str | None, database_url: str | None) -> None:
    """Celeriac: persistent, pausable Celery workflows."""
    # the outcome is one line on stdout or stderr: the engine's log lines
    # (a publish retrying, say) would only repeat it, and Python's last-resort
    # handler prints them to stderr when the app configured no logging
    logging.getLogger("celeriac").addHandler(logging.NullHandler())
    from_environment = (
        ctx.get_parameter_source("database_url") == ParameterSource.ENVIRONMENT
    )
    hint = f"${DATABASE_URL_VARIABLE}" if from_environment else "'--database-url'"
    ctx.obj = Config(app, database_url, hint)


@main.group("db")
def db_group() -> None:
    """Manage celeriac's database schema."""


@db_group.command("upgrade")
@json_option
@click.pass_obj
def db_upgrade(config: Config, as_json: bool) -> None:
    """Bring the schema to the newest revision (Alembic)."""
    engine = config.engine(migrated=False)
    url = escape(safe_url(engine.database_url))
    before = engine.schema_revision()
    engine.migrate()
    after = engine.schema_revision()
    if as_json:
        database = safe_url(engine.database_url)
        echo_json({"database": database, "from": before, "to": after})
    elif before == after:
        console.print(f"{url}: schema already at revision {after}")
    else:
        console.print(f"{url}: schema upgraded {before or 'empty'} -> {after}")


@main.command()
@click.pass_obj
def demo(config: Config) -> None:
    """Run a demo workflow on an embedded worker: pause, resume, result."""
    if config.app:
        raise click.UsageError("demo builds its own app: do not pass --app")
    sys.exit(run_demo(console, config.reachable_url()))


for command in (
    reading.list_command,
    reading.show,
    reading.watch,
    reading.graph,
    actions.pause,
    actions.resume,
    actions.cancel,
    actions.retry,
    actions.recover,
    purging.purge,
    web,
):
    main.add_command(command)
