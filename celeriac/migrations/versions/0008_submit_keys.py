"""Idempotency keys for submit; what each state change did, for its replays.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04

``celeriac_workflows`` gains ``submit_key`` (unique: one workflow per key,
two racing submits included) and ``fingerprint`` (a key reused with another
canvas is refused). ``celeriac_transitions`` keeps what each pause, resume,
cancel and retry did under a token of its own, so that a transaction
replayed after its COMMIT reply was lost returns what the first try did.
Neither way rebuilds a table on SQLite.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "celeriac_workflows", sa.Column("submit_key", sa.String(255), nullable=True)
    )
    op.add_column(
        "celeriac_workflows", sa.Column("fingerprint", sa.String(64), nullable=True)
    )
    op.create_index(
        "uq_celeriac_workflows_submit_key",
        "celeriac_workflows",
        ["submit_key"],
        unique=True,
    )
    op.create_table(
        "celeriac_transitions",
        sa.Column("token", sa.String(32), nullable=False),
        sa.Column("workflow_id", sa.String(64), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("from_state", sa.String(32), nullable=False),
        sa.Column("to_state", sa.String(32), nullable=False),
        sa.Column("revoke", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["celeriac_workflows.id"],
            name="fk_celeriac_transitions_workflow_id_celeriac_workflows",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token", name="pk_celeriac_transitions"),
    )
    op.create_index(
        "ix_celeriac_transitions_workflow_id",
        "celeriac_transitions",
        ["workflow_id"],
    )


def downgrade() -> None:
    op.drop_index(
        "ix_celeriac_transitions_workflow_id", table_name="celeriac_transitions"
    )
    op.drop_table("celeriac_transitions")
    op.drop_index("uq_celeriac_workflows_submit_key", table_name="celeriac_workflows")
    # plain ALTER TABLE … DROP COLUMN (SQLite 3.35+): a batch copy of the
    # table would cascade the drop of the old one to every node
    op.drop_column("celeriac_workflows", "fingerprint")
    op.drop_column("celeriac_workflows", "submit_key")
