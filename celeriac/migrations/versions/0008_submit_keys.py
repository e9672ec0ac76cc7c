"""Idempotency keys for submit.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04

Placeholder: changes nothing yet;
the idempotent-submit change (issues 11 and 14) fills it in.
"""

from collections.abc import Sequence

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
