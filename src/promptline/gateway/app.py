"""Builds the ASGI app of the gateway over one `App`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from promptline import __version__
from promptline.gateway.deps import Gateway
from promptline.gateway.errors import install_error_handlers
from promptline.gateway.headers import SecurityHeaders, page_csp
from promptline.gateway.limits import RequestLimits
from promptline.gateway.logs import AccessLog
from promptline.gateway.ratelimit import RateLimiter
from promptline.security.auth import KeyStore
from promptline.security.jwt import SigningKeys
from promptline.security.members import MemberStore
from promptline.security.tokens import TokenService

if TYPE_CHECKING:
    from promptline.app import App

__all__ = ["DOCS_ASSETS", "SWAGGER_UI_DIR", "create_gateway", "token_service"]

SWAGGER_UI_DIR = Path(__file__).parent / "static" / "swagger-ui"
"""Swagger UI's files, shipped in the package: `/docs` works without the internet."""
DOCS_ASSETS = "/docs/assets"

DESCRIPTION = """\
PromptLine's gateway: agents, sessions, runs, approvals, the event log and state over REST
(`/v1`), a JSON-RPC 2.0 control plane over WebSocket (`/v1/ws`), Server-Sent Events for live
streams, and the OpenAI-compatible `POST /v1/chat/completions` and `POST /v1/responses`.

Every call needs an API key or an access token (`POST /v1/auth/token`): `Authorization:
Bearer <key or token>` (or `X-API-Key`); a role's scopes say which calls it may make. Errors
have one shape: `{"error": {"code", "message", "details"}}` (OpenAI's on the
OpenAI-compatible routes). Lists are paged with `limit` and `cursor`; a page's `next_cursor`
(null on the last page) is the `cursor` of the next."""


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
        docs_url=None,  # FastAPI's page loads Swagger UI from a CDN; ours from the package
        redoc_url=None,
    )
    keys = KeyStore(app.state, clock=app.clock, cache_secs=settings.key_cache_secs)
    members = MemberStore(app.state, clock=app.clock, cache_secs=settings.key_cache_secs)
    api.state.gateway = Gateway(
        app=app,
        keys=keys,
        tokens=token_service(app, keys, members),
        members=members,
        limiter=RateLimiter(settings.rate_limit_per_minute),
        auth=settings.auth if auth is None else auth,
    )
    install_error_handlers(api)
    for router in ROUTERS:
        api.include_router(router)
    if app.settings.mcp_server.enabled:
        from promptline.gateway.mcp_server import mount_mcp

        mount_mcp(api, app)  # /mcp, running for the lifetime of the app's lifespan
    from promptline.gateway.routes.openai_compat import ChatCompletionsFastPath

    # Innermost: behind the limits, the headers and the access line, like the route itself.
    api.add_middleware(ChatCompletionsFastPath)
    api.add_middleware(RequestLimits, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        _allow_cross_origin(api, settings.cors_origins)
    _add_docs(api)
    # Every response, the refusals of the limits too, carries the security headers.
    api.add_middleware(SecurityHeaders)
    # Added last, so outermost: a request refused by the limits has its access line too.
    api.add_middleware(AccessLog)
    return api


CORS_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID", "X-API-Key"]
"""The request headers a page of an allowed origin may send (``gateway.cors_origins``)."""


def _allow_cross_origin(api: FastAPI, origins: list[str]) -> None:
    """Let pages of ``origins`` call the API from a browser: preflights answered, the
    ``Access-Control-Allow-Origin`` of an allowed origin on its answers, and nothing for any
    other origin. No cookies are involved (credentials travel in headers), so credentials
    mode stays off and ``*`` stays a plain wildcard."""
    from starlette.middleware.cors import CORSMiddleware

    api.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=CORS_HEADERS,
        expose_headers=["Retry-After", "Location"],
        allow_credentials=False,
        max_age=600,
    )


def token_service(app: App, keys: KeyStore, members: MemberStore | None = None) -> TokenService:
    """The access and refresh tokens of ``app`` (``security.tokens``), signed with the keys
    of its home (made on first use)."""
    tokens = app.settings.security.tokens
    return TokenService(
        app.state,
        keys,
        SigningKeys(tokens.signing_keys_file, clock=app.clock),
        issuer=tokens.issuer,
        audience=tokens.audience,
        access_ttl_secs=tokens.access_ttl_secs,
        refresh_ttl_secs=tokens.refresh_ttl_secs,
        clock=app.clock,
        cache_secs=app.settings.gateway.key_cache_secs,
        members=members,
    )


def _add_docs(api: FastAPI) -> None:
    """``/docs``: Swagger UI over ``/openapi.json``, its files served from the package."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    api.mount(DOCS_ASSETS, StaticFiles(directory=SWAGGER_UI_DIR), name="docs-assets")

    @api.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        assets = root + DOCS_ASSETS
        page = get_swagger_ui_html(
            openapi_url=root + (api.openapi_url or "/openapi.json"),
            title=f"{api.title} - API",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon-32x32.png",
            # Swagger UI would otherwise send the document to an online validator.
            swagger_ui_parameters={"validatorUrl": None},
        )
        page.headers["content-security-policy"] = page_csp(bytes(page.body).decode())
        return page
