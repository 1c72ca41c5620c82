"""The one-request HTTP/1.1 client of ``web_get``: it connects only where the egress policy
(`promptline.security.egress`, ``security.egress_allow``) allows.

A name is resolved once per request, every address it resolves to is checked, and the
connection goes to a checked address (the TLS name check still uses the name): a second DNS
answer cannot move the request to another address (DNS rebinding). Through a proxy
(``HTTPS_PROXY`` / ``HTTP_PROXY``, unless ``NO_PROXY`` covers the host) the request is tunnelled
with ``CONNECT`` to the checked address, for the same reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from promptline.core.errors import InvalidInputError
from promptline.models.transport import TransportConnectError
from promptline.tools.base import ToolError
from promptline.tools.proxies import Proxy, proxy_for

if TYPE_CHECKING:
    import ssl

    from promptline.security.egress import EgressPolicy, Resolver

__all__ = ["GuardedResponse", "PinnedClient"]

_MAX_HEAD = 64 * 1024
_CHUNK = 64 * 1024


@dataclass
class GuardedResponse:
    """An answer being received: status, lower-case headers, the body in chunks."""

    status: int
    headers: Mapping[str, str]
    _body: AsyncIterator[bytes] = field(repr=False)

    def iter_bytes(self) -> AsyncIterator[bytes]:
        """The body as it arrives (the connection closes when the request's block ends)."""
        return self._body


class PinnedClient:
    """GET requests to addresses `EgressPolicy` allows, each on a connection of its own made
    to the address that was checked."""

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        resolver: Resolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.policy = policy
        # The security package (and the config it reads) is loaded when web_get is built,
        # not when the tools are imported.
        from promptline.security.egress import system_resolver

        self.resolver = resolver or system_resolver
        self._ssl = ssl_context

    async def checked_addresses(self, url: str, host: str, port: int, via: str) -> list[str]:
        """The addresses ``host`` may be reached at; `ToolError` naming the first that may
        not (one refused address refuses the host: which one a connection would take is not
        for the name's owner to choose)."""
        from promptline.security.egress import parse_address

        literal = parse_address(host)
        if literal is not None:
            found = [str(literal)]
        else:
            try:
                found = await self.resolver(host, port)
            except OSError as exc:
                raise ToolError(
                    f"could not fetch {url}{via}: the name {host} could not be resolved "
                    f"({exc.strerror or exc})",
                    hint="check the spelling of the host, or try again later",
                ) from exc
            if not found:
                raise ToolError(f"could not fetch {url}{via}: the name {host} has no address")
        why = self.policy.refusal(host, found)
        if why is not None:
            raise self._refused(url, via, why)
        return found

    @contextlib.asynccontextmanager
    async def get(
        self, url: str, headers: Mapping[str, str], *, via: str = ""
    ) -> AsyncIterator[GuardedResponse]:
        """Send ``GET url`` to a checked address of its host and receive the answer;
        ``via`` says how the URL was reached (a redirect) in refusals."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        tls = parts.scheme.lower() == "https"
        try:
            port = parts.port or (443 if tls else 80)
        except ValueError as exc:
            raise InvalidInputError(f"{url!r} has an invalid port: {exc}") from exc
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if " " in target or not (target.isascii() and target.isprintable()):
            raise InvalidInputError(
                f"{url!r} cannot be sent: its path or query holds spaces, control or "
                "non-ASCII characters",
                hint="percent-encode them (a space is %20)",
            )
        addresses = await self.checked_addresses(url, host, port, via)
        reader, writer = await self._connect(addresses, host, port, tls, parts.scheme.lower())
        try:
            authority = f"[{host}]" if ":" in host else host
            if parts.port is not None and parts.port != (443 if tls else 80):
                authority += f":{parts.port}"
            lines = [f"GET {target} HTTP/1.1", f"Host: {authority}"]
            lines += [f"{name}: {value}" for name, value in headers.items()]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            status, answer_headers = await _read_head(reader)
            yield GuardedResponse(status, answer_headers, _body(reader, status, answer_headers))
        finally:
            writer.close()
            with contextlib.suppress(OSError):  # ssl.SSLError is one
                await writer.wait_closed()

    def _refused(self, url: str, via: str, why: str) -> ToolError:
        from promptline.security.egress import EGRESS_SETTING

        return ToolError(
            f"web_get does not fetch {url}{via}: {why}",
            hint=f"web_get reaches public addresses only; to let it reach this one, list the "
            f"host or its network in {EGRESS_SETTING} (docs/security.md#network-egress)",
        )

    async def _connect(
        self, addresses: list[str], host: str, port: int, tls: bool, scheme: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        context = self._context() if tls else None
        proxy = proxy_for(scheme, host)
        errors: list[str] = []
        for address in addresses:
            try:
                if proxy is None:
                    return await asyncio.open_connection(
                        address,
                        port,
                        ssl=context,
                        server_hostname=host if context else None,
                        limit=_MAX_HEAD,
                    )
                return await _tunnel(proxy, address, port, host, context)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                errors.append(f"{address}: {_describe(exc)}")
        via = f" through the proxy {proxy.shown}" if proxy is not None else ""
        raise TransportConnectError(f"cannot connect to {host}{via} ({'; '.join(errors)})")

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            import ssl

            self._ssl = ssl.create_default_context()
        return self._ssl


async def _tunnel(
    proxy: Proxy, address: str, port: int, host: str, context: ssl.SSLContext | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    # The tunnel names the checked address, not the host: the proxy must not resolve again.
    reader, writer = await asyncio.open_connection(proxy.host, proxy.port, limit=_MAX_HEAD)
    where = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    auth = f"Proxy-Authorization: {proxy.auth}\r\n" if proxy.auth else ""
    writer.write(f"CONNECT {where} HTTP/1.1\r\nHost: {where}\r\n{auth}\r\n".encode())
    try:
        status, _ = await _read_head(reader)
        if status != 200:
            raise OSError(f"the proxy refused to open a tunnel to {where}: status {status}")
        if context is not None:
            await writer.start_tls(context, server_hostname=host)
    except BaseException:
        writer.close()
        raise
    return reader, writer


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as exc:
        raise TransportConnectError(f"the answer's head is over {_MAX_HEAD} bytes") from exc
    except (asyncio.IncompleteReadError, OSError) as exc:
        raise TransportConnectError(f"the connection closed before an answer: {exc}") from exc
    lines = raw.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise TransportConnectError(f"the answer is not HTTP/1.x: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise TransportConnectError(f"the answer has a malformed header line: {line[:80]!r}")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return int(code), headers


async def _body(
    reader: asyncio.StreamReader, status: int, headers: Mapping[str, str]
) -> AsyncIterator[bytes]:
    try:
        if status in (204, 304) or 100 <= status < 200:
            return
        if "chunked" in headers.get("transfer-encoding", "").lower():
            async for piece in _chunked(reader):
                yield piece
            return
        length = headers.get("content-length")
        if length is not None:
            left = int(length.split(",")[0].strip())
            while left > 0:
                piece = await reader.read(min(left, _CHUNK))
                if not piece:
                    raise TransportConnectError(f"the body ended {left} bytes short")
                left -= len(piece)
                yield piece
            return
        while piece := await reader.read(_CHUNK):
            yield piece
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        raise TransportConnectError(f"the body could not be read: {_describe(exc)}") from exc


async def _chunked(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line.split(b";", 1)[0].strip()
        if not re.fullmatch(rb"[0-9A-Fa-f]{1,15}", size_text):
            raise ValueError(f"bad chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailer fields: not used
            return
        while size > 0:
            piece = await reader.read(min(size, _CHUNK))
            if not piece:
                raise asyncio.IncompleteReadError(b"", size)
            size -= len(piece)
            yield piece
        await reader.readexactly(2)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
