"""The migrations build exactly ``storage/schema.py``, both ways, on both dialects."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from celeriac.storage import connect, migrate
from celeriac.storage.schema import metadata
from tests.notifications import notifications, write_event


@pytest.fixture
def db(empty_database_url: str) -> Iterator[sa.Engine]:
    db = connect(empty_database_url)
    yield db
    db.dispose()


def schema_diff(db: sa.Engine) -> list[object]:
    """What ``alembic check`` would report: the database against the schema."""
    with db.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def celeriac_objects(db: sa.Engine) -> list[str]:
    inspector = sa.inspect(db)
    names = inspector.get_table_names() + inspector.get_view_names()
    names += routines(db)
    return sorted(name for name in names if name.startswith("celeriac_"))


def routines(db: sa.Engine) -> list[str]:
    """PostgreSQL's functions and triggers (none on SQLite)."""
    if db.dialect.name != "postgresql":
        return []
    with db.connect() as conn:
        return list(
            conn.exec_driver_sql(
                "SELECT proname FROM pg_proc UNION ALL "
                "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
            ).scalars()
        )


def test_upgrade_to_head_builds_exactly_the_schema(db):
    assert celeriac_objects(db) == []
    migrate.upgrade(db)
    assert migrate.current(db) == migrate.head()
    assert schema_diff(db) == []


def test_downgrade_to_base_removes_everything_and_upgrade_rebuilds_it(db):
    migrate.upgrade(db)
    tables = celeriac_objects(db)
    assert set(metadata.tables) <= set(tables)

    migrate.downgrade(db, "base")
    assert celeriac_objects(db) == []
    assert migrate.current(db) is None

    migrate.upgrade(db)
    assert celeriac_objects(db) == tables
    assert migrate.current(db) == migrate.head()
    assert schema_diff(db) == []


def test_upgrade_twice_changes_nothing(db):
    migrate.upgrade(db)
    migrate.upgrade(db)
    assert migrate.current(db) == migrate.head()
    assert schema_diff(db) == []


def test_storage_imports_without_celery():
    code = (
        "import sys, celeriac.storage, celeriac.storage.migrate\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'celery')\n"
        "print(','.join(loaded))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "", f"celeriac.storage imported {done.stdout}"


@pytest.mark.postgres
def test_0012_adds_the_notify_trigger_and_its_downgrade_drops_it(empty_postgres_url):
    notify = {"celeriac_notify_changes", "celeriac_events_notify"}
    db = connect(empty_postgres_url)
    try:
        migrate.upgrade(db, "0011")
        assert not notify & set(routines(db))
        migrate.upgrade(db, "0012")
        assert notify <= set(routines(db))
        migrate.downgrade(db, "0011")
        assert not notify & set(routines(db))
    finally:
        db.dispose()


@pytest.mark.postgres
def test_0015_notifies_only_while_a_lease_is_live_and_its_downgrade_always(
    empty_postgres_url,
):
    db = connect(empty_postgres_url)
    try:
        migrate.upgrade(db, "0014")
        with notifications(empty_postgres_url, lease_seconds=None) as heard:
            write_event(db, "0014")
            assert heard("0014") == ["0014"]
            migrate.upgrade(db, "0015")
            write_event(db, "0015 without a lease")
            with notifications(empty_postgres_url):
                write_event(db, "0015 with a lease")
            assert heard("0015 with a lease") == ["0015 with a lease"]
            migrate.downgrade(db, "0014")
            write_event(db, "0014 again")
            assert heard("0014 again") == ["0014 again"]
    finally:
        db.dispose()
