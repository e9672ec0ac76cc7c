"""The one schema source: every table celeriac owns, in SQLAlchemy Core."""

from __future__ import annotations

import sqlalchemy as sa

from celeriac.storage.values import ExactJson, ExactText

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: Values (results, arguments, signatures, metadata): the exact text Celery's
#: JSON serializer writes for them, on every database (``storage/values.py``).
Json = ExactJson()
#: Messages and tracebacks: text kept exactly, NUL characters included.
Message = ExactText()
Timestamp = sa.DateTime(timezone=True)
Id = sa.String(64)
StateName = sa.String(32)
#: The node states recovery looks for (``ix_celeriac_nodes_active``).
ACTIVE_NODES = "state IN ('QUEUED', 'RUNNING', 'RETRYING')"
#: The nodes whose start recovery reads (``ix_celeriac_nodes_started``).
STARTED_NODES = "started_at IS NOT NULL"

# Every primary, unique and foreign key of a table holding a workflow's rows
# starts with ``workflow_id`` (the workflows' own key is their id), so that
# the tables can be distributed on it, a workflow's rows on one shard
# (docs/scaling.md, revision 0010). The one exception is the submit key.

workflows = sa.Table(
    "celeriac_workflows",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("name", sa.String(255), nullable=True, index=True),
    sa.Column("state", StateName, nullable=False, index=True),
    sa.Column("canvas", Json, nullable=False),
    sa.Column("args", Json, nullable=False),
    sa.Column("kwargs", Json, nullable=False),
    sa.Column("metadata", Json, nullable=True),
    #: the idempotency key of ``submit(..., key=...)``: one workflow per key
    sa.Column("submit_key", sa.String(255), nullable=True),
    #: SHA-256 of the stored canvas, args and kwargs, with a submit key: the
    #: key reused with another canvas is refused
    sa.Column("fingerprint", sa.String(64), nullable=True),
    sa.Column("result_node_id", Id, nullable=False),
    sa.Column("result", Json, nullable=True),
    sa.Column("failed_node_id", Id, nullable=True),
    sa.Column("exc_type", sa.String(255), nullable=True),
    sa.Column("exc_message", Message, nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    #: after a failure: "continue" (as Celery) or "stop" (nothing new starts)
    sa.Column("on_failure", sa.String(16), nullable=False, server_default="continue"),
    #: the first failure's exception class ("module:qualname") and its args
    #: (JSON text), from which ``Workflow.get()`` rebuilds it
    sa.Column("exc_class", sa.String(255), nullable=True),
    sa.Column("exc_args", sa.Text, nullable=True),
    #: indexed for purges, which take the longest finished first
    sa.Column("finished_at", Timestamp, nullable=True, index=True),
    sa.Index("uq_celeriac_workflows_submit_key", "submit_key", unique=True),
    # newest first, ties broken by id: the list's keyset pages (revision 0010)
    sa.Index("ix_celeriac_workflows_created_at_id", "created_at", "id"),
)

nodes = sa.Table(
    "celeriac_nodes",
    metadata,
    sa.Column("id", Id, nullable=False),
    sa.Column(
        "workflow_id",
        Id,
        sa.ForeignKey("celeriac_workflows.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("task", sa.String(255), nullable=True),
    sa.Column("label", sa.String(255), nullable=True),
    sa.Column("signature", Json, nullable=True),
    sa.Column("state", StateName, nullable=False),
    #: parents that have not finished yet; the node is ready at 0
    sa.Column("waiting", sa.Integer, nullable=False),
    sa.Column("celery_task_id", Id, nullable=True),
    #: attempts numbered before the current dispatch (Celery's retries restart)
    sa.Column("attempt_base", sa.Integer, nullable=False, server_default="0"),
    #: number of the newest attempt that started
    sa.Column("current_attempt", sa.Integer, nullable=False, server_default="0"),
    sa.Column("result", Json, nullable=True),
    sa.Column("exc_type", sa.String(255), nullable=True),
    sa.Column("exc_message", Message, nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("queued_at", Timestamp, nullable=True),
    #: times recovery published the node again since it was queued
    sa.Column("republished", sa.Integer, nullable=False, server_default="0"),
    sa.Column("started_at", Timestamp, nullable=True),
    sa.Column("finished_at", Timestamp, nullable=True),
    #: what the task body last reported (``celeriac.report_progress``)
    sa.Column("progress_current", sa.Float, nullable=True),
    #: empty while the body does not know how much work there is
    sa.Column("progress_total", sa.Float, nullable=True),
    sa.Column("progress_message", Message, nullable=True),
    sa.Column("progress_at", Timestamp, nullable=True),
    #: the node whose task replaced itself with this one (``Task.replace``)
    sa.Column("replaces", Id, nullable=True),
    sa.PrimaryKeyConstraint("workflow_id", "id", name="pk_celeriac_nodes"),
    # a frozen task id is refused if any workflow has it (``task_ids.py``)
    sa.Index("ix_celeriac_nodes_id", "id"),
    sa.Index("ix_celeriac_nodes_workflow_state", "workflow_id", "state"),
    sa.Index("ix_celeriac_nodes_workflow_position", "workflow_id", "position"),
    # Recovery looks for nodes by state across all workflows: only the few
    # that are not finished are indexed, however long the history grows.
    sa.Index(
        "ix_celeriac_nodes_active",
        "state",
        "queued_at",
        postgresql_where=sa.text(ACTIVE_NODES),
        sqlite_where=sa.text(ACTIVE_NODES),
    ),
    # Recovery reads the nodes that started last, whatever their state now,
    # to tell a backlog from lost messages (revision 0014).
    sa.Index(
        "ix_celeriac_nodes_started",
        "started_at",
        "queued_at",
        postgresql_where=sa.text(STARTED_NODES),
        sqlite_where=sa.text(STARTED_NODES),
    ),
)

edges = sa.Table(
    "celeriac_edges",
    metadata,
    sa.Column(
        "workflow_id",
        Id,
        sa.ForeignKey("celeriac_workflows.id", ondelete="CASCADE"),
        nullable=False,
    ),
    # Node ids, without foreign keys: edges are stored with their nodes in
    # one transaction and deleted with their workflow, and checking two keys
    # per edge took half the time of storing a large canvas (revision 0005).
    sa.Column("parent_id", Id, nullable=False),
    sa.Column("child_id", Id, nullable=False),
    #: order of the parent's result in the child's input list (joins)
    sa.Column("position", sa.Integer, nullable=False),
    #: true: the child is an errback, run when the parent fails
    sa.Column("on_error", sa.Boolean, nullable=False),
    sa.PrimaryKeyConstraint(
        "workflow_id", "parent_id", "child_id", name="pk_celeriac_edges"
    ),
    # covering: a node's parents are read from the index alone (without
    # parent_id in it, SQLite's planner takes the primary key's prefix)
    sa.Index(
        "ix_celeriac_edges_workflow_child", "workflow_id", "child_id", "parent_id"
    ),
)

attempts = sa.Table(
    "celeriac_attempts",
    metadata,
    sa.Column("node_id", Id, nullable=False),
    sa.Column("workflow_id", Id, nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("state", StateName, nullable=False),
    sa.Column("worker", sa.String(255), nullable=True),
    sa.Column("pid", sa.Integer, nullable=True),
    #: the process that runs the attempt (celeriac_workers.id)
    sa.Column("worker_id", Id, nullable=True),
    #: which message started it: "<dispatch base>.<Celery retries>"
    sa.Column("delivery", sa.String(32), nullable=True),
    #: unique per claim: a replayed claim transaction finds its own attempt
    sa.Column("claim_token", sa.String(32), nullable=True),
    sa.Column("started_at", Timestamp, nullable=False),
    sa.Column("finished_at", Timestamp, nullable=True),
    sa.Column("exc_type", sa.String(255), nullable=True),
    sa.Column("exc_message", Message, nullable=True),
    sa.Column("traceback", Message, nullable=True),
    sa.Column("retry_eta", Timestamp, nullable=True),
    sa.PrimaryKeyConstraint(
        "workflow_id", "node_id", "number", name="pk_celeriac_attempts"
    ),
    sa.ForeignKeyConstraint(
        ["workflow_id", "node_id"],
        ["celeriac_nodes.workflow_id", "celeriac_nodes.id"],
        ondelete="CASCADE",
    ),
)

#: One row per worker process that ran a node; its heartbeat is its lease.
workers = sa.Table(
    "celeriac_workers",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("hostname", sa.String(255), nullable=True),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", Timestamp, nullable=False),
    sa.Column("heartbeat_at", Timestamp, nullable=False),
)

events = sa.Table(
    "celeriac_events",
    metadata,
    #: in the order events happened: a sequence on PostgreSQL (the column is
    #: a SERIAL); SQLite has none for a key of two columns, and celeriac
    #: numbers the rows itself there (``event_log.write_events``)
    sa.Column("id", sa.Integer, nullable=False, server_default=sa.FetchedValue()),
    sa.Column("workflow_id", Id, nullable=False),
    #: empty for a change of the workflow's own state
    sa.Column("node_id", Id, nullable=True),
    sa.Column("from_state", StateName, nullable=True),
    sa.Column("to_state", StateName, nullable=False),
    sa.Column("at", Timestamp, nullable=False),
    sa.Column("detail", sa.Text, nullable=True),
    # the key is also a workflow's events in the order they happened (a
    # purge deletes them in slices of that order)
    sa.PrimaryKeyConstraint("workflow_id", "id", name="pk_celeriac_events"),
    # all events in that order: pruning old ones, numbering them on SQLite
    sa.Index("ix_celeriac_events_id", "id"),
)

#: What each pause, resume, cancel and retry did, under a token unique to the
#: call: a transaction replayed after its COMMIT reply was lost finds it.
transitions = sa.Table(
    "celeriac_transitions",
    metadata,
    sa.Column("token", sa.String(32), nullable=False),
    sa.Column(
        "workflow_id",
        Id,
        sa.ForeignKey("celeriac_workflows.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("trigger", sa.String(16), nullable=False),
    sa.Column("from_state", StateName, nullable=False),
    sa.Column("to_state", StateName, nullable=False),
    #: the running tasks a cancel revoked, as JSON text
    sa.Column("revoke", sa.Text, nullable=False),
    sa.Column("at", Timestamp, nullable=False),
    sa.PrimaryKeyConstraint("workflow_id", "token", name="pk_celeriac_transitions"),
)


#: One row per web console listening for changed workflows: its lease, which
#: it renews while it listens. PostgreSQL's trigger on ``celeriac_events``
#: notifies only while a lease is live (revision 0015). Unused on SQLite.
listeners = sa.Table(
    "celeriac_listeners",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("until", Timestamp, nullable=False),
)


def is_current_attempt(attempt: sa.FromClause) -> sa.ColumnElement[bool]:
    """Joins a node's row to ``attempt`` (``attempts`` or an alias): its current one."""
    return sa.and_(
        attempt.c.workflow_id == nodes.c.workflow_id,
        attempt.c.node_id == nodes.c.id,
        attempt.c.number == nodes.c.current_attempt,
    )
