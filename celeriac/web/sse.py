"""Live updates: server-sent events carrying HTML fragments for htmx to swap.

Each stream looks at the database and sends a fragment only when it changed.
On PostgreSQL it looks when a notification says its workflow changed (any
workflow, for the list: ``changes.py``), and every ``safety_poll_interval``
seconds in case one was missed; on SQLite, and while the notifications are
down, every ``poll_interval`` seconds. The DAG is drawn again only when the
workflow's node counts moved: a look at a large workflow costs one grouped
count, not a read of every node.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from celeriac.web import queries
from celeriac.web.changes import Watch
from celeriac.web.context import Console, console, render_text
from celeriac.web.views import graph_view, list_view, summary_view

Snapshot = Callable[[], dict[str, str]]

#: Seconds a stream waits after a notification before it looks: a burst of
#: changes (a busy database) is looked at once, a few times a second at most.
SETTLE = 0.25
#: Seconds between two checks, while a stream waits, that the server goes on.
STOP_CHECK = 1.0


def message(event: str, html: str) -> str:
    """One server-sent event: its name, then its data a line at a time."""
    data = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
    return f"event: {event}\n{data}\n"


async def stream(
    request: Request, snapshot: Snapshot, workflow_id: str | None
) -> AsyncIterator[str]:
    """The events of ``snapshot`` whose fragment changed, until the client goes.

    ``workflow_id``: the workflow whose changes wake the stream; None: any.
    """
    own = console(request)
    sent: dict[str, str] = {}
    yield ": connected\n\n"
    with own.changes.watch(workflow_id) as changed:
        while not own.stopping.is_set() and not await request.is_disconnected():
            changed.clear()  # a change announced from now on: look again
            for event, html in (await run_in_threadpool(snapshot)).items():
                if sent.get(event) != html:
                    sent[event] = html
                    yield message(event, html)
            await _next_look(own, changed)


async def _next_look(own: Console, changed: Watch) -> None:
    """Wait for a change announced, the poll's interval or the server's stop."""
    listening = own.changes.listening
    interval = own.safety_poll_interval if listening else own.poll_interval
    loop = asyncio.get_running_loop()
    until = loop.time() + interval
    while not own.stopping.is_set() and (left := until - loop.time()) > 0:
        if await changed.wait(min(left, STOP_CHECK)):
            await asyncio.sleep(SETTLE)
            return


def list_events(request: Request) -> Response:
    """The list's live region (counts and rows), whenever it changes."""
    engine = console(request).engine
    params = dict(request.query_params)
    # bad input: 422 now, not in the stream
    queries.workflow_filter(params)
    queries.cursor(params)

    def snapshot() -> dict[str, str]:
        values = list_view(engine, params)
        return {"rows": render_text(request, "_list_live.html", **values)}

    return _events(request, snapshot, None)


def workflow_events(request: Request) -> Response:
    """A workflow's header, and its DAG when a node changed state."""
    engine = console(request).engine
    workflow = engine.workflow(request.path_params["workflow_id"])
    expand = queries.flag(request.query_params, "expand")
    drawn: dict[str, object] = {}

    def snapshot() -> dict[str, str]:
        found = {
            "summary": render_text(request, "_summary.html", **summary_view(workflow))
        }
        # a retry can end with the same counts: the workflow's row moved
        counts = (workflow.node_counts(), found["summary"])
        if drawn.get("counts") != counts:
            drawn["counts"] = counts
            drawn["graph"] = render_text(
                request, "_graph.html", **graph_view(workflow, expand)
            )
        found["graph"] = str(drawn["graph"])
        return found

    return _events(request, snapshot, workflow.id)


def _events(request: Request, snapshot: Snapshot, workflow_id: str | None) -> Response:
    return StreamingResponse(
        stream(request, snapshot, workflow_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def routes() -> list[Route]:
    """The event streams' routes."""
    return [
        Route("/events/list", list_events),
        Route("/events/workflows/{workflow_id}", workflow_events),
    ]
