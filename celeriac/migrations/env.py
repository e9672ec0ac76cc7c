"""Alembic environment: runs on the connection celeriac hands over."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
        with _sqlite_foreign_keys_off(connection):
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()


@contextmanager
def _sqlite_foreign_keys_off(connection: sa.Connection) -> Iterator[None]:
    """Turn SQLite's foreign keys off while the migrations run.

    Batch mode rebuilds a table by dropping it: with the keys on, that drop
    would delete the rows that reference it (``ON DELETE CASCADE``). The
    pragma works only outside a transaction, so it goes to the driver's
    connection before SQLAlchemy begins one.
    """
    if connection.dialect.name != "sqlite":
        yield
        return
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        connection.rollback()  # nothing after a commit; the pragma needs it
        driver.execute("PRAGMA foreign_keys=ON")


def run_migrations_online() -> None:
    """Use ``config.attributes['db']``, else $CELERIAC_DATABASE_URL."""
    db = config.attributes.get("db")
    if db is None:
        db = connect(database_url(config.get_main_option("sqlalchemy.url")))
    _run(db)


if context.is_offline_mode():
    raise SystemExit("celeriac migrations run online only")
run_migrations_online()
