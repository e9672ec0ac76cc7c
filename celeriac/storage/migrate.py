"""Alembic, driven from code: bring a database to the newest revision."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

#: The Alembic environment shipped in the package (celeriac/migrations).
SCRIPT_LOCATION = str(Path(__file__).resolve().parent.parent / "migrations")


def alembic_config(db: sa.Engine) -> Config:
    """The packaged Alembic configuration, bound to ``db``."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["db"] = db
    return config


def upgrade(db: sa.Engine, revision: str = "head") -> None:
    """Upgrade the schema of ``db`` to ``revision``."""
    command.upgrade(alembic_config(db), revision)


def downgrade(db: sa.Engine, revision: str) -> None:
    """Downgrade the schema of ``db`` to ``revision``."""
    command.downgrade(alembic_config(db), revision)


def current(db: sa.Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with db.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head() -> str | None:
    """The newest revision shipped with this version of celeriac."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    return ScriptDirectory.from_config(config).get_current_head()
