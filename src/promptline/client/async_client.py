"""`AsyncPromptLine`: the gateway's REST, SSE and WebSocket APIs as one asyncio client."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from promptline.client.approvals import Approvals
from promptline.client.backoff import Backoff
from promptline.client.catalog import Agents, Models, Tools
from promptline.client.events import Events
from promptline.client.http import DEFAULT_TIMEOUT, HttpTransport
from promptline.client.runs import Runs
from promptline.client.sessions import Sessions
from promptline.client.state import State
from promptline.client.websocket import WebSocketConnection

if TYPE_CHECKING:
    from types import TracebackType

    import httpx

__all__ = ["DEFAULT_URL", "AsyncPromptLine", "websocket_url_of"]

DEFAULT_URL = "http://127.0.0.1:8080"
URL_VARIABLE = "PROMPTLINE_URL"
KEY_VARIABLE = "PROMPTLINE_API_KEY"


class AsyncPromptLine:
    """A client of a PromptLine gateway::

        async with AsyncPromptLine("http://127.0.0.1:8080", api_key="pl_...") as client:
            session = await client.sessions.create()
            run = await client.sessions.send_and_wait(session.id, "hello")
            print(run.output)

    ``base_url`` and ``api_key`` default to ``$PROMPTLINE_URL`` (else ``http://127.0.0.1:8080``)
    and ``$PROMPTLINE_API_KEY``. ``timeout`` bounds each REST call (streams are not bounded);
    ``backoff`` says how live streams reconnect; ``websocket_url`` is for a gateway whose
    WebSocket listens elsewhere (``gateway.websocket_port``). Errors are raised as the
    `promptline.core.errors` class of the gateway's error code (`ClientError` otherwise).
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        backoff: Backoff | None = None,
        websocket_url: str | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = (base_url or os.environ.get(URL_VARIABLE) or DEFAULT_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get(KEY_VARIABLE)
        self.backoff = backoff or Backoff()
        self.websocket_url = websocket_url or websocket_url_of(self.base_url)
        self._headers = dict(headers or {})
        self.http = HttpTransport(
            self.base_url, self.api_key, timeout=timeout, headers=headers, transport=transport
        )
        self.sessions = Sessions(self)
        self.runs = Runs(self)
        self.approvals = Approvals(self)
        self.events = Events(self)
        self.state = State(self)
        self.agents = Agents(self)
        self.tools = Tools(self)
        self.models = Models(self)
        self._websocket: WebSocketConnection | None = None
        self._websocket_lock = asyncio.Lock()

    def connect(self, *, compression: bool = False) -> WebSocketConnection:
        """A new WebSocket connection of its own (``async with client.connect() as ws``); it
        reconnects and resumes its subscriptions after a drop. ``compression`` asks for
        permessage-deflate: less traffic on a slow link, but about 35 KiB more memory on the
        gateway per connection (see docs/benchmarks.md)."""
        return WebSocketConnection(
            self.websocket_url,
            api_key=self.api_key,
            headers=self._headers,
            backoff=self.backoff,
            head=self._head,
            compression=compression,
        )

    async def websocket(self) -> WebSocketConnection:
        """The client's shared WebSocket connection, opened on first use (closed with the
        client)."""
        async with self._websocket_lock:
            if self._websocket is None:
                connection = self.connect()
                await connection.open()
                self._websocket = connection
            return self._websocket

    async def _head(self, session_id: str) -> int:
        return (await self.sessions.get(session_id, history_limit=0)).last_seq

    async def aclose(self) -> None:
        """Close the WebSocket (if opened) and the HTTP connections."""
        connection, self._websocket = self._websocket, None
        if connection is not None:
            await connection.close()
        await self.http.aclose()

    async def __aenter__(self) -> AsyncPromptLine:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncPromptLine {self.base_url}>"


def websocket_url_of(base_url: str) -> str:
    """The control plane's URL on the gateway at ``base_url`` (``ws[s]://…/v1/ws``)."""
    scheme, sep, rest = base_url.partition("://")
    if not sep:
        scheme, rest = "http", base_url
    ws_scheme = {"https": "wss", "wss": "wss"}.get(scheme.lower(), "ws")
    return f"{ws_scheme}://{rest.rstrip('/')}/v1/ws"
