"""Values stored exactly as Celery's serializer carries them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

The value columns (a workflow's canvas, args, kwargs, metadata and result;
a node's signature and result) become TEXT holding the exact text Celery's
JSON serializer writes. JSONB refused NaN, the infinities and NUL characters, and
reordered dict keys; SQLite's JSON columns had numeric affinity, which turned
a result of ``2**70`` into a float. Existing values are kept (as PostgreSQL
writes JSONB out as text). A downgrade turns the text back into JSONB, which
fails, changing nothing, while a stored value holds what JSONB cannot.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Each table's value columns, with whether they are nullable.
VALUE_COLUMNS = {
    "celeriac_workflows": {
        "canvas": False,
        "args": False,
        "kwargs": False,
        "metadata": True,
        "result": True,
    },
    "celeriac_nodes": {"signature": True, "result": True},
}
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    _retype(JSON, sa.Text(), "text")


def downgrade() -> None:
    _retype(sa.Text(), JSON, "jsonb")


def _retype(
    old: sa.types.TypeEngine[Any], new: sa.types.TypeEngine[Any], cast: str
) -> None:
    """Give every value column the type ``new`` (``cast`` on PostgreSQL)."""
    views = _drop_sqlite_views()
    for table, columns in VALUE_COLUMNS.items():
        with op.batch_alter_table(table) as batch:
            for column, nullable in columns.items():
                batch.alter_column(
                    column,
                    type_=new,
                    existing_type=old,
                    existing_nullable=nullable,
                    postgresql_using=f"{column}::{cast}",
                )
    for definition in views:
        op.execute(definition)


def _drop_sqlite_views() -> list[str]:
    """Drop every view on SQLite, returning their definitions in order.

    Batch mode rebuilds a table by renaming a copy into its place, which
    SQLite refuses while a view reads the table (the reporting views do).
    """
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return []
    views = bind.exec_driver_sql(
        "SELECT name, sql FROM sqlite_master WHERE type = 'view' ORDER BY rowid"
    ).all()
    for name, _ in reversed(views):
        op.execute(f'DROP VIEW "{name}"')
    return [definition for _, definition in views]
