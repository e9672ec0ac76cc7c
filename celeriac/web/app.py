"""The console as an ASGI application: ``create_app(engine, ...)``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from celeriac import AmbiguousWorkflowId, CorruptRecord, Engine, WorkflowNotFound
from celeriac.web import api, pages, sse
from celeriac.web.actions import Options, Refused, UnknownAction
from celeriac.web.auth import Checker, Credentials, refuse
from celeriac.web.changes import Changes
from celeriac.web.context import Console, render
from celeriac.web.csrf import CsrfCookie
from celeriac.web.documents import error
from celeriac.web.queries import BadInput

#: Status of each error the handlers answer for, whatever the page.
_STATUS: dict[type[Exception], int] = {
    WorkflowNotFound: 404,
    UnknownAction: 404,
    AmbiguousWorkflowId: 422,
    BadInput: 422,
    Refused: 409,
    CorruptRecord: 500,
}


def create_app(
    engine: Engine,
    *,
    prefix: str = "",
    read_only: bool = False,
    can_publish: bool = True,
    credentials: Credentials | None = None,
    poll_interval: float = 1.0,
    safety_poll_interval: float = 10.0,
) -> Starlette:
    """The web console and the HTTP API (``/api/v1``) over ``engine``'s database.

    Args:
        engine: The engine whose workflows it shows and acts on.
        prefix: A path to serve everything under (``"/celeriac"``), to mount
            the app beside others.
        read_only: Hide every action and refuse them (409).
        can_publish: False when ``engine``'s app cannot reach the workers'
            broker: resume and retry are refused, as they publish nodes.
        credentials: What each request must present; default: read from
            the environment (``CELERIAC_WEB_TOKEN``, or ``CELERIAC_WEB_USER``
            and ``CELERIAC_WEB_PASSWORD``); none set: no authentication.
        poll_interval: Seconds between two looks at the database for the
            live pages, on SQLite (and on PostgreSQL while its notifications
            cannot be listened to).
        safety_poll_interval: On PostgreSQL, where a notification of each
            change wakes the live pages, seconds between two looks in case
            one was missed.
    """
    own = Console(
        engine,
        Options(read_only, can_publish),
        poll_interval,
        safety_poll_interval,
        Changes.for_url(engine.database_url),
    )

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # Mounted in another app, which runs no lifespan of ours, the first
        # live stream starts listening instead.
        own.changes.start()
        try:
            yield
        finally:
            await own.changes.stop()

    credentials = credentials or Credentials.from_environment()
    routes: list[BaseRoute] = [
        Mount("/api/v1", routes=api.routes()),
        *sse.routes(),
        Mount(
            "/static", StaticFiles(packages=[("celeriac.web", "static")]), name="static"
        ),
        *pages.routes(),
    ]
    if prefix:
        routes = [Mount("/" + prefix.strip("/"), routes=routes)]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(
                AuthenticationMiddleware, backend=Checker(credentials), on_error=refuse
            ),
            Middleware(CsrfCookie),
        ],
        exception_handlers={
            **{kind: _failure for kind in _STATUS},
            HTTPException: _http_failure,
        },
        lifespan=lifespan,
    )
    app.state.console = own
    return app


def _answer(request: Request, status: int, reason: str) -> Response:
    if "/api/" in request.url.path:
        return error(status, reason)
    return render(request, "error.html", status, reason=reason)


async def _failure(request: Request, exc: Exception) -> Response:
    status = next(s for kind, s in _STATUS.items() if isinstance(exc, kind))
    return _answer(request, status, str(exc))


async def _http_failure(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _answer(request, exc.status_code, str(exc.detail))
