"""Nodes by the time they started: where the workers are in the queue.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06

Recovery leaves a QUEUED node alone while it only waits in a backlog: it is
overdue once the workers started a node queued ``recovery_delay`` after it.
Which nodes started last was read from the nodes RUNNING at the moment of
the pass, and when tasks are short there often is none: recovery then took
a long backlog for lost and published it again. The nodes that started
last are read from this index instead, whatever their state now. Only
nodes that started are in it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STARTED = sa.text("started_at IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_celeriac_nodes_started",
        "celeriac_nodes",
        ["started_at", "queued_at"],
        postgresql_where=STARTED,
        sqlite_where=STARTED,
    )


def downgrade() -> None:
    op.drop_index("ix_celeriac_nodes_started", "celeriac_nodes")
