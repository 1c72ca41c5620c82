"""``/mcp`` on the gateway: Streamable HTTP behind the API keys, inside the gateway's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from promptline.core.errors import (
    PermissionDeniedError,
    ServiceUnavailableError,
)
from promptline.core.keys import join_key
from promptline.gateway.mcp_server.protocol import build_server
from promptline.gateway.mcp_server.service import CALLER_SCOPE_KEY, McpService
from promptline.security.auth import Caller

if TYPE_CHECKING:
    from fastapi import FastAPI
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from starlette.types import Message, Receive, Scope, Send

    from promptline.app import App

_log = logging.getLogger("promptline.gateway.mcp")


# -- Streamable HTTP: /mcp on the gateway -----------------------------------------------------


def mount_mcp(api: FastAPI, app: App, *, path: str = "/mcp") -> McpEndpoint:
    """Serve MCP at ``path`` of the gateway ``api``, behind its API keys, for the lifetime
    of ``api``'s lifespan (the SDK's session manager runs inside it)."""
    from starlette.routing import Route

    endpoint = McpEndpoint(app)
    api.router.routes.append(Route(path, endpoint, include_in_schema=False, name="mcp"))
    outer = api.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(asgi: Any) -> AsyncIterator[Any]:
        async with outer(asgi) as state, endpoint.running():
            yield state

    api.router.lifespan_context = lifespan
    return endpoint


class McpEndpoint:
    """The ASGI app at ``/mcp``: checks the caller (API key, Origin), then lets the SDK's
    Streamable HTTP session manager answer, the caller in the request's scope.

    The session manager runs in a task of its own, started by the first request and
    stopped when the gateway's lifespan ends (`running`): its task group must be entered
    and left by one task, and loading the SDK only when MCP is used keeps the gateway's
    start fast. Outside a running lifespan the endpoint answers 503.
    """

    def __init__(self, app: App) -> None:
        self.service = McpService(app)
        self._serving = False
        self._manager: StreamableHTTPSessionManager | None = None
        self._owner: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The endpoint's lifetime (enter it in the ASGI app's lifespan): on exit the MCP
        sessions end and their calls are cancelled."""
        self._serving = True
        try:
            yield
        finally:
            self._serving = False
            owner, self._owner, self._manager = self._owner, None, None
            if owner is not None and self._stop is not None:
                self._stop.set()
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from starlette.requests import HTTPConnection

        from promptline.gateway.deps import authenticate, gateway
        from promptline.gateway.ws.handshake import origin_allowed

        conn = HTTPConnection(scope)
        state = gateway(conn)
        origin = conn.headers.get("origin")
        if origin is not None and not origin_allowed(
            origin, state.app.settings.gateway.allowed_origins, host=conn.headers.get("host")
        ):
            # Browsers send an Origin: a page of another site must not reach a local server.
            raise PermissionDeniedError(
                f"origin not allowed: {origin}", hint="add it to gateway.allowed_origins"
            )
        caller = await authenticate(conn)
        manager = await self._started()
        scope[CALLER_SCOPE_KEY] = caller
        # The SDK ties a (stateful) MCP session to the credential that opened it.
        scope["user"] = _sdk_user(caller)
        if scope.get("method") == "GET":
            # A GET is the client's endless event stream: it ends when the server stops.
            await _stream_until(state.stopping, manager.handle_request, scope, receive, send)
        else:
            await manager.handle_request(scope, receive, send)

    async def _started(self) -> StreamableHTTPSessionManager:
        if not self._serving:
            raise ServiceUnavailableError(
                "the MCP endpoint is not running",
                hint="serve the gateway with its ASGI lifespan on (promptline serve does)",
            )
        if self._manager is not None:
            return self._manager
        async with self._lock:
            if self._manager is None:
                loop = asyncio.get_running_loop()
                ready: asyncio.Future[StreamableHTTPSessionManager] = loop.create_future()
                self._stop = asyncio.Event()
                self._owner = loop.create_task(self._own(ready, self._stop), name="mcp-http")
                try:
                    self._manager = await asyncio.shield(ready)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._owner = None
                    _log.exception("the MCP endpoint could not start")
                    raise ServiceUnavailableError(
                        f"the MCP endpoint could not start: {type(exc).__name__}: {exc}",
                        hint="see the server log",
                    ) from exc
            return self._manager

    async def _own(
        self, ready: asyncio.Future[StreamableHTTPSessionManager], stop: asyncio.Event
    ) -> None:
        try:
            from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

            manager = StreamableHTTPSessionManager(app=build_server(self.service))
            async with manager.run():
                ready.set_result(manager)
                await stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError(exc))
            if not isinstance(exc, Exception):
                raise


def _sdk_user(caller: Caller) -> Any:
    from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
    from mcp.server.auth.provider import AccessToken

    # The SDK lets only the principal that opened an MCP session (client id and subject) use
    # it: a key id (which holds no "/"), or the caller's tenant and user, escaped so that no
    # two callers are one principal.
    subject = join_key(caller.tenant_id, caller.user_id, sep="/")
    key = caller.key_id or subject
    token = AccessToken(token=key, client_id=key, scopes=[], subject=subject)
    return AuthenticatedUser(token)


async def _stream_until(
    stopping: asyncio.Event,
    app: Callable[[Scope, Receive, Send], Awaitable[None]],
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """Serve an endless response with ``app`` until the client leaves or ``stopping`` is
    set: then the response is ended (an empty last chunk, or 503 if it had not begun)."""
    begun = ended = False

    async def tracking_send(message: Message) -> None:
        nonlocal begun, ended
        if message["type"] == "http.response.start":
            begun = True
        elif message["type"] == "http.response.body" and not message.get("more_body"):
            ended = True
        await send(message)

    job = asyncio.ensure_future(app(scope, receive, tracking_send))
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({job, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not job.done():
            job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job
    if ended:
        return
    with contextlib.suppress(OSError, RuntimeError):  # the client may be gone already
        if begun:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        else:
            from starlette.responses import JSONResponse

            from promptline.gateway.errors import error_body

            body = error_body("service_unavailable", "the server is stopping")
            await JSONResponse(body, status_code=503)(scope, receive, send)
