"""`Http11Transport`: an `HttpTransport` written directly on asyncio streams (HTTP/1.1, a
keep-alive pool per host), for the least cost per call."""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import ssl
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Mapping
from types import TracebackType
from typing import Any, Final, TypeVar

from promptline.core.errors import ConfigError, InvalidInputError
from promptline.models.transport import (
    HttpResponse,
    Stage,
    TimeLimit,
    Timeouts,
    TransportConnectError,
    TransportError,
    TransportTimeout,
    connect_failure,
    timed_out,
)

__all__ = ["MAX_HEAD_BYTES", "Http11Transport"]

MAX_HEAD_BYTES: Final = 64 * 1024
"""Longest answer head (status line and headers), and longest chunk-size or trailer line."""

IDLE_SECONDS: Final = 30.0
"""An idle pooled connection older than this is closed instead of reused: middleboxes drop
quiet connections silently, and a request on one would hang until its timeout."""

_READ_SIZE = 64 * 1024
_WRITE_JOIN_LIMIT = 256 * 1024  # bodies up to this go out in one write with the head
_HEADS_KEPT = 64  # composed request heads remembered per pool
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_KNOWN_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")

_T = TypeVar("_T")

# How an answer's body ends (RFC 9112 section 6.3).
_EMPTY, _LENGTH, _CHUNKED, _UNTIL_CLOSE = 0, 1, 2, 3


class Http11Transport:
    """An `HttpTransport` speaking HTTP/1.1 over asyncio streams, with no HTTP library.

    Each (scheme, host, port) has its own pool of keep-alive connections, at most
    ``max_connections_per_host`` open at once (further requests queue for a free one, first
    come first served); idle connections are reused newest first. A reused connection that the
    server closed before answering is replaced by a fresh one and the request sent again, once.
    https uses ``ssl_context`` (by default `ssl.create_default_context()`). Proxies come from
    ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY``, looked up once per host: https goes through
    a ``CONNECT`` tunnel, plain http is sent to the proxy with the absolute URI. Answers
    compressed with gzip or deflate are decompressed. Pools belong to the event loop that made
    them; `aclose` closes every connection and a later request opens new ones.

    Time limits are a `Timeouts` (connecting, the answer's first byte and a streamed answer's
    silences, the whole call) or one number (see `Timeouts.single`).
    """

    __slots__ = (
        "_deadlines",
        "_loop",
        "_pools",
        "_proxies",
        "_routes",
        "_ssl",
        "max_connections_per_host",
    )

    def __init__(
        self, *, max_connections_per_host: int = 100, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        """Configure the pools; no connection is opened until the first request."""
        if max_connections_per_host < 1:
            raise ConfigError(
                f"max_connections_per_host must be at least 1, got {max_connections_per_host}",
                hint="give the number of parallel connections allowed to one provider, such as 100",
            )
        self.max_connections_per_host = max_connections_per_host
        """How many connections may be open to one (scheme, host, port) at once."""
        self._ssl = ssl_context
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deadlines: _Deadlines | None = None
        self._pools: dict[tuple[str, str, int], _Pool] = {}
        self._routes: dict[str, _Pool] = {}
        self._proxies: dict[tuple[str, str], _Proxy | None] = {}

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeout: float | Timeouts,  # noqa: ASYNC109 - the HttpTransport protocol's shape
    ) -> HttpResponse:
        """Send a request and read the whole answer within ``timeout`` (waiting for a pooled
        connection included); an error status is an answer, not an exception."""
        pool, target = self._route(url)
        head, close_after = pool.head(method, target, headers, body)
        deadlines = pool.deadlines
        task = _current_task()
        cancelling = task.cancelling()
        if not isinstance(timeout, Timeouts):
            timeout = Timeouts.single(timeout, stream=False)
        limits = _Limits(deadlines, timeout, task)
        try:
            answer = await _fetch(pool, limits, method, head, body, close_after)
        except asyncio.CancelledError:
            if deadlines.stop(task) and task.uncancel() <= cancelling:
                raise limits.timed_out(method, url) from None
            raise
        except _Broken as exc:
            deadlines.stop(task)
            raise _connect_error(method, url, exc) from exc.__cause__
        except BaseException:
            deadlines.stop(task)
            raise
        deadlines.stop(task)
        return answer

    def stream(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeout: float | Timeouts,
    ) -> _Stream:
        """Send a request and receive the answer in chunks, within ``timeout`` (one number
        bounds the connection, the first byte and every gap between chunks, not the whole
        answer). Leaving the block before the body's end closes the connection."""
        pool, target = self._route(url)
        head, close_after = pool.head(method, target, headers, body)
        if not isinstance(timeout, Timeouts):
            timeout = Timeouts.single(timeout, stream=True)
        return _Stream(pool, method, url, head, body, timeout, close_after)

    async def aclose(self) -> None:
        """Close every connection, idle or busy (a busy call fails with
        `TransportConnectError`); a later request opens new ones."""
        writers = [writer for pool in self._pools.values() for writer in pool.close_all()]
        for writer in writers:
            with contextlib.suppress(OSError, RuntimeError):  # broken already: closed is enough
                await writer.wait_closed()

    # --- routing --------------------------------------------------------------------------

    def _route(self, url: str) -> tuple[_Pool, str]:
        """The pool for ``url``'s origin and the request target (path and query)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # Connections belong to the loop that opened them; a new loop (a new asyncio.run)
            # starts with empty pools, the old connections having died with their loop.
            self._forget(loop)
        start = url.find("/", url.find("://") + 3)
        prefix, target = (url, "/") if start < 0 else (url[:start], url[start:])
        pool = self._routes.get(prefix)
        if pool is None:
            return self._new_route(url)
        if "#" in target:
            target = target.partition("#")[0]
        if " " in target or not (target.isascii() and target.isprintable()):
            raise _bad_url(url, "its path or query holds spaces, control or non-ASCII characters")
        return pool, target

    def _new_route(self, url: str) -> tuple[_Pool, str]:
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise _bad_url(url, str(exc)) from exc
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise _bad_url(url, "only http:// and https:// URLs are supported")
        host = parts.hostname
        if not host:
            raise _bad_url(url, "it names no host")
        port = port or (443 if scheme == "https" else 80)
        key = (scheme, host, port)
        pool = self._pools.get(key)
        if pool is None:
            authority = f"[{host}]" if ":" in host else host
            if port != (443 if scheme == "https" else 80):
                authority = f"{authority}:{port}"
            proxy = self._proxy_for(scheme, host)
            assert self._deadlines is not None  # made with the loop, in `_route`
            pool = _Pool(self, self._deadlines, scheme, host, port, authority, proxy)
            self._pools[key] = pool
        netloc = parts.netloc
        if url.startswith(f"{parts.scheme}://{netloc}") and "@" not in netloc:
            cut = len(parts.scheme) + 3 + len(netloc)
            if url[cut : cut + 1] in ("", "/"):
                self._routes[url[:cut]] = pool
        target = parts.path or "/"
        if parts.query:
            target = f"{target}?{parts.query}"
        if " " in target or not (target.isascii() and target.isprintable()):
            raise _bad_url(url, "its path or query holds spaces, control or non-ASCII characters")
        return pool, target

    def _proxy_for(self, scheme: str, host: str) -> _Proxy | None:
        """The proxy for ``scheme``://``host`` from HTTPS_PROXY / HTTP_PROXY / NO_PROXY, looked
        up once per scheme and host."""
        key = (scheme, host)
        if key not in self._proxies:
            import urllib.request

            found = urllib.request.getproxies().get(scheme)
            if found and urllib.request.proxy_bypass(host):
                found = None
            self._proxies[key] = _Proxy.parse(found) if found else None
        return self._proxies[key]

    def _forget(self, loop: asyncio.AbstractEventLoop) -> None:
        for pool in self._pools.values():
            pool.close_all()
        self._pools.clear()
        self._routes.clear()
        self._loop = loop
        self._deadlines = _Deadlines(loop)

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS settings for https (made on first use: creating one costs milliseconds)."""
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl


