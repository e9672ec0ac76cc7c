"""An index on the workflows' creation time.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

``celeriac list`` and ``Store.list_workflows`` order by ``created_at``, newest
first, and filter by age; without an index both read every workflow.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_celeriac_workflows_created_at", "celeriac_workflows", ["created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_celeriac_workflows_created_at", "celeriac_workflows")
