"""Keys and indexes led by workflow_id; retention.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04

Placeholder: changes nothing yet;
the scale change (issue 10) fills it in.
"""

from collections.abc import Sequence

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
