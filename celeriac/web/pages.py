"""The HTML pages: the workflow list, a workflow, a node; the action forms."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from celeriac import Engine, Workflow
from celeriac.web import actions, queries
from celeriac.web.context import actor, base, console, render
from celeriac.web.csrf import FIELD, token_ok
from celeriac.web.views import (
    graph_view,
    list_view,
    node_detail,
    node_view,
    summary_view,
)


def workflow_list(request: Request) -> Response:
    """The list: newest first, filtered by the query string, a page at a time."""
    engine = console(request).engine
    return render(request, "list.html", **list_view(engine, request.query_params))


def resolved(engine: Engine, request: Request) -> Workflow:
    """The workflow the path names (a short id will do)."""
    return engine.workflow(request.path_params["workflow_id"])


def workflow_page(request: Request, message: str = "", status: int = 200) -> Response:
    """A workflow: header, actions, DAG, timeline."""
    engine = console(request).engine
    workflow = resolved(engine, request)
    expand = queries.flag(request.query_params, "expand")
    return render(
        request,
        "workflow.html",
        status,
        message=message,
        **summary_view(workflow),
        **graph_view(workflow, expand),
    )


def node_panel(request: Request) -> Response:
    """One node: task, arguments, result, attempts, errbacks."""
    engine = console(request).engine
    workflow = resolved(engine, request)
    node_id = request.path_params["node_id"]
    detail = node_detail(workflow, node_id)
    if detail is None:
        return render(
            request,
            "error.html",
            404,
            reason=f"workflow {workflow.id} has no node {node_id}",
        )
    return render(
        request,
        "node.html",
        whole_page="hx-request" not in request.headers,
        workflow_id=workflow.id,
        **node_view(detail),
    )


async def workflow_action(request: Request) -> Response:
    """POST a form's action on one workflow, then show the workflow again."""
    form = await request.form()
    if not token_ok(request, _text(form, FIELD)):
        return _forged(request)
    return await run_in_threadpool(_act, request, form)


def _act(request: Request, form: FormData) -> Response:
    own = console(request)
    workflow_id = resolved(own.engine, request).id
    try:
        actions.act(
            own.engine,
            workflow_id,
            request.path_params["action"],
            actor(request),
            own.options,
            terminate=_text(form, "terminate") == "1",
        )
    except actions.Refused as exc:
        if "hx-request" in request.headers:  # into the page's message area
            return render(request, "_message.html", 409, text=str(exc))
        return workflow_page(request, str(exc), 409)
    if "hx-request" in request.headers:  # the live stream shows what changed
        return Response(status_code=204)
    return RedirectResponse(f"{base(request)}/workflows/{workflow_id}", 303)


async def bulk_action(request: Request) -> Response:
    """POST a bulk action: a dry run asks to confirm, the confirmation acts."""
    form = await request.form()
    if not token_ok(request, _text(form, FIELD)):
        return _forged(request)
    return await run_in_threadpool(_bulk, request, form)


def _bulk(request: Request, form: FormData) -> Response:
    own = console(request)
    action = _text(form, "action") or ""
    confirmed = _text(form, "confirm") == "1"
    by = actor(request)
    try:
        if _text(form, "scope") == "selected":
            selected = [str(v) for v in form.getlist("ids")]
            actions.check(action, own.options)
            outcome = (
                actions.act_on_each(own.engine, action, selected, by, own.options)
                if confirmed
                else actions.BulkOutcome(action, True, len(selected))
            )
        else:
            where = queries.workflow_filter({k: str(v) for k, v in form.items()})
            outcome = actions.bulk(
                own.engine, action, where, by, own.options, not confirmed
            )
    except actions.Refused as exc:
        return render(request, "error.html", 409, reason=str(exc))
    fields = [(k, str(v)) for k, v in form.multi_items() if k not in (FIELD, "confirm")]
    return render(request, "bulk.html", outcome=outcome, fields=fields)


def _forged(request: Request) -> Response:
    reason = "the form's CSRF token is missing or wrong: reload the page"
    return render(request, "error.html", 403, reason=reason)


def _text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


def routes() -> list[Route]:
    """The pages' routes."""
    return [
        Route("/", workflow_list, name="list"),
        Route("/workflows/{workflow_id}", workflow_page, name="workflow"),
        Route("/workflows/{workflow_id}/nodes/{node_id}", node_panel, name="node"),
        Route(
            "/workflows/{workflow_id}/{action}",
            workflow_action,
            methods=["POST"],
            name="action",
        ),
        Route("/bulk", bulk_action, methods=["POST"], name="bulk"),
    ]
