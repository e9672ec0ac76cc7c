"""PostgreSQL announces each workflow that changed: NOTIFY celeriac_changes.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05

Every state change of a workflow or a node writes a row of
``celeriac_events`` in the transaction that makes it. A statement-level
trigger on that table sends ``pg_notify('celeriac_changes', workflow_id)``
once per workflow among the rows the statement inserted (a transition
table, read once per statement, never a trigger run per row); PostgreSQL
folds the same payload on the same channel into one notification per
transaction, and delivers it only when the transaction commits. So a cancel
of a million nodes, whose events go in in statements of 5,000 rows, runs the
trigger 200 times and sends one notification. The web console listens on
the channel to update its live pages. Nothing on SQLite, which has no
NOTIFY: the console polls there.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTION = """
CREATE FUNCTION celeriac_notify_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('celeriac_changes', changed.workflow_id)
    FROM (SELECT DISTINCT workflow_id FROM celeriac_new_events) AS changed;
    RETURN NULL;
END
$$
"""

TRIGGER = """
CREATE TRIGGER celeriac_events_notify
AFTER INSERT ON celeriac_events
REFERENCING NEW TABLE AS celeriac_new_events
FOR EACH STATEMENT EXECUTE FUNCTION celeriac_notify_changes()
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FUNCTION)
        op.execute(TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER celeriac_events_notify ON celeriac_events")
        op.execute("DROP FUNCTION celeriac_notify_changes()")
