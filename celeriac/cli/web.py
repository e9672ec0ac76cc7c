"""``celeriac web``: serve the web console and the HTTP API (uvicorn)."""

from __future__ import annotations

from types import FrameType
from typing import Any

import click

from celeriac.cli.config import Config

#: The port ``celeriac web`` listens on unless told otherwise.
DEFAULT_PORT = 8321


@click.command("web")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Anywhere but loopback needs CELERIAC_WEB_TOKEN, "
    "or CELERIAC_WEB_USER and CELERIAC_WEB_PASSWORD.",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Port to listen on.",
)
@click.option("--prefix", default="", help="Serve everything under this path.")
@click.option("--read-only", is_flag=True, help="Show workflows; allow no action.")
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help="Seconds between two looks at the database for the live pages "
    "(on PostgreSQL: only while its notifications cannot be listened to).",
)
@click.option(
    "--safety-poll-interval",
    type=click.FloatRange(min=0.05),
    default=10.0,
    show_default=True,
    help="On PostgreSQL, seconds between two looks in case a notification was missed.",
)
@click.pass_obj
def web(
    config: Config,
    host: str,
    port: int,
    prefix: str,
    read_only: bool,
    poll_interval: float,
    safety_poll_interval: float,
) -> None:
    """Serve the web console and the HTTP API (/api/v1).

    Resume and retry publish nodes: they need --app. Without it the console
    still shows everything, pauses and cancels.
    """
    try:
        from celeriac.web import create_app
        from celeriac.web.auth import Credentials, check_bind
    except ImportError as exc:
        raise click.ClickException(
            f"the web console needs its extra ({exc}): pip install 'celeriac[web]'"
        ) from exc
    try:
        credentials = Credentials.from_environment()
        check_bind(host, credentials)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    app = create_app(
        config.engine(),
        prefix=prefix,
        read_only=read_only,
        can_publish=bool(config.app),
        credentials=credentials,
        poll_interval=poll_interval,
        safety_poll_interval=safety_poll_interval,
    )
    shown = f"[{host}]" if ":" in host else host
    path = "/" + prefix.strip("/") if prefix.strip("/") else ""
    click.echo(f"celeriac web console: http://{shown}:{port}{path}/  (Ctrl+C stops)")
    serve(app, host, port)


def serve(app: Any, host: str, port: int) -> None:
    """Run ``app`` with uvicorn until Ctrl+C.

    The live pages' streams stay open as long as their pages do: uvicorn
    would wait for them, then cancel them with a traceback. Its exit first
    tells them to end (``Console.stopping``).
    """
    import uvicorn

    stopping = app.state.console.stopping

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            stopping.set()
            super().handle_exit(sig, frame)

    Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).run()
