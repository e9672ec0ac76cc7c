"""Workflows ordered by creation time, then id: keyset pages of the list.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05

The web console and the API list workflows a page at a time, newest first,
each page starting below the last row shown by ``(created_at, id)``: the id
breaks ties between workflows created in the same microsecond. An index on
both columns serves that order and the condition alone, at any depth; it
replaces the index on ``created_at``, which it covers.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_celeriac_workflows_created_at_id",
        "celeriac_workflows",
        ["created_at", "id"],
    )
    op.drop_index("ix_celeriac_workflows_created_at", "celeriac_workflows")


def downgrade() -> None:
    op.create_index(
        "ix_celeriac_workflows_created_at", "celeriac_workflows", ["created_at"]
    )
    op.drop_index("ix_celeriac_workflows_created_at_id", "celeriac_workflows")
