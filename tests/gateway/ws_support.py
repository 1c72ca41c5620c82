"""Shared pieces of the control-plane tests: `promptline serve` on a real port with scripted
models, the served `App` itself (to read its log and its bus), and JSON-RPC clients built on
the `websockets` library."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websockets
from gateway_support import Keys, live_gateway, make_keys
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

import promptline.app
from promptline.app import App
from promptline.config import load_settings
from promptline.config.settings import Settings
from promptline.gateway.server import ServeInfo

WAIT = 10.0
"""Longest wait for anything the server should do at once (a bound, not a pace)."""

CONFIG = """\
models:
  default: scripted/demo
  providers:
    scripted:
      scripts_dir: "{home}/scripts"
tools:
  file_write: ask
agent:
  default_mode: act
  stream_enabled: true
  workspace: "{home}/workspace"
gateway:
  allowed_origins: ["https://studio.example.com"]
{gateway}"""


def _words(count: int, prefix: str = "word") -> str:
    return " ".join(f"{prefix}{i}" for i in range(count))


SCRIPTS = {
    # Streams 150 words (one llm_delta event each), asks to write a file and waits for the
    # answer, then streams 150 more: a run surely in flight while its first part streams.
    "narrator": [
        {
            "reply": _words(150, "before"),
            "tool_calls": [{"name": "file_write", "arguments": {"path": "a.txt", "content": "a"}}],
        },
        {"reply": _words(150, "after")},
    ],
    # 1,500 words streamed as fast as the log takes them.
    "flood": [{"reply": _words(1500)}],
    # Asks to write a file (file_write is `ask`), so the run waits for a person.
    "writer": [
        {"tool_calls": [{"name": "file_write", "arguments": {"path": "n.txt", "content": "x"}}]},
        {"reply": "Done."},
    ],
}


def ws_settings(home: Path, gateway: str = "") -> Settings:
    """Settings of a home at ``home`` with the scripted models of `SCRIPTS`; ``gateway`` is
    more of the ``gateway:`` section (indented by two spaces)."""
    (home / "scripts").mkdir(parents=True, exist_ok=True)
    (home / "workspace").mkdir(exist_ok=True)
    for name, turns in SCRIPTS.items():
        (home / "scripts" / f"{name}.json").write_text(json.dumps(turns), encoding="utf-8")
    config = home / "config.yaml"
    config.write_text(CONFIG.format(home=home, gateway=gateway), encoding="utf-8")
    return load_settings(config, environ={"PROMPTLINE_HOME": str(home)})


@dataclass
class Served:
    """A gateway on a real port, the `App` it serves, and API keys of the test tenants."""

    app: App
    info: ServeInfo
    keys: Keys

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.info.port}/v1/ws"


@contextlib.asynccontextmanager
async def served(settings: Settings, **options: Any) -> AsyncIterator[Served]:
    """`live_gateway` (that is, `promptline serve`), with a hold on the `App` it builds so
    a test can read the log and the bus the server writes (nothing of it is replaced)."""
    built: list[App] = []
    real = promptline.app.build_app

    @contextlib.asynccontextmanager
    async def keeping(*args: Any, **kwargs: Any) -> AsyncIterator[App]:
        async with real(*args, **kwargs) as app:
            built.append(app)
            yield app

    promptline.app.build_app = keeping  # type: ignore[assignment]
    try:
        async with live_gateway(settings, **options) as info:
            app = built[0]
            yield Served(app=app, info=info, keys=await make_keys(app))
    finally:
        promptline.app.build_app = real


@contextlib.asynccontextmanager
async def alice_on(settings: Settings, *, via: str = "header") -> AsyncIterator[tuple[Served, Rpc]]:
    """`served`, and a client connected with alice's key."""
    async with served(settings) as gw, rpc(gw.url, gw.keys.alice, via=via) as client:
        yield gw, client


