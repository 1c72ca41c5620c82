"""The HTTP client of MCP servers over HTTP: each connection it opens goes to an address the
egress policy allows (`promptline.security.egress`), checked as the connection is opened (the
first one, a reconnection, a redirect's), and made to the address that was checked, so a
second DNS answer cannot move it (DNS rebinding). Through a proxy (``HTTPS_PROXY`` /
``HTTP_PROXY``, unless ``NO_PROXY`` covers the host) the connection is a ``CONNECT`` tunnel to
the checked address, so the proxy does not resolve the name either."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpcore2
import httpx2

from promptline.security.egress import EgressPolicy, Resolver
from promptline.tools.proxies import Proxy, proxy_for

__all__ = ["EgressBackend", "EgressTransport", "egress_http_client"]

_MAX_PROXY_HEAD = 64 * 1024
# httpx's own pool limits: a Streamable HTTP session holds a stream open per call in flight.
_LIMITS = httpx2.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)


class EgressBackend(httpcore2.AsyncNetworkBackend):
    """Opens httpcore2's TCP connections only where ``policy`` allows: the host is resolved
    once (with ``resolver``, by default the system's), every address it has is checked, and the
    connection goes to a checked address, directly or through a ``CONNECT`` tunnel of
    ``proxy``. A refused host is `EgressRefused`."""

    def __init__(
        self, policy: EgressPolicy, *, resolver: Resolver | None = None, proxy: Proxy | None = None
    ) -> None:
        self.policy = policy
        self.resolver = resolver
        self.proxy = proxy
        self._inner = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore2's backend shape
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        try:
            addresses = await self.policy.checked(host, port, self.resolver)
        except OSError as exc:
            raise httpcore2.ConnectError(
                f"the name {host} could not be resolved ({exc.strerror or exc})"
            ) from exc
        errors: list[str] = []
        for address in addresses:
            try:
                if self.proxy is None:
                    return await self._inner.connect_tcp(
                        address,
                        port,
                        timeout=timeout,
                        local_address=local_address,
                        socket_options=socket_options,
                    )
                return await self._tunnel(self.proxy, address, port, timeout)
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                errors.append(f"{address}: {exc or type(exc).__name__}")
        via = f" through the proxy {self.proxy.shown}" if self.proxy is not None else ""
        raise httpcore2.ConnectError(f"cannot connect to {host}:{port}{via} ({'; '.join(errors)})")

    async def _tunnel(
        self,
        proxy: Proxy,
        address: str,
        port: int,
        timeout: float | None,  # noqa: ASYNC109 - handed to httpcore2's streams
    ) -> httpcore2.AsyncNetworkStream:
        # The tunnel names the checked address, not the host: the proxy must not resolve again.
        stream = await self._inner.connect_tcp(proxy.host, proxy.port, timeout=timeout)
        where = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        auth = f"Proxy-Authorization: {proxy.auth}\r\n" if proxy.auth else ""
        try:
            request = f"CONNECT {where} HTTP/1.1\r\nHost: {where}\r\n{auth}\r\n"
            await stream.write(request.encode("latin-1"), timeout=timeout)
            head = b""
            while b"\r\n\r\n" not in head:
                piece = await stream.read(_MAX_PROXY_HEAD, timeout=timeout)
                if not piece or len(head) + len(piece) > _MAX_PROXY_HEAD:
                    raise httpcore2.ProxyError(
                        f"the proxy {proxy.shown} did not answer CONNECT {where}"
                    )
                head += piece
            status_line, _, _ = head.partition(b"\r\n")
            words = status_line.decode("latin-1").split(" ", 2)
            if len(words) < 2 or words[1] != "200":
                raise httpcore2.ProxyError(
                    f"the proxy {proxy.shown} refused to open a tunnel to {where}: "
                    f"{status_line.decode('latin-1')[:80]}"
                )
        except BaseException:
            await stream.aclose()
            raise
        return stream

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore2's backend shape
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        raise httpcore2.ConnectError(f"{path}: Unix sockets are not reached over HTTP egress")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _PinnedTransport(httpx2.AsyncHTTPTransport):
    """httpx2's transport over a pool whose connections `EgressBackend` opens."""

    def __init__(self, backend: EgressBackend, ssl_context: Any) -> None:
        super().__init__(verify=ssl_context, limits=_LIMITS)
        # httpx2's transport takes no network backend: its pool is replaced by one that has
        # it (the request and error mapping stay httpx2's).
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=_LIMITS.max_connections,
            max_keepalive_connections=_LIMITS.max_keepalive_connections,
            keepalive_expiry=_LIMITS.keepalive_expiry,
            network_backend=backend,
        )


class EgressTransport(httpx2.AsyncBaseTransport):
    """Sends each request over connections that only reach where ``policy`` allows: directly,
    or through the proxy the environment names for the request's URL."""

    def __init__(self, policy: EgressPolicy, *, resolver: Resolver | None = None) -> None:
        self.policy = policy
        self.resolver = resolver
        self._ssl = httpx2.create_ssl_context()
        self._transports: dict[Proxy | None, _PinnedTransport] = {}

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        proxy = proxy_for(request.url.scheme, request.url.host)
        transport = self._transports.get(proxy)
        if transport is None:
            backend = EgressBackend(self.policy, resolver=self.resolver, proxy=proxy)
            transport = self._transports[proxy] = _PinnedTransport(backend, self._ssl)
        return await transport.handle_async_request(request)

    async def aclose(self) -> None:
        transports, self._transports = list(self._transports.values()), {}
        for transport in transports:
            await transport.aclose()


def egress_http_client(
    policy: EgressPolicy,
    *,
    timeout: httpx2.Timeout,
    resolver: Resolver | None = None,
    headers: dict[str, str] | None = None,
    auth: httpx2.Auth | None = None,
) -> httpx2.AsyncClient:
    """An ``httpx2.AsyncClient`` whose connections only reach where ``policy`` allows (names
    looked up with ``resolver``, by default the system's), with ``timeout``, ``headers`` on
    every request and ``auth``."""
    return httpx2.AsyncClient(
        headers=headers,
        timeout=timeout,
        auth=auth,
        transport=EgressTransport(policy, resolver=resolver),
    )
