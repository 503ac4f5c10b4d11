"""Bearer-token auth: the token lives in <data>/token (mode 0600); every path but /health needs it."""
from __future__ import annotations

import hmac
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any, Awaitable, Callable

OPEN_PATHS = frozenset({"/health"})

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def ensure_token(path: Path, renew: bool = False) -> str:
    """Return the token in `path`, writing a new random one (mode 0600) when there is none.

    A token file that others could read (group/other permission bits) is replaced, since it
    may have leaked. Keeping the token across restarts lets a remote client keep its setting.
    """
    if not renew and path.is_file():
        info = path.stat()
        token = path.read_text().strip()
        if not info.st_mode & (stat.S_IRWXG | stat.S_IRWXO) and info.st_uid == getattr(os, "getuid", lambda: info.st_uid)() and len(token) >= 32:
            return token
    token = secrets.token_urlsafe(32)
    partial = path.with_name(path.name + ".new")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    os.replace(partial, path)
    return token


class BearerAuth:
    """ASGI middleware: 401 JSON for any request but OPEN_PATHS without the right bearer token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, credentials = given.strip().partition(b" ")
        # the scheme is case-insensitive (RFC 9110, 11.1); the token itself is compared exactly
        if scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(b" \t"), self._token):
            return await self.app(scope, receive, send)
        detail = ("wrong bearer token" if given else
                  "missing bearer token: send 'Authorization: Bearer <token>' (the token is in the file"
                  " 'token' in the backend's data folder)")
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b"Bearer")]})
        await send({"type": "http.response.body", "body": body})
