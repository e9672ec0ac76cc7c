"""PostgreSQL notifies changed workflows only while a console listens.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06

Revision 0012's trigger sent ``pg_notify('celeriac_changes', …)`` from
every transaction that wrote an event, whether or not anything listened;
a transaction that notified takes PostgreSQL's one notification-queue lock
as it commits. 12,000 transactions of one event each, from 4 connections,
on a durable PostgreSQL (2 cores): 3.39 s and 2.87 s of PostgreSQL's CPU
with 0012's trigger, 2.94 s and 2.43 s with this one and no console open
(medians of 4).

A web console now holds a lease while it listens: a row of
``celeriac_listeners`` whose ``until`` it moves forward as it goes. The
trigger's function notifies only while some lease is live. The table is
created on SQLite too (one schema on both dialects), where nothing uses it:
SQLite has no NOTIFY.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOTIFY = """
    PERFORM pg_notify('celeriac_changes', changed.workflow_id)
    FROM (SELECT DISTINCT workflow_id FROM celeriac_new_events) AS changed;
"""

#: Notify only while a console's lease is live.
WHILE_LISTENED = f"""
    IF EXISTS (SELECT 1 FROM celeriac_listeners WHERE until > now()) THEN
        {NOTIFY}
    END IF;
"""


def notify_function(body: str) -> str:
    """Revision 0012's trigger function, with ``body`` as what it does."""
    return f"""
CREATE OR REPLACE FUNCTION celeriac_notify_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
{body}
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "celeriac_listeners",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_celeriac_listeners"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(notify_function(WHILE_LISTENED))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(notify_function(NOTIFY))
    op.drop_table("celeriac_listeners")
