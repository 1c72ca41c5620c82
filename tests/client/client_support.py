"""Shared pieces of the client tests: settings whose scripted models stream, call a tool
that asks for an approval, and a gateway serving them with the test tenants' keys."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
from gateway_support import Keys, live_gateway, make_keys

from promptline.app import build_app
from promptline.client import AsyncPromptLine
from promptline.config import load_settings
from promptline.config.settings import Settings
from promptline.core.events import Event
from promptline.gateway.server import ServeInfo

WRITER = """\
- tool_calls:
    - name: file_write
      arguments: {path: note.txt, content: "written once approved"}
- reply: "Done: note.txt is written."
"""
"""``scripted/writer``: its first turn calls ``file_write``, which asks for an approval."""

SLEEPER = """\
- reply: "Taking a nap."
  tool_calls:
    - name: shell_execute
      arguments: {command: "echo started; sleep 120; echo woke up"}
- reply: "Awake again."
"""
"""``scripted/sleeper``: runs a shell command that takes two minutes (allowed without asking)."""

CONFIG = """\
models:
  default: scripted/demo
  providers:
    scripted:
      scripts_dir: {scripts}
agent:
  default_mode: act
  stream_enabled: true
tools:
  file_write: ask
  shell_execute: allow
security:
  require_approval: false
"""

T = TypeVar("T")


def client_settings(home: Path, extra: str = "") -> Settings:
    """Settings of a home with ``scripted/demo`` (streams its answer), ``scripted/writer``
    (waits for an approval) and ``scripted/sleeper`` (busy for long); runs still going when a
    test ends stop at once."""
    scripts = home / "scripts"
    scripts.mkdir(parents=True, exist_ok=True)
    (scripts / "writer.yaml").write_text(WRITER, encoding="utf-8")
    (scripts / "sleeper.yaml").write_text(SLEEPER, encoding="utf-8")
    config = home / "config.yaml"
    config.write_text(CONFIG.format(scripts=scripts) + extra, encoding="utf-8")
    settings = load_settings(config, environ={"PROMPTLINE_HOME": str(home)})
    agent = settings.agent.model_copy(update={"shutdown_timeout_secs": 0.2})
    return settings.model_copy(update={"agent": agent})


@dataclass
class Served:
    """A running gateway: its URL, its keys and what `serve` said when it was ready."""

    url: str
    keys: Keys
    info: ServeInfo
    settings: Settings


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Served]:
    """The test tenants' keys, then `promptline serve` on a free port of 127.0.0.1."""
    async with build_app(settings) as app:
        keys = await make_keys(app)
    async with live_gateway(settings) as info:
        yield Served(f"http://127.0.0.1:{info.port}", keys, info, settings)


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, within: float = 10.0, what: str = "it"
) -> T:
    """Poll ``probe`` until it returns something other than None or False (or fail after
    ``within`` seconds)."""
    deadline = time.monotonic() + within
    while True:
        found = await probe()
        if found is not None and found is not False:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.02)


async def stored(client: AsyncPromptLine, session_id: str) -> list[Event]:
    """The session's whole stream, read back over REST."""
    found: list[Event] = []
    cursor: str | None = None
    while True:
        page = await client.events.list(session_id=session_id, limit=1000, cursor=cursor)
        found += [e for e in page.items if e.stream_name == session_id]
        if not page.next_cursor:
            return found
        cursor = page.next_cursor


class TcpProxy:
    """A loopback TCP proxy in front of the gateway whose connections a test can cut, as a
    network failure would (both sides see the socket die; new connections get through)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.port = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> int:
        """Abort every open connection; how many there were."""
        links = list(self._links)
        self._links.clear()
        for client, upstream in links:
            client.transport.abort()
            upstream.transport.abort()
        return len(links)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        link = (writer, up_writer)
        self._links.add(link)
        pumps = [
            asyncio.ensure_future(_pump(reader, up_writer)),
            asyncio.ensure_future(_pump(up_reader, writer)),
        ]
        for pump in pumps:
            self._tasks.add(pump)
            pump.add_done_callback(self._tasks.discard)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        self._links.discard(link)
        for w in (writer, up_writer):
            w.transport.abort()


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()


class GatewayProcess:
    """``promptline serve`` as a process of its own on a fixed loopback port, for tests that
    stop and restart it (the gateway closes its sockets from its side)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        script = Path(sys.executable).parent / "promptline"
        env = {**os.environ, "PROMPTLINE_HOME": str(self.home)}
        self._process = await asyncio.create_subprocess_exec(
            str(script),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        async with httpx.AsyncClient(base_url=self.url, timeout=1) as probe:

            async def up() -> bool:
                try:
                    return (await probe.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(up, within=30, what="the gateway to start")

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(20):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def __aenter__(self) -> GatewayProcess:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
