"""Every key of a workflow's rows starts with its workflow id.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05

So that the tables can be distributed on ``workflow_id`` (Citus), with a
workflow's rows on one shard, every primary, unique and foreign key of
``celeriac_nodes``, ``celeriac_edges``, ``celeriac_attempts``,
``celeriac_events`` and ``celeriac_transitions`` contains it:

- nodes: ``(workflow_id, id)``, with ``id`` alone still indexed (a frozen
  task id is refused if any workflow has it); edges: ``(workflow_id,
  parent_id, child_id)``, looked up by child through ``(workflow_id,
  child_id)``;
- attempts: ``(workflow_id, node_id, number)``, which was already unique,
  replaces the serial ``id`` (no statement read it), and references its
  node by ``(workflow_id, node_id)``;
- events: ``(workflow_id, id)``; ``id`` alone stays indexed (pruning old
  events; numbering new ones on SQLite, which has no sequence for a key of
  two columns);
- transitions: ``(workflow_id, token)``.

The indexes the new keys begin with are dropped. The reporting views join
nodes by ``(workflow_id, id)`` (same columns, same meaning). On SQLite the
tables are rebuilt (batch mode), with the views dropped around them.
"""

from collections.abc import Sequence
from importlib import import_module

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_VIEWS = import_module("celeriac.migrations.versions.0002_progress_and_reporting_views")
#: How the reporting views join a node, before and after.
_JOINS = {
    "ON n.id = a.node_id": "ON n.workflow_id = a.workflow_id AND n.id = a.node_id",
    "ON n.id = e.node_id": "ON n.workflow_id = e.workflow_id AND n.id = e.node_id",
}
_ATTEMPT_NODE = "fk_celeriac_attempts_node_id_celeriac_nodes"
_ATTEMPT_WORKFLOW_NODE = "fk_celeriac_attempts_workflow_id_celeriac_nodes"


def upgrade() -> None:
    _drop_views()
    with op.batch_alter_table("celeriac_attempts") as batch:
        batch.drop_constraint(_ATTEMPT_NODE, type_="foreignkey")
        batch.drop_constraint("uq_celeriac_attempts_node_number", type_="unique")
        batch.drop_index("ix_celeriac_attempts_workflow_id")
        batch.drop_constraint("pk_celeriac_attempts", type_="primary")
        batch.drop_column("id")
        batch.create_primary_key(
            "pk_celeriac_attempts", ["workflow_id", "node_id", "number"]
        )
    _rekey("celeriac_nodes", ["workflow_id", "id"])
    op.create_index("ix_celeriac_nodes_id", "celeriac_nodes", ["id"])
    with op.batch_alter_table("celeriac_attempts") as batch:
        batch.create_foreign_key(
            _ATTEMPT_WORKFLOW_NODE,
            "celeriac_nodes",
            ["workflow_id", "node_id"],
            ["workflow_id", "id"],
            ondelete="CASCADE",
        )
    _rekey("celeriac_edges", ["workflow_id", "parent_id", "child_id"])
    with op.batch_alter_table("celeriac_edges") as batch:
        batch.drop_index("ix_celeriac_edges_workflow_id")
        batch.drop_index("ix_celeriac_edges_child_id")
        # covering (parent_id too): SQLite otherwise reads a node's parents
        # through the primary key's workflow_id prefix, a scan per node
        batch.create_index(
            "ix_celeriac_edges_workflow_child",
            ["workflow_id", "child_id", "parent_id"],
        )
    # (on SQLite the copy keeps each event's number, the old rowid)
    _rekey("celeriac_events", ["workflow_id", "id"])
    with op.batch_alter_table("celeriac_events") as batch:
        batch.drop_index("ix_celeriac_events_workflow_event")
        batch.create_index("ix_celeriac_events_id", ["id"])
    _rekey("celeriac_transitions", ["workflow_id", "token"])
    with op.batch_alter_table("celeriac_transitions") as batch:
        batch.drop_index("ix_celeriac_transitions_workflow_id")
    _create_views(_JOINS)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    _drop_views()
    with op.batch_alter_table("celeriac_transitions") as batch:
        batch.create_index("ix_celeriac_transitions_workflow_id", ["workflow_id"])
    _rekey("celeriac_transitions", ["token"])
    with op.batch_alter_table("celeriac_events") as batch:
        batch.drop_index("ix_celeriac_events_id")
        batch.create_index("ix_celeriac_events_workflow_event", ["workflow_id", "id"])
    _rekey("celeriac_events", ["id"])
    with op.batch_alter_table("celeriac_edges") as batch:
        batch.drop_index("ix_celeriac_edges_workflow_child")
        batch.create_index("ix_celeriac_edges_child_id", ["child_id"])
        batch.create_index("ix_celeriac_edges_workflow_id", ["workflow_id"])
    _rekey("celeriac_edges", ["parent_id", "child_id"])
    with op.batch_alter_table("celeriac_attempts") as batch:
        batch.drop_constraint(_ATTEMPT_WORKFLOW_NODE, type_="foreignkey")
    op.drop_index("ix_celeriac_nodes_id", table_name="celeriac_nodes")
    _rekey("celeriac_nodes", ["id"])
    with op.batch_alter_table("celeriac_attempts") as batch:
        batch.drop_constraint("pk_celeriac_attempts", type_="primary")
    if dialect == "sqlite":
        with op.batch_alter_table("celeriac_attempts") as batch:
            batch.add_column(sa.Column("id", sa.Integer(), nullable=True))
            batch.create_primary_key("pk_celeriac_attempts", ["id"])
    else:
        op.execute("ALTER TABLE celeriac_attempts ADD COLUMN id SERIAL")
        op.create_primary_key("pk_celeriac_attempts", "celeriac_attempts", ["id"])
    with op.batch_alter_table("celeriac_attempts") as batch:
        batch.create_index("ix_celeriac_attempts_workflow_id", ["workflow_id"])
        batch.create_unique_constraint(
            "uq_celeriac_attempts_node_number", ["node_id", "number"]
        )
        batch.create_foreign_key(
            _ATTEMPT_NODE, "celeriac_nodes", ["node_id"], ["id"], ondelete="CASCADE"
        )
    _create_views({})


def _rekey(table: str, columns: list[str]) -> None:
    """Give ``table`` the primary key ``columns`` (same name)."""
    name = f"pk_{table}"
    with op.batch_alter_table(table) as batch:
        batch.drop_constraint(name, type_="primary")
        batch.create_primary_key(name, columns)


def _drop_views() -> None:
    for name, _, _ in reversed(_VIEWS.VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")


def _create_views(joins: dict[str, str]) -> None:
    """The reporting views of revision 0002, joining nodes as ``joins`` says."""
    dialect = op.get_bind().dialect.name
    for name, definition, comment in _VIEWS.VIEWS:
        for before, after in joins.items():
            definition = definition.replace(before, after)
        op.execute(_VIEWS._render(definition, dialect))
        if dialect == "postgresql":
            quoted = comment.replace("'", "''")
            op.execute(f"COMMENT ON VIEW {name} IS '{quoted}'")