class Rpc:
    """A JSON-RPC client on one connection: answers are matched by id, event notifications
    are kept in order until asked for."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self._answers: dict[Any, dict[str, Any]] = {}
        self._next = 0

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a request and return its whole response frame."""
        self._next += 1
        frame: dict[str, Any] = {"jsonrpc": "2.0", "id": self._next, "method": method}
        if params is not None:
            frame["params"] = params
        await self.ws.send(json.dumps(frame))
        return await self.answer(self._next)

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """The result of a request that must succeed."""
        response = await self.request(method, params)
        assert "error" not in response, response
        return response["result"]

    async def error(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The error object of a request that must fail."""
        response = await self.request(method, params)
        assert "error" in response, response
        return dict(response["error"])

    async def answer(self, request_id: Any) -> dict[str, Any]:
        """The response with ``request_id`` (notifications read meanwhile are kept)."""
        while request_id not in self._answers:
            await self._read_one()
        return self._answers.pop(request_id)

    async def next_frame(self) -> Any:
        """The next frame that is not an event notification, whatever it is."""
        while True:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), WAIT))
            if isinstance(frame, dict) and frame.get("method") == "event":
                self.events.append(frame["params"])
                continue
            return frame

    async def next_event(self) -> dict[str, Any]:
        """The next event notification's params (``{subscription, event}``)."""
        while not self.events:
            await self._read_one()
        return self.events.pop(0)

    async def events_until(self, done: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """Events (their ``event`` JSON) up to and including the first for which ``done``."""
        seen = []
        while True:
            event = (await self.next_event())["event"]
            seen.append(event)
            if done(event):
                return seen

    async def _read_one(self) -> None:
        frame = json.loads(await asyncio.wait_for(self.ws.recv(), WAIT))
        if frame.get("method") == "event":
            self.events.append(frame["params"])
        else:
            self._answers[frame.get("id")] = frame


def credentials(key: str | None, via: str = "header") -> tuple[dict[str, str], str]:
    """Headers and query string that carry ``key`` the way ``via`` says (``subprotocol``:
    neither, see `subprotocols`)."""
    if key is None or via == "subprotocol":
        return {}, ""
    if via == "header":
        return {"Authorization": f"Bearer {key}"}, ""
    if via == "x-api-key":
        return {"X-API-Key": key}, ""
    return {}, f"?token={key}"


def subprotocols(key: str | None, via: str) -> list[Subprotocol] | None:
    """What a browser offers to carry ``key`` as a subprotocol (when ``via`` says so)."""
    if key is None or via != "subprotocol":
        return None
    return [Subprotocol("promptline"), Subprotocol(f"promptline.bearer.{key}")]


@contextlib.asynccontextmanager
async def rpc(
    url: str, key: str | None, *, via: str = "header", origin: str | None = None
) -> AsyncIterator[Rpc]:
    """A connected `Rpc` client."""
    headers, query = credentials(key, via)
    async with connect(
        url + query,
        additional_headers=headers,
        subprotocols=subprotocols(key, via),
        origin=origin,  # type: ignore[arg-type]
        open_timeout=WAIT,
        max_size=None,
        # Read whatever arrives: a client that stops reading would not see the server's
        # answer to its close (the closing handshake would wait out its timeout).
        max_queue=None,
    ) as ws:
        yield Rpc(ws)


async def close_code(ws: ClientConnection) -> int | None:
    """Read until the server closes; the code it closed with."""
    with contextlib.suppress(websockets.ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), WAIT)
    await asyncio.wait_for(ws.wait_closed(), WAIT)
    return ws.close_code


async def refused_with(
    url: str, key: str | None, *, via: str = "header", origin: str | None = None
) -> int | None:
    """The close code the server answers a handshake with (None if it let it in)."""
    return (await refusal(url, key, via=via, origin=origin))[0]


async def refusal(
    url: str, key: str | None, *, via: str = "header", origin: str | None = None
) -> tuple[int | None, str | None]:
    """The close code and reason the server answers a handshake with (None if it let it in)."""
    headers, query = credentials(key, via)
    async with connect(
        url + query,
        additional_headers=headers,
        subprotocols=subprotocols(key, via),
        origin=origin,  # type: ignore[arg-type]
        open_timeout=WAIT,
    ) as ws:
        code = await close_code(ws)
        return code, ws.close_reason


def seq_of(event: dict[str, Any]) -> int:
    return int(event["seq"])


def ends(run_id: str) -> Callable[[dict[str, Any]], bool]:
    """True for the event that ends run ``run_id``."""
    endings = {"run_completed", "run_failed", "run_cancelled"}
    return lambda event: event["type"] in endings and event["run_id"] == run_id


@dataclass
class SlowClient:
    """A client that reads nothing until told to: the `websockets` protocol (sans I/O) over
    a socket with a small receive buffer and a small segment size, so the server's socket
    buffers (which grow to megabytes on loopback) stay small and fill quickly."""

    sock: socket.socket
    protocol: ClientProtocol
    frames: list[dict[str, Any]] = field(default_factory=list)
    pings: int = 0

    @classmethod
    async def open(cls, url: str, key: str) -> SlowClient:
        loop = asyncio.get_running_loop()
        uri = parse_uri(url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
        sock.setblocking(False)
        await asyncio.wait_for(loop.sock_connect(sock, (uri.host, uri.port)), WAIT)
        protocol = ClientProtocol(uri, max_size=None)
        request = protocol.connect()
        request.headers["Authorization"] = f"Bearer {key}"
        protocol.send_request(request)
        client = cls(sock, protocol)
        await client._flush()
        while protocol.handshake_exc is None and protocol.state.name == "CONNECTING":
            await client._receive()
        assert protocol.state.name == "OPEN", protocol.handshake_exc
        return client

    async def send(self, frame: dict[str, Any]) -> None:
        self.protocol.send_text(json.dumps(frame).encode())
        await self._flush()

    async def read_until(self, condition: Callable[[], bool]) -> None:
        """Read (answering pings) until ``condition()`` holds."""
        while not condition():
            assert await self._receive(), "the server closed the connection"

    async def read_until_closed(self) -> int | None:
        """Read everything the server sent, to its close frame; the close code."""
        while self.protocol.close_rcvd is None:
            if not await self._receive():
                break
        return self.protocol.close_rcvd.code if self.protocol.close_rcvd else None

    def close(self) -> None:
        self.sock.close()

    async def _receive(self) -> bool:
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self.sock, 65536), WAIT)
        if not data:
            self.protocol.receive_eof()
            return False
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            opcode = getattr(event, "opcode", None)
            if opcode == Opcode.TEXT:
                self.frames.append(json.loads(event.data))
            elif opcode == Opcode.PING:
                self.pings += 1  # the protocol queues the pong, sent below
        await self._flush()
        return True

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        for chunk in self.protocol.data_to_send():
            if chunk:
                await loop.sock_sendall(self.sock, chunk)


async def wait_until(condition: Callable[[], Any], what: str) -> None:
    """Poll ``condition`` (sync or async) until true, for at most `WAIT` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise AssertionError(f"still not true after {WAIT} s: {what}")
        await asyncio.sleep(0.02)
