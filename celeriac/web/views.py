"""What the pages show, read once for a page and again for each live update."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from celeriac import Engine, Workflow, WorkflowState
from celeriac.states import TERMINAL_WORKFLOW_STATES
from celeriac.web import queries
from celeriac.web.drawing import COLLAPSE_ABOVE, EXPAND_LIMIT, MAX_CLUSTERS, draw

#: Nodes the timeline lists (the first ones, in canvas order).
TIMELINE_NODES = 100


def list_view(engine: Engine, params: Mapping[str, str]) -> dict[str, Any]:
    """The list page's values: one page of workflows, the counts, the links."""
    where = queries.workflow_filter(params)
    limit = queries.count(params, "limit", queries.PAGE_SIZE, queries.MAX_PAGE_SIZE)
    after = queries.cursor(params)
    records = engine.workflow_page(where, limit + 1, after)
    more, records = len(records) > limit, records[:limit]
    filters = queries.filter_query(params)
    next_link = None
    if more:
        last = records[-1]
        cursor = queries.cursor_text(last.created_at, last.id)
        next_link = urlencode({**filters, "after": cursor})
    counts = engine.count_workflows(where)
    page = {name: params[name] for name in ("limit", "after") if params.get(name)}
    return {
        "records": records,
        "counts": [(state, counts.get(state, 0)) for state in WorkflowState],
        "total": sum(counts.values()),
        "filters": filters,
        "query": urlencode(filters),
        # the live stream's: this very page
        "page_query": urlencode({**filters, **page}),
        "next_link": next_link,
        "first_page": after is None,
        "states": list(WorkflowState),
    }


def summary_view(workflow: Workflow) -> dict[str, Any]:
    """The workflow page's header: what changes most often."""
    record = workflow.record()
    progress = workflow.progress()
    return {
        "record": record,
        "progress": progress,
        "finished": record.state in TERMINAL_WORKFLOW_STATES,
    }


def graph_view(workflow: Workflow, expand: bool) -> dict[str, Any]:
    """The DAG's drawing and the timeline of the first nodes."""
    timeline, _ = workflow.node_page(limit=TIMELINE_NODES)
    most = EXPAND_LIMIT if expand else COLLAPSE_ABOVE
    return {
        "drawing": draw(workflow.outline(most, MAX_CLUSTERS)),
        "expand": expand,
        "timeline": timeline,
        "workflow_id": workflow.id,
    }
