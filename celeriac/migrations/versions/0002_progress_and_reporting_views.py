"""Node progress columns, and the first SQL reporting views.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

The views are public, read-only and versioned by name (``_v1``): a change of
meaning creates ``_v2`` beside them, never an edit in place. Each is one SQL
constant below; durations are the one thing SQLite and PostgreSQL spell
differently, so they are filled in per dialect from :data:`SECONDS`.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Seconds from ``{start}`` to ``{end}`` (two timestamps), per dialect.
#: SQLite stores UTC timestamps as text: julianday() reads them to the
#: millisecond. NULL when either end is NULL.
SECONDS = {
    "sqlite": "((julianday({end}) - julianday({start})) * 86400.0)",
    "postgresql": "CAST(EXTRACT(EPOCH FROM ({end} - {start})) AS DOUBLE PRECISION)",
}
#: The current time, comparable with stored timestamps, per dialect.
NOW = {"sqlite": "'now'", "postgresql": "CURRENT_TIMESTAMP"}

WORKFLOW_SUMMARY = """
CREATE VIEW celeriac_workflow_summary_v1 AS
SELECT
    w.id AS workflow_id,
    w.name AS name,
    w.state AS state,
    COALESCE(n.tasks_total, 0) AS tasks_total,
    COALESCE(n.tasks_done, 0) AS tasks_done,
    COALESCE(n.tasks_failed, 0) AS tasks_failed,
    COALESCE(n.tasks_running, 0) AS tasks_running,
    w.created_at AS created_at,
    n.started_at AS started_at,
    w.finished_at AS finished_at,
    {workflow_seconds} AS duration_seconds,
    w.updated_at AS updated_at,
    {seconds_in_state} AS seconds_in_state,
    w.failed_node_id AS failed_node_id,
    w.exc_type AS exc_type,
    w.exc_message AS exc_message
FROM celeriac_workflows AS w
LEFT JOIN (
    SELECT
        workflow_id,
        COUNT(*) AS tasks_total,
        SUM(CASE WHEN state IN ('SUCCEEDED', 'SKIPPED', 'CANCELLED')
            THEN 1 ELSE 0 END) AS tasks_done,
        SUM(CASE WHEN state = 'FAILED' THEN 1 ELSE 0 END) AS tasks_failed,
        SUM(CASE WHEN state = 'RUNNING' THEN 1 ELSE 0 END) AS tasks_running,
        MIN(started_at) AS started_at
    FROM celeriac_nodes
    WHERE kind = 'TASK'
    GROUP BY workflow_id
) AS n ON n.workflow_id = w.id
"""

NODE_ATTEMPTS = """
CREATE VIEW celeriac_node_attempts_v1 AS
SELECT
    a.workflow_id AS workflow_id,
    w.name AS workflow_name,
    a.node_id AS node_id,
    n.task AS task,
    n.kind AS node_kind,
    n.label AS label,
    a.number AS attempt_number,
    a.state AS state,
    a.worker AS worker,
    a.pid AS pid,
    a.started_at AS started_at,
    a.finished_at AS finished_at,
    {attempt_seconds} AS duration_seconds,
    a.exc_type AS exc_type,
    a.exc_message AS exc_message,
    a.retry_eta AS retry_eta
FROM celeriac_attempts AS a
JOIN celeriac_nodes AS n ON n.id = a.node_id
JOIN celeriac_workflows AS w ON w.id = a.workflow_id
"""

FAILURES = """
CREATE VIEW celeriac_failures_v1 AS
SELECT
    n.task AS task,
    a.exc_type AS exc_type,
    COUNT(*) AS failed_attempts,
    SUM(CASE WHEN a.state = 'RETRY' THEN 1 ELSE 0 END) AS retried,
    SUM(CASE WHEN a.state = 'FAILED' THEN 1 ELSE 0 END) AS failed_for_good,
    SUM(CASE WHEN a.state = 'LOST' THEN 1 ELSE 0 END) AS lost,
    COUNT(DISTINCT a.node_id) AS nodes,
    COUNT(DISTINCT a.workflow_id) AS workflows,
    MIN(COALESCE(a.finished_at, a.started_at)) AS first_seen,
    MAX(COALESCE(a.finished_at, a.started_at)) AS last_seen
FROM celeriac_attempts AS a
JOIN celeriac_nodes AS n ON n.id = a.node_id
WHERE a.state IN ('FAILED', 'RETRY', 'LOST')
GROUP BY n.task, a.exc_type
"""

EVENTS = """
CREATE VIEW celeriac_events_v1 AS
SELECT
    e.id AS event_id,
    e.workflow_id AS workflow_id,
    w.name AS workflow_name,
    e.node_id AS node_id,
    n.task AS task,
    n.kind AS node_kind,
    e.from_state AS from_state,
    e.to_state AS to_state,
    e.at AS at,
    e.detail AS detail,
    {event_age} AS age_seconds
FROM celeriac_events AS e
LEFT JOIN celeriac_workflows AS w ON w.id = e.workflow_id
LEFT JOIN celeriac_nodes AS n ON n.id = e.node_id
"""

#: (name, definition, PostgreSQL comment) in creation order.
VIEWS = [
    (
        "celeriac_workflow_summary_v1",
        WORKFLOW_SUMMARY,
        "One row per workflow: state, task node counts, times and duration.",
    ),
    (
        "celeriac_node_attempts_v1",
        NODE_ATTEMPTS,
        "One row per attempt of a node: worker, times, duration, exception.",
    ),
    (
        "celeriac_failures_v1",
        FAILURES,
        "Failed and retried attempts by task and exception type.",
    ),
    (
        "celeriac_events_v1",
        EVENTS,
        "The event log, with the workflow's name and the node's task.",
    ),
]


def _render(definition: str, dialect: str) -> str:
    if dialect not in SECONDS:
        raise NotImplementedError(
            f"the reporting views are written for SQLite and PostgreSQL, not {dialect}"
        )
    seconds, now = SECONDS[dialect].format, NOW[dialect]
    return definition.format(
        workflow_seconds=seconds(start="w.created_at", end="w.finished_at"),
        seconds_in_state=seconds(start="w.updated_at", end=now),
        attempt_seconds=seconds(start="a.started_at", end="a.finished_at"),
        event_age=seconds(start="e.at", end=now),
    )


def upgrade() -> None:
    with op.batch_alter_table("celeriac_nodes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("progress_current", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("progress_total", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("progress_message", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("progress_at", sa.DateTime(timezone=True), nullable=True)
        )

    dialect = op.get_bind().dialect.name
    for name, definition, comment in VIEWS:
        op.execute(_render(definition, dialect))
        if dialect == "postgresql":
            quoted = comment.replace("'", "''")
            op.execute(f"COMMENT ON VIEW {name} IS '{quoted}'")


def downgrade() -> None:
    # Views first: SQLite rebuilds celeriac_nodes to drop columns, and a
    # table a view reads cannot be dropped and renamed under it.
    for name, _, _ in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")

    with op.batch_alter_table("celeriac_nodes", schema=None) as batch_op:
        batch_op.drop_column("progress_at")
        batch_op.drop_column("progress_message")
        batch_op.drop_column("progress_total")
        batch_op.drop_column("progress_current")
