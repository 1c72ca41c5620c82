"""What every fake provider server shares: cutting a response on purpose, and running a
Starlette app on 127.0.0.1 in a background thread for the length of a test."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence

import uvicorn
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send


class StreamCut(Exception):
    """Raised inside the server to drop a connection mid-body on purpose."""


class RawResponse(Response):
    """Sends ``parts`` as separate body frames, and drops the connection instead of ending."""

    def __init__(
        self,
        parts: Sequence[bytes],
        *,
        status_code: int,
        headers: Mapping[str, str],
        cut: bool,
    ) -> None:
        super().__init__(status_code=status_code)
        self.raw_headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in headers.items()
        ]
        self._parts = list(parts)
        self._cut = cut

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        for part in self._parts:
            await send({"type": "http.response.body", "body": part, "more_body": True})
        if self._cut:
            # uvicorn closes the transport when the app fails after the response started.
            raise StreamCut("connection cut by the script")
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class _DropStreamCuts(logging.Filter):
    """Keeps uvicorn from logging a traceback for connections the script cuts on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], StreamCut))


class _Server(uvicorn.Server):
    """A uvicorn server that tells another thread when it is listening."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.listening.set()


@contextlib.contextmanager
def serve_app(app: ASGIApp, *, name: str, start_timeout: float = 10.0) -> Iterator[int]:
    """Serve ``app`` on 127.0.0.1 on a free port (yielded) in a background thread.

    The socket is made here with an explicit TCP protocol: asyncio turns Nagle's algorithm off
    only for sockets it knows to be TCP, and without that every answer waits ~40 ms.
    """
    error_logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(existing, _DropStreamCuts) for existing in error_logger.filters):
        error_logger.addFilter(_DropStreamCuts())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # binding here, not in uvicorn, gives the port without a race
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    server = _Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)
    thread.start()
    try:
        if not server.listening.wait(start_timeout) or not thread.is_alive():
            raise RuntimeError(f"{name} did not start")
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
