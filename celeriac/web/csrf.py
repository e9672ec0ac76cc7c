"""CSRF protection: every state-changing request is a POST carrying a token.

Double submit: a random token lives in the ``celeriac_csrf`` cookie
(SameSite=Strict) and must come back with the POST, as the ``csrf_token``
form field or the ``X-CSRF-Token`` header. Another site can make a browser
send the cookie, never read it. Requests with a bearer token need none: a
browser never adds that header by itself.
"""

from __future__ import annotations

import hmac
import secrets
from http.cookies import SimpleCookie

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "celeriac_csrf"
HEADER = "x-csrf-token"
FIELD = "csrf_token"


class CsrfCookie:
    """ASGI middleware: gives each client a token (``request.state.csrf``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the cookie, or make a token and set it on the answer."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = _cookie(scope)
        fresh = token is None
        if token is None:
            token = secrets.token_urlsafe(32)
        scope.setdefault("state", {})["csrf"] = token
        path = scope.get("root_path") or "/"

        async def send_with_cookie(message: Message) -> None:
            if fresh and message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.append(
                    "set-cookie",
                    f"{COOKIE}={token}; Path={path}; SameSite=Strict; HttpOnly",
                )
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def _cookie(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            jar.load(value.decode("latin-1"))
            if COOKIE in jar and jar[COOKIE].value:
                return jar[COOKIE].value
    return None


def token_ok(request: Request, sent: str | None) -> bool:
    """True when the POST may go on: its token matches its cookie (or bearer)."""
    if "bearer" in request.auth.scopes:
        return True
    cookie = request.cookies.get(COOKIE)
    given = sent or request.headers.get(HEADER)
    return bool(cookie and given) and hmac.compare_digest(str(cookie), str(given))