# --- time limits ------------------------------------------------------------------------------


class _Deadlines:
    """Time limits for many calls on one loop timer.

    `asyncio.timeout` costs a timer heap push and a cancellation per call, a large part of a
    local call's cost. Here a call only records its deadline; one timer, set for the earliest
    deadline, cancels the calls whose deadline has passed and sets itself for the next. With
    equal timeouts a new deadline is never the earliest, so the timer seldom moves.
    """

    __slots__ = ("_at", "_due", "_expired", "_handle", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._due: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._at = math.inf

    def now(self) -> float:
        """The loop's clock, which deadlines are on."""
        return self._loop.time()

    def start(self, task: asyncio.Task[Any], when: float) -> None:
        """Cancel ``task`` if it has not called `stop` by ``when`` (the loop's clock; `math.inf`:
        never), replacing the deadline it had."""
        self._due[task] = when
        if when < self._at:
            if self._handle is not None:
                self._handle.cancel()
            self._at = when
            self._handle = self._loop.call_at(when, self._fire)

    def stop(self, task: asyncio.Task[Any]) -> bool:
        """Forget ``task``'s deadline; True if it passed and the task was cancelled for it."""
        if self._due.pop(task, None) is None and task in self._expired:
            self._expired.remove(task)
            return True
        return False

    def _fire(self) -> None:
        self._handle = None
        self._at = math.inf
        # The loop runs a timer up to one clock tick early; count such deadlines as passed.
        now = self._loop.time() + _CLOCK_RESOLUTION
        due = self._due
        for task in [task for task, when in due.items() if when <= now]:
            del due[task]
            self._expired.add(task)
            task.cancel()
        if due:
            self._at = min(due.values())
            if self._at < math.inf:
                self._handle = self._loop.call_at(self._at, self._fire)


_LIMIT_OF: Final[dict[Stage, TimeLimit]] = {
    "connect": "connect",
    "first_byte": "first_byte",
    "body": "first_byte",  # the silence between two pieces of a streamed answer
}


class _Limits:
    """The deadlines of one call as it goes through its stages: each stage's own limit, all
    within the total. It remembers which limit it set, to say which one ran out."""

    __slots__ = ("deadlines", "end", "limit", "seconds", "stage", "task", "timeouts")

    def __init__(self, deadlines: _Deadlines, timeouts: Timeouts, task: asyncio.Task[Any]) -> None:
        self.deadlines = deadlines
        self.timeouts = timeouts
        self.task = task
        self.end = deadlines.now() + timeouts.total
        self.stage: Stage = "connect"
        self.limit: TimeLimit = "total"
        self.seconds = timeouts.total
        # Waiting for a pooled connection is bounded by the total alone.
        deadlines.start(task, self.end)

    def arm(self, stage: Stage, seconds: float | None) -> None:
        """From now on the call waits for ``stage``, for at most ``seconds`` (None: until the
        end of the total)."""
        self.stage = stage
        if seconds is not None:
            at = self.deadlines.now() + seconds
            if at <= self.end:
                self.limit = _LIMIT_OF[stage]
                self.seconds = seconds
                self.deadlines.start(self.task, at)
                return
        self.limit = "total"
        self.seconds = self.timeouts.total
        self.deadlines.start(self.task, self.end)

    def timed_out(self, method: str, url: str) -> TransportTimeout:
        """The error of the limit that ran out."""
        return timed_out(method, url, self.limit, self.stage, self.seconds)


_CLOCK_RESOLUTION = time.get_clock_info("monotonic").resolution


def _current_task() -> asyncio.Task[Any]:
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("Http11Transport must be used from an asyncio task")
    return task


# --- connections and pools ------------------------------------------------------------------


class _Reader(asyncio.StreamReader):
    """A `StreamReader` that can tell whether unread bytes are waiting."""

    def buffered(self) -> int:
        """How many received bytes are not read yet."""
        return len(self._buffer)  # type: ignore[attr-defined]


class _Conn:
    """One pool slot and the connection in it (replaced in place when it goes stale)."""

    __slots__ = ("idle_since", "reader", "reused", "shut", "writer")

    def __init__(self, reader: _Reader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.reused = False
        self.idle_since = 0.0
        self.shut = False  # closed by `aclose` while busy: its call fails, and is not retried

    def fit(self, now: float) -> bool:
        """Whether an idle connection can carry another request: not closed by the server, no
        unsolicited bytes waiting (such as a 408 sent before closing), not idle too long."""
        reader = self.reader
        return (
            not reader.at_eof()
            and reader.exception() is None
            and reader.buffered() == 0
            and not self.writer.transport.is_closing()
            and now - self.idle_since < IDLE_SECONDS
        )

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # its loop is closed, and the connection with it
            self.writer.close()


class _Proxy:
    """A forward proxy from the environment."""

    __slots__ = ("auth", "host", "port", "url")

    def __init__(self, url: str, host: str, port: int, auth: str | None) -> None:
        self.url = url
        self.host = host
        self.port = port
        self.auth = auth

    @classmethod
    def parse(cls, url: str) -> _Proxy:
        import base64
        from urllib.parse import unquote, urlsplit

        if "://" not in url:
            url = f"http://{url}"
        try:
            parts = urlsplit(url)
            port = parts.port or 80
        except ValueError as exc:
            raise ConfigError(
                f"the proxy URL {url!r} is not valid: {exc}",
                hint="set HTTPS_PROXY / HTTP_PROXY to http://host:port",
            ) from exc
        if parts.scheme != "http" or not parts.hostname:
            raise ConfigError(
                f"the proxy URL {url!r} is not supported: only http:// proxies are",
                hint="set HTTPS_PROXY / HTTP_PROXY to http://host:port",
            )
        auth = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            auth = f"Basic {base64.b64encode(pair.encode()).decode()}"
        return cls(url, parts.hostname, port, auth)


class _Pool:
    """The connections to one (scheme, host, port): a LIFO idle list, a cap on open ones and
    a FIFO queue of requests waiting for one."""

    __slots__ = (
        "absolute",
        "authority",
        "cap",
        "conns",
        "deadlines",
        "fixed",
        "heads",
        "host",
        "idle",
        "open",
        "owner",
        "port",
        "proxy",
        "tls",
        "waiters",
    )

    def __init__(
        self,
        owner: Http11Transport,
        deadlines: _Deadlines,
        scheme: str,
        host: str,
        port: int,
        authority: str,
        proxy: _Proxy | None,
    ) -> None:
        self.owner = owner
        self.deadlines = deadlines
        self.host = host
        self.port = port
        self.authority = authority
        self.tls = scheme == "https"
        self.proxy = proxy
        # Plain http through a proxy names the whole URI; https tunnels, so it does not.
        self.absolute = f"{scheme}://{authority}" if proxy is not None and not self.tls else ""
        fixed = f"Host: {authority}\r\n"
        if self.absolute and proxy is not None and proxy.auth:
            fixed += f"Proxy-Authorization: {proxy.auth}\r\n"
        self.fixed = fixed
        self.heads: dict[tuple[object, ...], tuple[bytes, bool]] = {}
        self.cap = owner.max_connections_per_host
        self.idle: list[_Conn] = []
        self.open = 0
        self.conns: set[_Conn] = set()
        self.waiters: deque[asyncio.Future[_Conn | None]] = deque()

    def head(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes | None
    ) -> tuple[bytes, bool]:
        """The request head as bytes, and whether it asks to close the connection after."""
        # A provider sends the same headers to the same path call after call: compose each
        # head once (the strings' hashes are cached, so the key is cheap to look up).
        key = (method, target, *headers.items())
        composed = self.heads.get(key)
        if composed is None:
            composed = self._compose(method, target, headers)
            if len(self.heads) >= _HEADS_KEPT:
                self.heads.clear()
            self.heads[key] = composed
        prefix, close_after = composed
        if body is not None:
            return b"%sContent-Length: %d\r\n\r\n" % (prefix, len(body)), close_after
        if method in _BODY_METHODS:
            return prefix + b"Content-Length: 0\r\n\r\n", close_after
        return prefix + b"\r\n", close_after

    def _compose(self, method: str, target: str, headers: Mapping[str, str]) -> tuple[bytes, bool]:
        """The request head up to the framing headers, and whether it closes the connection."""
        if method not in _KNOWN_METHODS and not _TOKEN.fullmatch(method):
            raise InvalidInputError(
                f"{method!r} is not a valid HTTP method", hint="use a method such as POST or GET"
            )
        block = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
        count = len(headers)
        if block.count("\n") != count or block.count("\r") != count:
            raise InvalidInputError(
                "a request header name or value contains a line break",
                hint="remove CR and LF characters from header values (an API key pasted with "
                "its newline is the usual cause)",
            )
        # With line breaks ruled out, "\n<name>:" can only be the start of a header line.
        low = "\n" + block.lower()
        if "\ncontent-length:" in low or "\ntransfer-encoding:" in low:
            raise InvalidInputError(
                "Content-Length and Transfer-Encoding are set by the transport",
                hint="leave both headers out; the body's length is sent for you",
            )
        line = f"{method} {self.absolute}{target} HTTP/1.1\r\n"
        parts = [line, block] if "\nhost:" in low else [line, self.fixed, block]
        if "\naccept-encoding:" not in low:
            parts.append("Accept-Encoding: gzip, deflate\r\n")
        try:
            raw = "".join(parts).encode("latin-1")
        except UnicodeEncodeError as exc:
            raise InvalidInputError(
                "a request header holds characters HTTP cannot carry",
                hint="header values must be Latin-1 text; check the API key and custom headers",
            ) from exc
        close_after = False
        if "\nconnection:" in low:
            value = low.split("\nconnection:", 1)[1].split("\r", 1)[0]
            close_after = "close" in (token.strip() for token in value.split(","))
        return raw, close_after

    async def acquire(self, limits: _Limits) -> _Conn:
        """A connection to use: the newest fit idle one, a new one if under the cap, or the
        next one freed (in arrival order)."""
        idle = self.idle
        if idle:
            now = asyncio.get_running_loop().time()
            while idle:
                conn = idle.pop()
                if conn.fit(now):
                    conn.reused = True
                    return conn
                self.discard(conn)
        if self.open < self.cap:
            self.open += 1
            return await self._open_in_slot(limits)
        waiter: asyncio.Future[_Conn | None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            handed = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # Handed a connection or a slot just as we gave up: pass it on.
                got = waiter.result()
                if got is None:
                    self._free_slot()
                else:
                    self.release(got)
            else:
                self.waiters.remove(waiter)
            raise
        if handed is not None:
            handed.reused = True
            return handed
        return await self._open_in_slot(limits)

    async def _open_in_slot(self, limits: _Limits) -> _Conn:
        """Open a connection in a slot already counted in ``open``."""
        try:
            reader, writer = await self.connect(limits)
        except BaseException:
            self._free_slot()
            raise
        conn = _Conn(reader, writer)
        self.conns.add(conn)
        return conn

    async def reopen(self, conn: _Conn, limits: _Limits) -> None:
        """Replace ``conn``'s stale connection with a fresh one in the same slot."""
        conn.close()
        conn.reader, conn.writer = await self.connect(limits)
        conn.reused = False

    def release(self, conn: _Conn) -> None:
        """Give a connection whose answer was read to its end back to the pool."""
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.idle_since = asyncio.get_running_loop().time()
        self.idle.append(conn)

    def discard(self, conn: _Conn) -> None:
        """Close a connection that cannot be reused and free its slot."""
        conn.close()
        if conn in self.conns:
            self.conns.discard(conn)
            self._free_slot()

    def _free_slot(self) -> None:
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the waiter, ``open`` unchanged
                return
        self.open -= 1

    def close_all(self) -> list[asyncio.StreamWriter]:
        """Close every connection (busy ones fail their call); return their writers."""
        writers = [conn.writer for conn in self.conns]
        for conn in list(self.conns):
            if conn in self.idle:
                self.discard(conn)
            else:
                conn.shut = True
                conn.close()  # its call fails and discards it, freeing the slot
        self.idle.clear()
        return writers

    async def connect(self, limits: _Limits) -> tuple[_Reader, asyncio.StreamWriter]:
        """Open a connection: direct, or through the proxy (a CONNECT tunnel for https), within
        the connect limit."""
        limits.arm("connect", limits.timeouts.connect)
        loop = asyncio.get_running_loop()
        reader = _Reader(limit=MAX_HEAD_BYTES, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        proxy = self.proxy
        try:
            if proxy is None:
                context = self.owner.ssl_context() if self.tls else None
                transport, _ = await loop.create_connection(
                    lambda: protocol,
                    self.host,
                    self.port,
                    ssl=context,
                    server_hostname=self.host if self.tls else None,
                )
                return reader, asyncio.StreamWriter(transport, protocol, reader, loop)
            transport, _ = await loop.create_connection(lambda: protocol, proxy.host, proxy.port)
        except OSError as exc:
            via = f" (through the proxy {proxy.url})" if proxy is not None else ""
            host = proxy.host if proxy is not None else self.host
            why = f"{connect_failure(exc, host)}{via}"
            raise _Broken(f"cannot connect: {why}", True, why) from exc
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        if not self.tls:
            return reader, writer
        try:
            await self._tunnel(proxy, reader, writer)
            await writer.start_tls(self.owner.ssl_context(), server_hostname=self.host)
        except BaseException as exc:
            writer.close()
            if isinstance(exc, OSError | asyncio.IncompleteReadError | asyncio.LimitOverrunError):
                raise _Broken(
                    f"the tunnel through the proxy {proxy.url} failed: {_describe(exc)}", True
                ) from exc
            raise
        return reader, writer

    async def _tunnel(self, proxy: _Proxy, reader: _Reader, writer: asyncio.StreamWriter) -> None:
        where = f"{self.host}:{self.port}"
        auth = f"Proxy-Authorization: {proxy.auth}\r\n" if proxy.auth else ""
        writer.write(f"CONNECT {where} HTTP/1.1\r\nHost: {where}\r\n{auth}\r\n".encode())
        answer = _parse_head(await reader.readuntil(b"\r\n\r\n"), "CONNECT")
        if answer.status != 200:
            refused = f"the proxy {proxy.url} refused to open a tunnel to {where}"
            raise _Broken(f"{refused}: status {answer.status}", True)


# --- answers ----------------------------------------------------------------------------------


class _Broken(Exception):
    """The connection failed or the answer is not HTTP (the caller adds method and URL);
    ``connecting``: it could not be opened, so nothing was sent."""

    def __init__(self, message: str, connecting: bool = False, reason: str = "") -> None:
        super().__init__(message)
        self.connecting = connecting
        self.reason = reason or message


def _connect_error(method: str, url: str, exc: _Broken) -> TransportConnectError:
    return TransportConnectError(
        f"{method} {url}: {exc}", reason=exc.reason, connecting=exc.connecting
    )


class _Head:
    """A parsed answer head and how its body is framed."""

    __slots__ = ("encoding", "framing", "headers", "keep_alive", "length", "status")

    def __init__(
        self,
        status: int,
        headers: dict[str, str],
        keep_alive: bool,
        framing: int,
        length: int,
        encoding: str,
    ) -> None:
        self.status = status
        self.headers = headers
        self.keep_alive = keep_alive
        self.framing = framing
        self.length = length
        self.encoding = encoding


_STATUS_LINE = re.compile(r"HTTP/1\.([01]) ([0-9]{3})(?: |$)")


def _parse_head(raw: bytes, method: str) -> _Head:
    """Parse a status line and headers ending in a blank line; raise `_Broken` on garbage."""
    lines = raw.decode("latin-1").split("\r\n")
    status_line = _STATUS_LINE.match(lines[0])
    if status_line is None:
        raise _Broken(f"the answer is not HTTP/1.x: it starts with {lines[0][:60]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:-2]:
        name, colon, value = line.partition(":")
        key = name.lower()
        # ``"" in " \t"`` holds, so an empty name takes the careful path too.
        if not colon or key in headers or name[:1] in " \t":
            headers = _careful_headers(lines[1:-2])
            break
        headers[key] = value.strip()
    return _framed(int(status_line[2]), status_line[1] == "1", headers, method)


def _careful_headers(lines: list[str]) -> dict[str, str]:
    """Headers with repeated names (joined with ", ") or obsolete folded lines."""
    headers: dict[str, str] = {}
    last = ""
    for line in lines:
        if line[:1] in (" ", "\t") and last:
            headers[last] = f"{headers[last]} {line.strip()}"  # an obsolete folded line
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name[0] in " \t" or name[-1] in " \t":
            raise _Broken(f"the answer has a malformed header line {line[:60]!r}")
        last = name.lower()
        value = value.strip()
        headers[last] = f"{headers[last]}, {value}" if last in headers else value
    return headers


def _framed(status: int, http11: bool, headers: dict[str, str], method: str) -> _Head:
    """How the body of an answer with these headers ends (RFC 9112 section 6.3)."""
    connection = headers.get("connection")
    if http11:  # HTTP/1.1 keeps the connection unless told otherwise, HTTP/1.0 the other way
        keep_alive = connection is None or "close" not in connection.lower()
    else:
        keep_alive = connection is not None and "keep-alive" in connection.lower()
    encoding = headers.get("content-encoding", "")
    if encoding:
        encoding = encoding.strip().lower()
        if encoding not in ("gzip", "x-gzip", "deflate"):
            encoding = ""  # identity, or a coding we did not ask for: passed on as it is
    if status < 200 or status == 204 or status == 304 or method == "HEAD":
        return _Head(status, headers, keep_alive, _EMPTY, 0, encoding)
    length = headers.get("content-length")
    if "transfer-encoding" in headers:
        if headers["transfer-encoding"].lower().rstrip().endswith("chunked"):
            return _Head(status, headers, keep_alive, _CHUNKED, 0, encoding)
        return _Head(status, headers, False, _UNTIL_CLOSE, 0, encoding)
    if length is None:
        return _Head(status, headers, False, _UNTIL_CLOSE, 0, encoding)
    if not length.isdecimal():
        # Repeated identical values ("12, 12") are allowed; anything else is not.
        values = {part.strip() for part in length.split(",")}
        size = values.pop() if len(values) == 1 else ""
        if not (size.isascii() and size.isdecimal()):
            raise _Broken(f"the answer has an invalid Content-Length {length[:40]!r}")
        length = size
    return _Head(status, headers, keep_alive, _LENGTH, int(length), encoding)


async def _exchange(
    pool: _Pool, limits: _Limits, conn: _Conn, method: str, head: bytes, body: bytes | None
) -> _Head:
    """Send the request on ``conn`` and read the answer's head, skipping 1xx answers, within
    the first-byte limit. A reused connection that closes before the first byte of the answer
    is replaced and the request sent once more."""
    while True:
        limits.arm("first_byte", limits.timeouts.first_byte)
        writer = conn.writer
        if body is None:
            writer.write(head)
        elif len(body) <= _WRITE_JOIN_LIMIT:
            writer.write(head + body)
        else:
            writer.write(head)
            writer.write(body)
        try:
            if body is not None and len(body) > _WRITE_JOIN_LIMIT:
                await writer.drain()
            raw = await conn.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if conn.shut:
                raise _Broken("the transport was closed during the call") from exc
            if conn.reused and not exc.partial:
                await pool.reopen(conn, limits)
                continue
            if not exc.partial:
                raise _Broken("the server closed the connection without answering") from exc
            raise _Broken("the connection closed in the middle of the answer's head") from exc
        except ConnectionError as exc:
            if conn.reused and not conn.shut:
                await pool.reopen(conn, limits)
                continue
            raise _Broken(_describe(exc)) from exc
        except asyncio.LimitOverrunError as exc:
            raise _Broken(f"the answer's head is longer than {MAX_HEAD_BYTES} bytes") from exc
        answer = _parse_head(raw, method)
        while 100 <= answer.status < 200:
            if answer.status == 101:
                raise _Broken("the server switched protocols, which was not asked for")
            answer = _parse_head(await _read_head(conn.reader), method)
        return answer


async def _read_head(reader: _Reader) -> bytes:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        raise _Broken("the connection closed in the middle of the answer's head") from exc
    except asyncio.LimitOverrunError as exc:
        raise _Broken(f"the answer's head is longer than {MAX_HEAD_BYTES} bytes") from exc


async def _fetch(
    pool: _Pool, limits: _Limits, method: str, head: bytes, body: bytes | None, close_after: bool
) -> HttpResponse:
    """One whole request and answer on a pooled connection."""
    conn = await pool.acquire(limits)
    try:
        answer = await _exchange(pool, limits, conn, method, head, body)
        limits.arm("body", None)
        reader = conn.reader
        framing = answer.framing
        if framing == _LENGTH:
            data = await _read_exactly(reader, answer.length)
        elif framing == _CHUNKED:
            data, reusable = await _read_chunked(reader)
            if not reusable:
                answer.keep_alive = False
        elif framing == _UNTIL_CLOSE:
            data = await reader.read()
        else:
            data = b""
        if answer.encoding:
            data = _decompress(data, answer.encoding)
    except OSError as exc:
        pool.discard(conn)
        raise _Broken(_describe(exc)) from exc
    except BaseException:
        pool.discard(conn)
        raise
    if answer.keep_alive and not close_after:
        pool.release(conn)
    else:
        pool.discard(conn)
    return HttpResponse(answer.status, answer.headers, data)


async def _read_exactly(reader: _Reader, size: int) -> bytes:
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        raise _Broken(
            f"the connection closed after {len(exc.partial)} of {size} body bytes"
        ) from exc


class _Dechunker:
    """Incremental decoding of a chunked body: feed it whatever arrived, get the data of the
    chunks in it. Decoding everything received at once (rather than a read per chunk) lets a
    stream of small events cost one read for all the events that arrived together."""

    __slots__ = ("_left", "_pending", "_state", "_trailers", "done", "extra")

    def __init__(self) -> None:
        self._pending = b""  # the start of a size line or of a chunk's closing CRLF
        self._state = _SIZE
        self._left = 0  # data bytes of the current chunk still to come
        self._trailers = 0
        self.done = False
        """The last chunk and the trailers have been read."""
        self.extra = False
        """Bytes followed the body's end (the connection cannot be reused)."""

    def feed(self, data: bytes) -> bytes:
        """The chunk data in ``data``; raises `_Broken` if the framing is wrong."""
        if self._pending:
            data = self._pending + data
            self._pending = b""
        out: list[bytes] = []
        pos, end = 0, len(data)
        state = self._state
        while pos < end:
            if state == _SIZE:
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    if end - pos > MAX_HEAD_BYTES:
                        raise _Broken("the chunked body has an over-long chunk-size line")
                    self._pending = data[pos:]
                    break
                size = _chunk_size(data[pos:eol])
                pos = eol + 2
                if size == 0:
                    state = _TRAILERS
                    continue
                stop = pos + size
                if stop + 2 <= end:  # the whole chunk is here: the usual case
                    if data[stop : stop + 2] != b"\r\n":
                        raise _Broken("a chunk of the chunked body is longer than its size says")
                    out.append(data[pos:stop])
                    pos = stop + 2
                    continue
                self._left, state = size, _DATA
            elif state == _DATA:
                take = min(self._left, end - pos)
                out.append(data[pos : pos + take])
                pos += take
                self._left -= take
                if self._left == 0:
                    state = _CRLF
            elif state == _CRLF:
                if end - pos < 2:
                    self._pending = data[pos:]
                    break
                if data[pos : pos + 2] != b"\r\n":
                    raise _Broken("a chunk of the chunked body is longer than its size says")
                pos += 2
                state = _SIZE
            elif state == _TRAILERS:
                eol = data.find(b"\r\n", pos)
                if self._trailers + (end if eol < 0 else eol) - pos > MAX_HEAD_BYTES:
                    raise _Broken(f"the chunked body's trailers exceed {MAX_HEAD_BYTES} bytes")
                if eol < 0:
                    self._pending = data[pos:]
                    break
                self._trailers += eol - pos
                if eol == pos:  # the blank line after the trailers: the body's end
                    self.done = True
                    self.extra = eol + 2 < end
                    state = _DONE
                    break
                pos = eol + 2
            else:
                self.extra = True
                break
        self._state = state
        return b"".join(out) if len(out) != 1 else out[0]


_SIZE, _DATA, _CRLF, _TRAILERS, _DONE = range(5)


def _chunk_size(line: bytes) -> int:
    if _HEX.fullmatch(line):
        return int(line, 16)
    digits = line.split(b";", 1)[0].strip(b" \t")  # chunk extensions are ignored
    if not _HEX.fullmatch(digits):
        raise _Broken(f"the chunked body has a bad chunk size {line[:40]!r}")
    return int(digits, 16)


async def _read_chunked(reader: _Reader) -> tuple[bytes, bool]:
    """A whole chunked body, and whether the connection can carry another request."""
    dechunker = _Dechunker()
    parts = []
    while not dechunker.done:
        data = await reader.read(_READ_SIZE)
        if not data:
            raise _Broken("the connection closed in the middle of a chunked body")
        parts.append(dechunker.feed(data))
    return b"".join(parts), not dechunker.extra


def _decompress(data: bytes, encoding: str) -> bytes:
    decoder = _Decoder(encoding)
    return decoder.feed(data) + decoder.finish()


class _Decoder:
    """Incremental gzip / deflate decoding ("deflate" is zlib-wrapped, or raw from some
    servers)."""

    __slots__ = ("_obj", "_started")

    def __init__(self, encoding: str) -> None:
        # 32 + 15: detect a gzip or zlib header; raw deflate is tried if that fails.
        self._obj = zlib.decompressobj(47)
        self._started = False

    def feed(self, data: bytes) -> bytes:
        try:
            out = self._obj.decompress(data)
        except zlib.error as exc:
            if self._started:
                raise _Broken(f"the compressed body is corrupt: {exc}") from exc
            self._obj = zlib.decompressobj(-15)
            try:
                out = self._obj.decompress(data)
            except zlib.error as again:
                raise _Broken(f"the compressed body is corrupt: {again}") from again
        self._started = self._started or bool(data)
        return out

    def finish(self) -> bytes:
        if self._started and not self._obj.eof:
            raise _Broken("the compressed body ends before its compressed stream does")
        return self._obj.flush()


class _Stream:
    """The `StreamResponse` of `Http11Transport.stream` and the block that owns its
    connection."""

    __slots__ = (
        "_answer",
        "_body",
        "_close_after",
        "_conn",
        "_dechunker",
        "_decoder",
        "_done",
        "_head",
        "_left",
        "_limits",
        "_method",
        "_pool",
        "_timeouts",
        "_url",
    )

    def __init__(
        self,
        pool: _Pool,
        method: str,
        url: str,
        head: bytes,
        body: bytes | None,
        timeouts: Timeouts,
        close_after: bool,
    ) -> None:
        self._pool = pool
        self._method = method
        self._url = url
        self._head = head
        self._body = body
        self._timeouts = timeouts
        self._limits: _Limits | None = None
        self._close_after = close_after
        self._conn: _Conn | None = None
        self._answer: _Head | None = None
        self._decoder: _Decoder | None = None
        self._dechunker = _Dechunker()
        self._done = False
        self._left = 0

    async def __aenter__(self) -> _Stream:
        pool = self._pool
        task = _current_task()
        cancelling = task.cancelling()
        limits = self._limits = _Limits(pool.deadlines, self._timeouts, task)
        try:
            conn = await self._within(task, cancelling, pool.acquire(limits))
        except BaseException:
            pool.deadlines.stop(task)
            raise
        try:
            answer = await self._within(
                task,
                cancelling,
                _exchange(pool, limits, conn, self._method, self._head, self._body),
            )
        except BaseException:
            pool.discard(conn)
            raise
        finally:
            pool.deadlines.stop(task)
        self._conn = conn
        self._answer = answer
        self._left = answer.length
        self._done = answer.framing == _EMPTY or (answer.framing == _LENGTH and answer.length == 0)
        if answer.encoding:
            self._decoder = _Decoder(answer.encoding)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is None or self._answer is None:
            return
        if self._done and self._answer.keep_alive and not self._close_after:
            self._pool.release(conn)
        else:
            # Left before the body's end (or the server will close): never pooled half-read.
            self._pool.discard(conn)

    @property
    def status(self) -> int:
        """The HTTP status code."""
        assert self._answer is not None, "use the answer inside its `async with` block"
        return self._answer.status

    @property
    def headers(self) -> Mapping[str, str]:
        """The answer's headers, names lower-case, repeated ones joined with ", "."""
        assert self._answer is not None, "use the answer inside its `async with` block"
        return self._answer.headers

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        """Body chunks as they arrive (decompressed); raises `TransportTimeout` after the
        first-byte limit without a byte or at the end of the total, `TransportConnectError` if
        the connection drops."""
        decoder = self._decoder
        deadlines = self._pool.deadlines
        task = _current_task()
        limits = self._limits
        if limits is None:
            raise _connect_error(
                self._method, self._url, _Broken("the answer was read outside its block")
            )
        limits.task = task
        gap = limits.timeouts.first_byte
        while not self._done:
            # Inlined `_within`: this runs once per chunk.
            cancelling = task.cancelling()
            limits.arm("body", gap)
            try:
                piece = await self._next()
            except asyncio.CancelledError:
                if deadlines.stop(task) and task.uncancel() <= cancelling:
                    raise self._timed_out() from None
                raise
            except _Broken as exc:
                deadlines.stop(task)
                raise self._broken(exc) from exc.__cause__
            except OSError as exc:
                deadlines.stop(task)
                raise self._broken(_Broken(_describe(exc))) from exc
            except BaseException:
                deadlines.stop(task)
                raise
            deadlines.stop(task)
            if decoder is not None:
                try:
                    piece = decoder.feed(piece) + (decoder.finish() if self._done else b"")
                except _Broken as exc:
                    raise self._broken(exc) from exc.__cause__
            if piece:
                yield piece

    async def read(self) -> bytes:
        """The rest of the body (for error answers)."""
        return b"".join([piece async for piece in self.iter_bytes()])

    async def _next(self) -> bytes:
        """The next piece of the raw body; sets ``_done`` with the last one."""
        conn, answer = self._conn, self._answer
        if conn is None or answer is None:
            raise _Broken("the answer was read after its `async with` block ended")
        reader = conn.reader
        framing = answer.framing
        if framing == _CHUNKED:
            dechunker = self._dechunker
            while True:
                raw = await reader.read(_READ_SIZE)
                if not raw:
                    raise _Broken("the connection closed in the middle of a chunked body")
                piece = dechunker.feed(raw)
                if dechunker.done:
                    self._done = True
                    if dechunker.extra:
                        answer.keep_alive = False
                    return piece
                if piece:
                    return piece
        if framing == _LENGTH:
            piece = await reader.read(min(self._left, _READ_SIZE))
            if not piece:
                raise _Broken(
                    f"the connection closed after {answer.length - self._left} of "
                    f"{answer.length} body bytes"
                )
            self._left -= len(piece)
            self._done = self._left == 0
            return piece
        piece = await reader.read(_READ_SIZE)  # delimited by the server closing
        self._done = not piece
        return piece

    async def _within(self, task: asyncio.Task[Any], cancelling: int, step: Awaitable[_T]) -> _T:
        """Await ``step`` (which arms the limits of its stages), mapping failures to transport
        errors; the deadline is left running for the next step."""
        try:
            return await step
        except asyncio.CancelledError:
            if self._pool.deadlines.stop(task) and task.uncancel() <= cancelling:
                raise self._timed_out() from None
            raise
        except _Broken as exc:
            raise self._broken(exc) from exc.__cause__
        except OSError as exc:
            raise self._broken(_Broken(_describe(exc))) from exc

    def _timed_out(self) -> TransportTimeout:
        assert self._limits is not None  # set before any wait
        return self._limits.timed_out(self._method, self._url)

    def _broken(self, exc: _Broken) -> TransportError:
        return _connect_error(self._method, self._url, exc)


def _bad_url(url: str, why: str) -> InvalidInputError:
    return InvalidInputError(
        f"cannot send a request to {url!r}: {why}",
        hint="give an absolute http:// or https:// URL, percent-encoding special characters",
    )


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return text if text else type(exc).__name__
