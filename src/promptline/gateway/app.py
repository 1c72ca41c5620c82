"""Builds the ASGI app of the gateway over one `App`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

from promptline import __version__
from promptline.gateway.deps import Gateway
from promptline.gateway.errors import install_error_handlers
from promptline.gateway.limits import RequestLimits
from promptline.gateway.ratelimit import RateLimiter
from promptline.security.auth import KeyStore

if TYPE_CHECKING:
    from promptline.app import App

__all__ = ["create_gateway"]

DESCRIPTION = """\
PromptLine's gateway: agents, sessions, runs, approvals, the event log and state over REST
(`/v1`), a JSON-RPC 2.0 control plane over WebSocket (`/v1/ws`), Server-Sent Events for live
streams, and the OpenAI-compatible `POST /v1/chat/completions` and `POST /v1/responses`.

Every call needs an API key: `Authorization: Bearer <key>` (or `X-API-Key`). Errors have one
shape: `{"error": {"code", "message", "details"}}` (OpenAI's on the OpenAI-compatible routes).
Lists are paged with `limit` and `cursor`; a page's `next_cursor` (null on the last page) is
the `cursor` of the next."""


def create_gateway(app: App, *, auth: bool | None = None) -> FastAPI:
    """The ASGI app serving ``app``'s services. ``auth`` overrides ``gateway.auth``.

    The caller owns ``app`` (its lifetime is the server's); the ASGI app holds no other
    resource, so several may serve one `App` (the main port and the WebSocket port).
    """
    from promptline.gateway.routes import ROUTERS

    settings = app.settings.gateway
    api = FastAPI(
        title="PromptLine",
        version=__version__,
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    api.state.gateway = Gateway(
        app=app,
        keys=KeyStore(app.state, clock=app.clock, cache_secs=settings.key_cache_secs),
        limiter=RateLimiter(settings.rate_limit_per_minute),
        auth=settings.auth if auth is None else auth,
    )
    install_error_handlers(api)
    for router in ROUTERS:
        api.include_router(router)
    if app.settings.mcp_server.enabled:
        from promptline.gateway.mcp_server import mount_mcp

        mount_mcp(api, app)  # /mcp, running for the lifetime of the app's lifespan
    api.add_middleware(RequestLimits, max_bytes=settings.max_body_bytes)
    return api
