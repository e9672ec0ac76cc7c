"""Who may use the console: nobody but this machine, unless credentials are set.

Bound to a loopback address the console needs no credentials (whoever can
reach it can already read the database). Anywhere else it refuses to start
until ``CELERIAC_WEB_TOKEN`` (``Authorization: Bearer …``) or
``CELERIAC_WEB_USER`` and ``CELERIAC_WEB_PASSWORD`` (HTTP basic auth) are
set; then every request must carry them.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
    SimpleUser,
)
from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse, Response

TOKEN_VARIABLE = "CELERIAC_WEB_TOKEN"
USER_VARIABLE = "CELERIAC_WEB_USER"
PASSWORD_VARIABLE = "CELERIAC_WEB_PASSWORD"


@dataclass(frozen=True)
class Credentials:
    """What a request must present; both empty: no authentication."""

    token: str | None = None
    user: str | None = None
    password: str | None = None

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> Credentials:
        """The credentials set in the environment (see the module's docstring)."""
        env = os.environ if env is None else env
        user, password = env.get(USER_VARIABLE), env.get(PASSWORD_VARIABLE)
        if bool(user) != bool(password):
            raise ValueError(
                f"set both {USER_VARIABLE} and {PASSWORD_VARIABLE}, or neither"
            )
        return cls(env.get(TOKEN_VARIABLE) or None, user or None, password or None)

    @property
    def configured(self) -> bool:
        """True when requests must authenticate."""
        return bool(self.token or self.user)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and the loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, credentials: Credentials) -> None:
    """Refuse (``ValueError``) to serve ``host`` off loopback with no credentials."""
    if not is_loopback(host) and not credentials.configured:
        raise ValueError(
            f"refusing to listen on {host} without authentication: set "
            f"{TOKEN_VARIABLE}, or {USER_VARIABLE} and {PASSWORD_VARIABLE}, "
            "or listen on 127.0.0.1"
        )


class Checker(AuthenticationBackend):
    """Starlette's authentication backend over :class:`Credentials`."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials

    async def authenticate(
        self, conn: HTTPConnection
    ) -> tuple[AuthCredentials, BaseUser] | None:
        """The user a request authenticates as; ``AuthenticationError`` if none."""
        if not self.credentials.configured:
            host = conn.client.host if conn.client else "local"
            return AuthCredentials(["act"]), SimpleUser(f"local:{host}")
        scheme, _, value = conn.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and _same(value, self.credentials.token):
            return AuthCredentials(["act", "bearer"]), SimpleUser("token")
        if scheme.lower() == "basic" and self.credentials.user:
            user, password = _basic(value)
            if _same(user, self.credentials.user) and _same(
                password, self.credentials.password
            ):
                return AuthCredentials(["act"]), SimpleUser(user)
        raise AuthenticationError("authentication required")


def _same(given: str, expected: str | None) -> bool:
    return expected is not None and hmac.compare_digest(given, expected)


def _basic(value: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    user, _, password = decoded.partition(":")
    return user, password


def refuse(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    """401, asking the browser for basic auth."""
    return PlainTextResponse(
        str(exc),
        status_code=401,
        headers={"WWW-Authenticate": 'Basic realm="celeriac"'},
    )
