"""What a workflow does after a failure, and how to rebuild its exception.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04

``on_failure`` is the workflow's failure policy: ``continue`` (every node
whose parents succeeded still runs, as in Celery) or ``stop`` (nothing new
starts). ``exc_class`` (``module:qualname``) and ``exc_args`` (JSON) keep the
first failure's exception so that ``Workflow.get()`` can raise it as its own
class. Adding columns with a default does not rebuild a table on SQLite; they
are dropped in place there.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("on_failure", "exc_class", "exc_args")


def upgrade() -> None:
    op.add_column(
        "celeriac_workflows",
        sa.Column(
            "on_failure", sa.String(16), nullable=False, server_default="continue"
        ),
    )
    op.add_column(
        "celeriac_workflows", sa.Column("exc_class", sa.String(255), nullable=True)
    )
    op.add_column("celeriac_workflows", sa.Column("exc_args", sa.Text, nullable=True))


def downgrade() -> None:
    for column in reversed(_COLUMNS):
        if op.get_bind().dialect.name == "sqlite":
            # in place (SQLite 3.35+): batch mode would rebuild the table under
            # the reporting views that read it
            op.execute(f"ALTER TABLE celeriac_workflows DROP COLUMN {column}")
        else:
            op.drop_column("celeriac_workflows", column)
