"""The web console and HTTP API: ``pip install 'celeriac[web]'``.

``create_app(engine, ...)`` is an ASGI application (Starlette) to serve with
any ASGI server, or to mount in one's own; ``celeriac web`` serves it with
uvicorn. See docs/web.md.
"""

from celeriac.web.app import create_app

__all__ = ["create_app"]
