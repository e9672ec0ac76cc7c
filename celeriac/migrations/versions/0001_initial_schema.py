"""Initial schema: workflows, nodes, edges, attempts and events.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "celeriac_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("workflow_id", sa.String(length=64), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=True),
        sa.Column("from_state", sa.String(length=32), nullable=True),
        sa.Column("to_state", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_celeriac_events")),
    )
    with op.batch_alter_table("celeriac_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_celeriac_events_workflow_id"), ["workflow_id"], unique=False
        )

    op.create_table(
        "celeriac_workflows",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column(
            "canvas",
            sa.JSON().with_variant(
                postgresql.JSONB(astext_type=sa.Text()), "postgresql"
            ),
            nullable=False,
        ),
        sa.Column(
            "args",
            sa.JSON().with_variant(
                postgresql.JSONB(astext_type=sa.Text()), "postgresql"
            ),
            nullable=False,
        ),
        sa.Column(
            "kwargs",
            sa.JSON().with_variant(
                postgresql.JSONB(astext_type=sa.Text()), "postgresql"
            ),
            nullable=False,
        ),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(
                postgresql.JSONB(astext_type=sa.Text()), "postgresql"
            ),
            nullable=True,
        ),
        sa.Column("result_node_id", sa.String(length=64), nullable=False),
        sa.Column(
            "result",
            sa.JSON().with_variant(
                postgresql.JSONB(astext_type=sa.Text()), "postgresql"
            ),
            nullable=True,
        ),
        sa.Column("failed_node_id", sa.String(length=64), nullable=True),
        sa.Column("exc_type", sa.String(length=255), nullable=True),
        sa.Column("exc_message", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_celeriac_workflows")),
    )
    with op.batch_alter_table("celeriac_workflows", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_celeriac_workflows_name"), ["name"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_celeriac_workflows_state"), ["state"], unique=False
        )

    op.create_table(
        "celeriac_nodes",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("workflow_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("task", sa.String(length=255), nullable=True),
        sa.Column("label", sa.String(length=255), nullable=True),
        sa.Column(
            "signature",
            sa.JSON().with_variant(
                postgresql.JSONB(astext_type=sa.Text()), "postgresql"
            ),
            nullable=True,
        ),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("waiting", sa.Integer(), nullable=False),
        sa.Column("celery_task_id", sa.String(length=64), nullable=True),
        sa.Column("attempt_base", sa.Integer(), server_default="0", nullable=False),
        sa.Column("current_attempt", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "result",
            sa.JSON().with_variant(
                postgresql.JSONB(astext_type=sa.Text()), "postgresql"
            ),
            nullable=True,
        ),
        sa.Column("exc_type", sa.String(length=255), nullable=True),
        sa.Column("exc_message", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["celeriac_workflows.id"],
            name=op.f("fk_celeriac_nodes_workflow_id_celeriac_workflows"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_celeriac_nodes")),
    )
    with op.batch_alter_table("celeriac_nodes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_celeriac_nodes_workflow_position",
            ["workflow_id", "position"],
            unique=False,
        )
        batch_op.create_index(
            "ix_celeriac_nodes_workflow_state", ["workflow_id", "state"], unique=False
        )

    op.create_table(
        "celeriac_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("workflow_id", sa.String(length=64), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("worker", sa.String(length=255), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("worker_id", sa.String(length=64), nullable=True),
        sa.Column("delivery", sa.String(length=32), nullable=True),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("exc_type", sa.String(length=255), nullable=True),
        sa.Column("exc_message", sa.Text(), nullable=True),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.Column("retry_eta", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["celeriac_nodes.id"],
            name=op.f("fk_celeriac_attempts_node_id_celeriac_nodes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_celeriac_attempts")),
        sa.UniqueConstraint(
            "node_id", "number", name="uq_celeriac_attempts_node_number"
        ),
    )
    with op.batch_alter_table("celeriac_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_celeriac_attempts_workflow_id"),
            ["workflow_id"],
            unique=False,
        )

    op.create_table(
        "celeriac_workers",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_celeriac_workers")),
    )
    op.create_table(
        "celeriac_edges",
        sa.Column("workflow_id", sa.String(length=64), nullable=False),
        sa.Column("parent_id", sa.String(length=64), nullable=False),
        sa.Column("child_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("on_error", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["child_id"],
            ["celeriac_nodes.id"],
            name=op.f("fk_celeriac_edges_child_id_celeriac_nodes"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["celeriac_nodes.id"],
            name=op.f("fk_celeriac_edges_parent_id_celeriac_nodes"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["celeriac_workflows.id"],
            name=op.f("fk_celeriac_edges_workflow_id_celeriac_workflows"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "parent_id", "child_id", name=op.f("pk_celeriac_edges")
        ),
    )
    with op.batch_alter_table("celeriac_edges", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_celeriac_edges_child_id"), ["child_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_celeriac_edges_workflow_id"), ["workflow_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("celeriac_edges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_celeriac_edges_workflow_id"))
        batch_op.drop_index(batch_op.f("ix_celeriac_edges_child_id"))

    op.drop_table("celeriac_edges")
    op.drop_table("celeriac_workers")
    with op.batch_alter_table("celeriac_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_celeriac_attempts_workflow_id"))

    op.drop_table("celeriac_attempts")
    with op.batch_alter_table("celeriac_nodes", schema=None) as batch_op:
        batch_op.drop_index("ix_celeriac_nodes_workflow_state")
        batch_op.drop_index("ix_celeriac_nodes_workflow_position")

    op.drop_table("celeriac_nodes")
    with op.batch_alter_table("celeriac_workflows", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_celeriac_workflows_state"))
        batch_op.drop_index(batch_op.f("ix_celeriac_workflows_name"))

    op.drop_table("celeriac_workflows")
    with op.batch_alter_table("celeriac_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_celeriac_events_workflow_id"))

    op.drop_table("celeriac_events")
