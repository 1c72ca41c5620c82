"""The egress proxy of a sandboxed command: an HTTP proxy on a Unix socket in a private folder
(``CONNECT host:port`` for https and any tunnel, absolute ``http://`` requests for plain http)
that lets a connection through only to a destination the egress policy allows.

A name is resolved here, once; every address it resolves to is checked, and the connection
goes to a checked address, so a second DNS answer cannot move it elsewhere. A refused
destination is answered ``403`` with a one-line reason. The proxy lives as long as one command:
its socket and folder are removed when the command ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

__all__ = [
    "MAX_REFUSALS_KEPT",
    "EgressProxy",
    "IPAddress",
    "Refuse",
    "Resolve",
    "system_resolve",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

Refuse = Callable[[str, list[IPAddress]], str | None]
"""``refuse(host, addresses)``: why ``host``, resolved to ``addresses``, may not be reached
(one line, naming the setting that would allow it), or None when it may."""

Resolve = Callable[[str, int], Awaitable[list[IPAddress]]]
"""``resolve(host, port)``: the addresses ``host`` has."""

PREFIX = "promptline egress: "
"""How every answer of the proxy's own begins (the command sees it in its output)."""

MAX_REFUSALS_KEPT = 100
"""Refusals of one command kept in `EgressProxy.refused` and logged (the first ones)."""

_MAX_HEAD = 64 * 1024
_CHUNK = 64 * 1024
_DROPPED = {"proxy-connection", "proxy-authorization", "connection", "keep-alive"}

_log = logging.getLogger(__name__)


async def system_resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses the system's resolver gives ``host``, in its order, without repeats."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found = dict.fromkeys(ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos)
    return list(found)


class _Refused(Exception):
    """An answer of the proxy's own: ``status`` and the one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class EgressProxy:
    """The proxy of one command (an async context manager): ``socket_path`` exists while the
    block runs; ``refused`` lists the reasons of the destinations it refused, in order (the
    first `MAX_REFUSALS_KEPT`)."""

    def __init__(self, refuse: Refuse, *, resolve: Resolve | None = None) -> None:
        self._refuse = refuse
        self._resolve = resolve or system_resolve
        self._folder: Path | None = None
        self._server: asyncio.AbstractServer | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.refused: list[str] = []

    @property
    def socket_path(self) -> Path:
        """The Unix socket the proxy listens on (only while the block runs)."""
        if self._folder is None:
            raise RuntimeError("the egress proxy is not running")
        return self._folder / "egress.sock"

    async def __aenter__(self) -> EgressProxy:
        # mkdtemp makes the folder 0700: no other user reaches the socket in it.
        self._folder = Path(tempfile.mkdtemp(prefix="promptline-egress-"))
        try:
            listening = _bound(self.socket_path)
            self._server = await asyncio.start_unix_server(
                self._accept, sock=listening, limit=_MAX_HEAD
            )
        except BaseException:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
            raise
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the command hung up, or sent something that is not a request
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, host, port = _destination(lines[0])
            upstream = await self._open(host, port)
        except _Refused as refused:
            _answer(writer, refused.status, refused.reason)
            await writer.drain()
            return
        up_reader, up_writer = upstream
        try:
            if method == "CONNECT":
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                up_writer.write(_origin_request(method, target, lines))
            await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer))
        finally:
            up_writer.close()
            with contextlib.suppress(OSError):
                await up_writer.wait_closed()

    async def _open(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to a checked address of ``host``; `_Refused` when the policy refuses
        it, it cannot be resolved, or no address answers."""
        where = f"{host}:{port}"
        addresses = _literal(host)
        if addresses is None:
            try:
                addresses = await self._resolve(host, port)
            except OSError as exc:
                raise _Refused(502, f"cannot resolve {host}: {exc.strerror or exc}") from exc
        if not addresses:
            raise _Refused(502, f"{host} has no address")
        reason = self._refuse(host, addresses)
        if reason is not None:
            if len(self.refused) < MAX_REFUSALS_KEPT:  # a command looping on one is bounded
                self.refused.append(reason)
                _log.warning("%s%s (refused %s)", PREFIX, reason, where)
            raise _Refused(403, reason)
        errors: list[str] = []
        for address in addresses:
            try:
                return await asyncio.open_connection(str(address), port, limit=_MAX_HEAD)
            except OSError as exc:
                errors.append(f"{address}: {exc.strerror or exc}")
        raise _Refused(502, f"cannot connect to {where} ({'; '.join(errors)})")


def _bound(path: Path) -> socket.socket:
    """A Unix socket bound at ``path``, however long the folder's path (a socket's own is
    limited to 107 bytes: a longer one is reached through the folder's descriptor)."""
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if len(os.fsencode(path)) < 100:
            listening.bind(str(path))
        else:
            folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                listening.bind(f"/proc/self/fd/{folder}/{path.name}")
            finally:
                os.close(folder)
    except BaseException:
        listening.close()
        raise
    return listening


def _literal(host: str) -> list[IPAddress] | None:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        return None


def _destination(request_line: str) -> tuple[str, str, str, int]:
    """The method, target, host and port of a proxy request; `_Refused` (400) for one this
    proxy does not serve."""
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _Refused(400, f"not an HTTP/1.x request: {request_line[:80]!r}")
    method, target, _ = parts
    if method == "CONNECT":
        host, _, port_text = target.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise _Refused(400, f"CONNECT needs host:port, got {target[:80]!r}")
        return method, target, host, int(port_text)
    url = urlsplit(target)
    try:
        port = url.port or 80
    except ValueError:
        port = 0
    if url.scheme.lower() != "http" or not url.hostname or not 0 < port < 65536:
        raise _Refused(
            400,
            f"{method} {target[:80]} is not proxied: only absolute http:// requests and "
            "CONNECT are (https goes through CONNECT)",
        )
    return method, target, url.hostname, port


def _origin_request(method: str, target: str, lines: list[str]) -> bytes:
    """The request as the server is sent it: its path, its headers less the proxy's and the
    connection's, and ``Connection: close`` (one request per connection, so a second request
    cannot ride to a destination that was not checked for it)."""
    url = urlsplit(target)
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    kept = [f"{method} {path} {lines[0].rsplit(' ', 1)[1]}"]
    has_host = False
    for line in lines[1:]:
        if not line:
            continue
        name = line.partition(":")[0].strip().lower()
        has_host = has_host or name == "host"
        if name not in _DROPPED:
            kept.append(line)
    if not has_host:
        kept.append(f"Host: {url.netloc.rpartition('@')[2]}")
    kept.append("Connection: close")
    return ("\r\n".join(kept) + "\r\n\r\n").encode("latin-1")


def _answer(writer: asyncio.StreamWriter, status: int, reason: str) -> None:
    phrase = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}[status]
    body = f"{PREFIX}{reason}\n".encode()
    writer.write(
        f"HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )


async def _copy(source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
    """Copy until ``source`` ends, then end ``target``'s side (the other way may go on)."""
    try:
        while data := await source.read(_CHUNK):
            target.write(data)
            await target.drain()
        if target.can_write_eof():
            target.write_eof()
    except OSError:
        target.close()
