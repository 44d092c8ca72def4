"""Who may ask the query API what: the FastAPI side of :mod:`jobprov.query.tokens`, and a Host allow-list.

- :func:`require_scope` is the dependency a route declares: ``dependencies=[Depends(require_scope("write"))]``.
  With no token configured, reads are open (the API then listens on loopback only) and every write route
  answers 401; with tokens, every ``/api/`` route needs one (401 without a valid token, 403 when its scope is
  too narrow).
- :class:`HostAllowList` answers 400 to a request whose ``Host`` is not localhost, 127.0.0.1, [::1] or a
  configured name, so a page on another site cannot read a local API through DNS rebinding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import HTTPException, Request
from starlette.responses import PlainTextResponse

from jobprov.query.tokens import LOOPBACK_NAMES, SCOPES, Tokens, grants


def require_scope(scope: str) -> Callable[..., None]:
    """A FastAPI dependency: the request must carry ``Authorization: Bearer TOKEN`` with ``scope`` (a read route
    is open when no token is configured; a write route never is). 401 without a valid token, 403 with one whose
    scope is too narrow. The tokens are the app's (``app.state.tokens``)."""
    if scope not in SCOPES:
        raise ValueError(f"scope {scope!r}: expected one of {', '.join(SCOPES)}")

    def dependency(request: Request) -> None:
        tokens: Tokens = request.app.state.tokens
        if not tokens and scope == "read":
            return
        challenge = {"WWW-Authenticate": "Bearer"}
        if not tokens:
            raise HTTPException(401, "write routes need a token and none is configured (api.tokens_file)", challenge)
        kind, _, presented = request.headers.get("authorization", "").partition(" ")
        if kind.lower() != "bearer" or not presented.strip():
            raise HTTPException(401, "a token is required: Authorization: Bearer TOKEN", challenge)
        have = tokens.scope_of(presented.strip())
        if have is None:
            raise HTTPException(401, "the token is not valid", challenge)
        if not grants(have, scope):
            raise HTTPException(403, f"the token's scope is {have}; this needs {scope}")

    return dependency


def host_name(header: str) -> str:
    """The name of a Host header, without its port: ``[::1]:8000`` -> ``::1``, ``Example.COM.`` -> ``example.com``."""
    value = header.strip().lower()
    if value.startswith("["):
        name = value[1:].partition("]")[0]
    else:
        name = value.rpartition(":")[0] if value.count(":") == 1 else value
    return name.rstrip(".")


# Probes (a kubelet's Host is the pod's address) may ask these with any Host: they reveal nothing.
OPEN_PATHS = frozenset({"/healthz", "/readyz"})


class HostAllowList:
    """ASGI middleware: 400 unless the Host header names an allowed host (``*`` allows any); the probes'
    paths answer whatever the Host."""

    def __init__(self, app: Any, allowed: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed = {host_name(h) for h in (*LOOPBACK_NAMES, *allowed)}
        self.any = "*" in self.allowed

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and not self.any and scope.get("path") not in OPEN_PATHS:
            raw = dict(scope.get("headers") or []).get(b"host", b"")
            name = host_name(raw.decode("latin-1"))
            if name not in self.allowed:
                response = PlainTextResponse(
                    "unknown Host header: add the name to api.allowed_hosts to serve it", status_code=400
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
