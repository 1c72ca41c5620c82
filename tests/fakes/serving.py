"""What every fake provider server shares: cutting a response on purpose, and running a
Starlette app on 127.0.0.1 in a background thread for the length of a test."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import Generic, TypeVar

import uvicorn
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

EntryT = TypeVar("EntryT")
RecordT = TypeVar("RecordT")


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


class ScriptedFake(Generic[EntryT, RecordT]):
    """What every fake provider keeps: a script of answers (one per request, in order), the
    requests it received, and the requests it holds open on purpose ("hangs").

    All methods are safe to call from the test's thread while the app serves from another.
    A subclass builds its Starlette app, records each request with `_keep`, takes its answer
    with `_next_entry`, and holds a request open with `_hang`.
    """

    def __init__(self) -> None:
        self.base_url = ""  # set while the fake is served
        self._lock = threading.Condition()
        self._script: deque[EntryT] = deque()
        self._requests: list[RecordT] = []
        self._misses = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._hangs: set[asyncio.Future[None]] = set()

    # -- test-facing API

    def script(self, *entries: EntryT) -> None:
        """Queue what the next requests get, in order."""
        with self._lock:
            self._script.extend(entries)

    @property
    def requests(self) -> list[RecordT]:
        """Every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def pending(self) -> int:
        """Script entries not yet used by a request."""
        with self._lock:
            return len(self._script)

    @property
    def misses(self) -> int:
        """Valid requests that arrived with the script empty (each got a server error)."""
        with self._lock:
            return self._misses

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordT]:
        """Block until ``count`` requests were recorded; raises TimeoutError otherwise."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._requests) >= count, timeout):
                raise TimeoutError(f"the fake got {len(self._requests)} of {count} requests")
            return list(self._requests)

    def release_hangs(self) -> None:
        """Let every hanging request finish (with an overload error) so the server can stop."""
        with self._lock:
            loop, hangs = self._loop, list(self._hangs)
        if loop is None:
            return
        for future in hangs:
            with contextlib.suppress(RuntimeError):  # the loop may be closed already
                loop.call_soon_threadsafe(_resolve, future)

    def reset(self) -> None:
        """Forget the script and the recorded requests; release hanging requests."""
        self.release_hangs()
        with self._lock:
            self._script.clear()
            self._requests.clear()
            self._misses = 0

    # -- for the subclass's handlers

    def _keep(self, recorded: RecordT) -> RecordT:
        """Record a request (and the loop serving it, for `release_hangs`)."""
        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._requests.append(recorded)
            self._lock.notify_all()
        return recorded

    def _next_entry(self) -> EntryT | None:
        """The next scripted answer, or None (counted as a miss) when the script is empty."""
        with self._lock:
            if self._script:
                return self._script.popleft()
            self._misses += 1
            return None

    async def _hang(self, request: Request) -> None:
        """Hold the request until the client goes away or `release_hangs` is called."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._hangs.add(future)

        async def disconnected() -> None:
            # After the body is read, the next receive() only returns when the client goes away.
            while (await request.receive())["type"] != "http.disconnect":
                pass

        watcher = asyncio.ensure_future(disconnected())
        try:
            await asyncio.wait({future, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            with self._lock:
                self._hangs.discard(future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
