"""The HTTP API under ``/api/v1``: JSON shaped like the CLI's ``--json``.

Errors: 404 for an unknown workflow or node, 409 with the reason for an
action the workflow's state (or the console) does not allow, 422 for input
that cannot be used; each as ``{"error": "…"}``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from celeriac.web import actions, queries
from celeriac.web.context import actor, console
from celeriac.web.csrf import token_ok
from celeriac.web.documents import (
    Json,
    action_document,
    error,
    node_detail_document,
    node_document,
    progress_document,
    workflow_document,
)
from celeriac.web.openapi import document as openapi_document
from celeriac.web.views import node_detail

#: Nodes on one page of ``/workflows/{id}/nodes``, unless ``limit`` says.
NODE_PAGE = 100
MAX_NODE_PAGE = 1000


def list_workflows(request: Request) -> Response:
    """GET /workflows: a page of workflows, the next page's cursor, counts."""
    engine = console(request).engine
    params = request.query_params
    where = queries.workflow_filter(params)
    limit = queries.count(params, "limit", queries.PAGE_SIZE, queries.MAX_PAGE_SIZE)
    records = engine.workflow_page(where, limit + 1, queries.cursor(params))
    after = None
    if len(records) > limit:
        records = records[:limit]
        after = queries.cursor_text(records[-1].created_at, records[-1].id)
    return Json(
        {
            "workflows": [workflow_document(r) for r in records],
            "next": after,
            "counts": engine.count_workflows(where),
        }
    )


def show_workflow(request: Request) -> Response:
    """GET /workflows/{id}: the workflow and its progress."""
    workflow = console(request).engine.workflow(request.path_params["workflow_id"])
    document = workflow_document(workflow.record())
    document["progress"] = progress_document(workflow.progress())
    return Json(document)


def workflow_progress(request: Request) -> Response:
    """GET /workflows/{id}/progress."""
    workflow = console(request).engine.workflow(request.path_params["workflow_id"])
    return Json({"id": workflow.id, **progress_document(workflow.progress())})


def workflow_nodes(request: Request) -> Response:
    """GET /workflows/{id}/nodes: nodes in canvas order, a page at a time."""
    workflow = console(request).engine.workflow(request.path_params["workflow_id"])
    params = request.query_params
    limit = queries.count(params, "limit", NODE_PAGE, MAX_NODE_PAGE)
    after = params.get("after", "-1")
    if not after.lstrip("-").isdigit():
        raise queries.BadInput(f"after: {after!r} is not a node position")
    page, last = workflow.node_page(int(after), limit)
    return Json({"nodes": [node_document(n) for n in page], "next": last})


def show_node(request: Request) -> Response:
    """GET /workflows/{id}/nodes/{node_id}: one node, its arguments, its errbacks."""
    workflow = console(request).engine.workflow(request.path_params["workflow_id"])
    node_id = request.path_params["node_id"]
    detail = node_detail(workflow, node_id)
    if detail is None:
        return error(404, f"workflow {workflow.id} has no node {node_id}")
    return Json(node_detail_document(*detail))


async def body(request: Request) -> dict[str, Any]:
    """The JSON object a POST carries (an empty body is ``{}``)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise queries.BadInput("the body is not JSON") from None
    if not isinstance(value, dict):
        raise queries.BadInput("the body must be a JSON object")
    return value


async def workflow_action(request: Request) -> Response:
    """POST /workflows/{id}/{pause|resume|cancel|retry}."""
    if not token_ok(request, None):
        return error(403, "CSRF token missing or wrong (header X-CSRF-Token)")
    sent = await body(request)
    terminate = sent.get("terminate", False)
    if not isinstance(terminate, bool):
        raise queries.BadInput("terminate must be true or false")
    own = console(request)
    action = request.path_params["action"]

    def run() -> dict[str, Any]:
        workflow = own.engine.workflow(request.path_params["workflow_id"])
        done = actions.act(
            own.engine, workflow.id, action, actor(request), own.options, terminate
        )
        return action_document(workflow.id, workflow.state, done)

    return Json(await run_in_threadpool(run))


async def bulk_action(request: Request) -> Response:
    """POST /bulk/{action}: every workflow matching a filter, or a dry run."""
    if not token_ok(request, None):
        return error(403, "CSRF token missing or wrong (header X-CSRF-Token)")
    sent = await body(request)
    found = sent.get("filter", {})
    if not isinstance(found, dict):
        raise queries.BadInput("filter must be an object of list parameters")
    where = queries.workflow_filter({k: str(v) for k, v in found.items()})
    dry_run = sent.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise queries.BadInput("dry_run must be true or false")
    own = console(request)
    action = request.path_params["action"]
    outcome = await run_in_threadpool(
        actions.bulk, own.engine, action, where, actor(request), own.options, dry_run
    )
    return Json(dataclasses.asdict(outcome))


def openapi(request: Request) -> Response:
    """GET /openapi.json: this API, described."""
    return Json(openapi_document())


def routes() -> list[Route]:
    """The API's routes, to mount under ``/api/v1``."""
    actions_path = "{action:str}"
    return [
        Route("/workflows", list_workflows),
        Route("/workflows/{workflow_id}", show_workflow),
        Route("/workflows/{workflow_id}/progress", workflow_progress),
        Route("/workflows/{workflow_id}/nodes", workflow_nodes),
        Route("/workflows/{workflow_id}/nodes/{node_id}", show_node),
        Route(
            f"/workflows/{{workflow_id}}/{actions_path}",
            workflow_action,
            methods=["POST"],
        ),
        Route(f"/bulk/{actions_path}", bulk_action, methods=["POST"]),
        Route("/openapi.json", openapi),
    ]
