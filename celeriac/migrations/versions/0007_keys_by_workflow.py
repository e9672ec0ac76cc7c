"""Indexes that keep the hot path and purges flat as history grows.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04

Three indexes: the nodes recovery looks for (QUEUED, RUNNING, RETRYING: a
partial index, so finished nodes never enter it); workflows by the time they
finished (purges); and a workflow's events in order (purges delete a large
workflow's events in slices). The last replaces the index on
``celeriac_events.workflow_id`` alone, which it covers. None rebuilds a
table on SQLite.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE_NODES = "state IN ('QUEUED', 'RUNNING', 'RETRYING')"


def upgrade() -> None:
    op.create_index(
        "ix_celeriac_nodes_active",
        "celeriac_nodes",
        ["state", "queued_at"],
        postgresql_where=sa.text(ACTIVE_NODES),
        sqlite_where=sa.text(ACTIVE_NODES),
    )
    op.create_index(
        "ix_celeriac_workflows_finished_at", "celeriac_workflows", ["finished_at"]
    )
    op.create_index(
        "ix_celeriac_events_workflow_event", "celeriac_events", ["workflow_id", "id"]
    )
    op.drop_index("ix_celeriac_events_workflow_id", table_name="celeriac_events")


def downgrade() -> None:
    op.create_index(
        "ix_celeriac_events_workflow_id", "celeriac_events", ["workflow_id"]
    )
    op.drop_index("ix_celeriac_events_workflow_event", table_name="celeriac_events")
    op.drop_index("ix_celeriac_workflows_finished_at", table_name="celeriac_workflows")
    op.drop_index("ix_celeriac_nodes_active", table_name="celeriac_nodes")
