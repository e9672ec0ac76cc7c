"""What the pages show, read once for a page and again for each live update."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import urlencode

from celeriac import Engine, Node, Workflow, WorkflowState
from celeriac.states import TERMINAL_WORKFLOW_STATES, NodeState
from celeriac.web import queries
from celeriac.web.drawing import COLLAPSE_ABOVE, EXPAND_LIMIT, MAX_CLUSTERS, draw
from celeriac.web.excerpts import excerpt
from celeriac.web.timeline import TIMELINE_NODES, chart


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
        "chart": chart(timeline, datetime.now(UTC)),
        "workflow_id": workflow.id,
    }


class NodeDetail(NamedTuple):
    """One node, the errbacks guarding it, its signature's args and kwargs."""

    node: Node
    errbacks: list[Node]
    #: None: a node that calls no task (a JOIN)
    arguments: tuple[list[Any], dict[str, Any]] | None


def node_detail(workflow: Workflow, node_id: str) -> NodeDetail | None:
    """What the panel and the API show of one node; None: no such node."""
    found = workflow.node_with_errbacks(node_id)
    if found is None:
        return None
    return NodeDetail(*found, workflow.node_arguments(node_id))


def node_view(detail: NodeDetail) -> dict[str, Any]:
    """The node panel's values: its arguments and result cut to a page's size."""
    node, called = detail.node, detail.arguments
    ran = node.result is not None or node.state == NodeState.SUCCEEDED
    return {
        "node": node,
        "errbacks": detail.errbacks,
        "arguments": None if called is None else tuple(map(excerpt, called)),
        "result": excerpt(node.result) if ran else None,
    }
