"""What every endpoint receives: the services, and the authenticated caller."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from promptline.core.errors import AuthenticationError
from promptline.gateway.logs import KEY_ID_SCOPE
from promptline.security.auth import Caller, KeyStore, key_id_of

if TYPE_CHECKING:
    from promptline.app import App
    from promptline.gateway.ratelimit import RateLimiter

__all__ = [
    "LOCAL_CALLER",
    "AppDep",
    "CallerDep",
    "Gateway",
    "caller",
    "gateway",
    "source_of",
    "token_of",
]

LOCAL_CALLER = Caller(user_id="local", tenant_id="default", role="admin")
"""Who every request is when authentication is off (loopback only)."""


@dataclass
class Gateway:
    """The gateway's own state, kept on the ASGI app (``api.state.gateway``)."""

    app: App
    keys: KeyStore
    limiter: RateLimiter
    auth: bool = True
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the server begins a graceful stop: endless streams (SSE tails) end then, so
    the stop does not wait for them (clients resume from their last seq)."""


def gateway(conn: HTTPConnection) -> Gateway:
    """The gateway state of the app serving ``conn``."""
    found: Gateway = conn.app.state.gateway
    return found


def token_of(conn: HTTPConnection, *, query: bool = False) -> str | None:
    """The API key of a request: ``Authorization: Bearer``, ``X-API-Key``, or (browsers'
    WebSocket handshakes only) the ``token`` query parameter."""
    header = conn.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = conn.headers.get("x-api-key")
    if key:
        return key.strip()
    if query:
        return conn.query_params.get("token")
    return None


async def authenticate(conn: HTTPConnection, *, query: bool = False) -> Caller:
    """The caller of ``conn`` (any connection: HTTP or WebSocket), rate limited per key."""
    state = gateway(conn)
    if not state.auth:
        return LOCAL_CALLER
    token = token_of(conn, query=query)
    try:
        found = await state.keys.authenticate(token)
    except AuthenticationError as exc:
        await state.app.audit.failed_login(
            source_of(conn), key_id=key_id_of(token), reason=exc.message
        )
        raise
    conn.scope[KEY_ID_SCOPE] = found.key_id  # for the access line
    state.limiter.take_for(found)
    return found


def source_of(conn: HTTPConnection) -> str | None:
    """The address a request comes from (the peer of its connection)."""
    return conn.client.host if conn.client else None


async def caller(request: Request) -> Caller:
    """FastAPI dependency: the authenticated caller of an HTTP request."""
    return await authenticate(request)


def _app(request: Request) -> App:
    return gateway(request).app


CallerDep = Annotated[Caller, Depends(caller)]
"""An endpoint parameter: the caller, authenticated (401 otherwise)."""

AppDep = Annotated["App", Depends(_app)]
"""An endpoint parameter: the services."""
