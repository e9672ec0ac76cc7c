"""Alembic environment: runs on the connection celeriac hands over."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from celeriac.settings import database_url
from celeriac.storage.database import connect
from celeriac.storage.schema import metadata

config = context.config
target_metadata = metadata


def _run(db: sa.Engine) -> None:
    with db.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=db.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


def run_migrations_online() -> None:
    """Use ``config.attributes['db']``, else $CELERIAC_DATABASE_URL."""
    db = config.attributes.get("db")
    if db is None:
        db = connect(database_url(config.get_main_option("sqlalchemy.url")))
    _run(db)


if context.is_offline_mode():
    raise SystemExit("celeriac migrations run online only")
run_migrations_online()
