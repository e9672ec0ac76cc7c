"""Which workflows a listing shows: filters, newest-first pages, counts.

Pages are keyset pages: the next one starts below the last row shown, by
``(created_at, id)``, so page 1,000 costs what page 1 does however many
workflows are stored (``ix_celeriac_workflows_created_at_id``), where an
``OFFSET`` would read every row it skips.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from celeriac.records import WorkflowCursor, WorkflowFilter
from celeriac.states import NodeState
from celeriac.storage.schema import nodes, workflows


def conditions(where: WorkflowFilter) -> list[sa.ColumnElement[bool]]:
    """The SQL conditions of ``where``."""
    found: list[sa.ColumnElement[bool]] = []
    if where.state:
        found.append(workflows.c.state == where.state)
    if where.name:
        found.append(workflows.c.name == where.name)
    if where.key is not None:
        found.append(workflows.c.submit_key == where.key)
    if where.created_after is not None:
        found.append(workflows.c.created_at >= where.created_after)
    if where.created_before is not None:
        found.append(workflows.c.created_at < where.created_before)
    if where.id_prefix:
        found.append(workflows.c.id.startswith(where.id_prefix, autoescape=True))
    if where.failed_node:
        failed = sa.select(nodes.c.id).where(
            nodes.c.workflow_id == workflows.c.id, nodes.c.state == NodeState.FAILED
        )
        found.append(failed.exists())
    return found


def page_query(
    columns: tuple[sa.Column[Any], ...],
    where: WorkflowFilter,
    limit: int,
    after: WorkflowCursor | None = None,
) -> sa.Select[Any]:
    """``columns`` of the newest ``limit`` workflows matching, below ``after``."""
    query = (
        sa.select(*columns)
        .where(*conditions(where))
        .order_by(workflows.c.created_at.desc(), workflows.c.id.desc())
        .limit(limit)
    )
    if after is not None:
        # the first bound alone is what the index serves; the second breaks ties
        query = query.where(
            workflows.c.created_at <= after.created_at,
            sa.or_(
                workflows.c.created_at < after.created_at,
                workflows.c.id < after.workflow_id,
            ),
        )
    return query


def count_states(conn: sa.Connection, where: WorkflowFilter) -> dict[str, int]:
    """How many workflows matching ``where`` (in any state) are in each state."""
    query = (
        sa.select(workflows.c.state, sa.func.count())
        .where(*conditions(where.without_state()))
        .group_by(workflows.c.state)
    )
    return {state: count for state, count in conn.execute(query)}


def matching_ids(conn: sa.Connection, where: WorkflowFilter, limit: int) -> list[str]:
    """The ids of at most ``limit`` workflows matching ``where``, newest first."""
    return list(conn.execute(page_query((workflows.c.id,), where, limit)).scalars())
