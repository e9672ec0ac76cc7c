"""What every request handler shares: the engine, the options, the templates."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from celeriac import Engine
from celeriac.web.actions import ACTIONS, Options
from celeriac.web.changes import Changes

_templates = Environment(
    loader=PackageLoader("celeriac.web", "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class Console:
    """One console: the engine it reads, what it may do, how often it looks."""

    engine: Engine
    options: Options
    #: seconds between two looks at the database for live updates, unless
    #: PostgreSQL's notifications wake them
    poll_interval: float = 1.0
    #: seconds between two looks while notifications wake them: in case one
    #: was missed
    safety_poll_interval: float = 10.0
    #: the notifications; the default never listens
    changes: Changes = field(default_factory=lambda: Changes(None))
    #: set when the server shuts down: the live streams end
    stopping: threading.Event = field(default_factory=threading.Event)


def console(request: Request) -> Console:
    """The console serving ``request``."""
    found: Console = request.app.state.console
    return found


def base(request: Request) -> str:
    """The path the console's own paths start with (its mount point and prefix)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def actor(request: Request) -> str:
    """Who asked, as the event records it: ``web:<user>``."""
    return f"web:{request.user.display_name}"


def render_text(request: Request, template: str, **values: Any) -> str:
    """``template`` rendered for ``request``: a page, or a fragment of one."""
    options = console(request).options
    return _templates.get_template(template).render(
        base=base(request),
        csrf=request.state.csrf,
        read_only=options.read_only,
        actions=ACTIONS,
        **values,
    )


def render(
    request: Request, template: str, status: int = 200, **values: Any
) -> HTMLResponse:
    """An HTML answer from ``template``."""
    return HTMLResponse(render_text(request, template, **values), status_code=status)
