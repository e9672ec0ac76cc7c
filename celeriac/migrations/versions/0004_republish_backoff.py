"""How many times recovery published a queued node again.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Recovery publishes a QUEUED node again once its message is overdue; a node
published again ``k`` times waits ``2**k`` times as long before the next
time, so that messages only waiting in a long queue are not sent over and
over. Adding a column with a default does not rebuild the table on SQLite,
nor does dropping it there in place.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "celeriac_nodes",
        sa.Column("republished", sa.Integer, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # in place (SQLite 3.35+): batch mode would rebuild the table under
        # the reporting views that read it
        op.execute("ALTER TABLE celeriac_nodes DROP COLUMN republished")
    else:
        op.drop_column("celeriac_nodes", "republished")
