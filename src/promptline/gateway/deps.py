"""What every endpoint receives: the services, and the authenticated caller."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Depends, Request
from fastapi.params import Depends as DependsParam
from starlette.requests import HTTPConnection

from promptline.core.errors import AuthenticationError, PermissionDeniedError
from promptline.gateway.logs import KEY_ID_SCOPE
from promptline.security.auth import Caller, KeyStore, key_id_of
from promptline.security.members import MemberStore
from promptline.security.scopes import Scope

if TYPE_CHECKING:
    from promptline.app import App
    from promptline.gateway.ratelimit import RateLimiter
    from promptline.security.tokens import TokenService

__all__ = [
    "LOCAL_CALLER",
    "AppDep",
    "CallerDep",
    "Gateway",
    "OwnCredential",
    "RequireScope",
    "caller",
    "check_scope",
    "gateway",
    "needs",
    "own_credential",
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
    tokens: TokenService
    members: MemberStore
    limiter: RateLimiter
    auth: bool = True
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the server begins a graceful stop: endless streams (SSE tails) end then, so
    the stop does not wait for them (clients resume from their last seq)."""


def gateway(conn: HTTPConnection) -> Gateway:
    """The gateway state of the app serving ``conn``."""
    found: Gateway = conn.app.state.gateway
    return found


def token_of(conn: HTTPConnection) -> str | None:
    """The credential of a request: ``Authorization: Bearer`` or ``X-API-Key``."""
    header = conn.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = conn.headers.get("x-api-key")
    if key:
        return key.strip()
    return None


_CALLER_SCOPE = "promptline.auth.caller"


async def authenticate(conn: HTTPConnection, *, token: str | None = None) -> Caller:
    """The caller of ``conn`` (any connection: HTTP or WebSocket), rate limited per key and
    counted against the requests per minute of its user and tenant (``quotas:``).
    The credential is an API key or an access token (a JWT from ``POST /v1/auth/token``):
    ``token`` when given (a WebSocket's subprotocol), else `token_of` the request's headers."""
    from promptline.security.tokens import looks_like_jwt

    state = gateway(conn)
    if not state.auth:
        await state.app.quotas.take_request(LOCAL_CALLER)
        return LOCAL_CALLER
    if token is None:
        token = token_of(conn)
    try:
        if token is not None and looks_like_jwt(token):
            found = await state.tokens.verify(token)
        else:
            found = await state.keys.authenticate(token)
    except AuthenticationError as exc:
        await state.app.audit.failed_login(
            source_of(conn), key_id=key_id_of(token), reason=exc.message
        )
        raise
    conn.scope[KEY_ID_SCOPE] = found.key_id  # for the access line
    state.limiter.take_for(found)
    await state.app.quotas.take_request(found)
    return found


def source_of(conn: HTTPConnection) -> str | None:
    """The address a request comes from (the peer of its connection)."""
    return conn.client.host if conn.client else None


async def audit_change(
    request: Request,
    caller: Caller,
    action: str,
    target: str,
    details: dict[str, Any],
    *,
    outcome: Literal["success", "failure"] = "success",
) -> None:
    """Put a change ``caller`` made through ``request`` in its tenant on the audit trail:
    who (and with which key), from where, to what."""
    await gateway(request).app.audit.record(
        action,
        actor=caller.user_id,
        key_id=caller.key_id,
        tenant_id=caller.tenant_id,
        target=target,
        outcome=outcome,
        source=source_of(request),
        details=details,
    )


async def caller(request: Request) -> Caller:
    """FastAPI dependency: the authenticated caller of an HTTP request (checked once per
    request, however many dependencies ask)."""
    found = request.scope.get(_CALLER_SCOPE)
    if isinstance(found, Caller):
        return found
    found = await authenticate(request)
    request.scope[_CALLER_SCOPE] = found
    return found


def check_scope(found: Caller, scope: Scope) -> None:
    """`PermissionDeniedError` (403) unless ``found``'s role grants ``scope``."""
    if not found.allows(scope):
        raise PermissionDeniedError(
            f"the role {found.role!r} does not allow {scope}",
            hint="use a key of a role that has this scope (see GET /v1/auth/roles)",
            scope=scope,
            role=found.role,
        )


class RequireScope:
    """A route's dependency: the caller, authenticated, whose role grants ``scope``."""

    def __init__(self, scope: Scope) -> None:
        self.scope: Scope = scope

    async def __call__(self, request: Request) -> Caller:
        found = await caller(request)
        check_scope(found, self.scope)
        return found


class OwnCredential:
    """A route's declaration that it needs no scope: it checks a credential of its own (an
    API key to exchange, a refresh token), or answers anyone (health)."""

    async def __call__(self) -> None:
        return None


own_credential = OwnCredential()


def needs(scope: Scope) -> DependsParam:
    """``dependencies=[needs("sessions:read")]``: the scope a route requires."""
    found: DependsParam = Depends(RequireScope(scope))
    return found


def _app(request: Request) -> App:
    return gateway(request).app


CallerDep = Annotated[Caller, Depends(caller)]
"""An endpoint parameter: the caller, authenticated (401 otherwise)."""

AppDep = Annotated["App", Depends(_app)]
"""An endpoint parameter: the services."""
