"""Nodes added by ``Task.replace`` name the node they replace.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05

A task that replaces itself adds its replacement's nodes to the workflow
while it runs; each new node keeps, in ``replaces``, the id of the node
whose task replaced itself with it (NULL for the nodes compiled at submit).
Adding a nullable column does not rebuild the table on SQLite, nor does
dropping it there in place.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("celeriac_nodes", sa.Column("replaces", sa.String(64), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # in place (SQLite 3.35+): batch mode would rebuild the table under
        # the reporting views that read it
        op.execute("ALTER TABLE celeriac_nodes DROP COLUMN replaces")
    else:
        op.drop_column("celeriac_nodes", "replaces")
