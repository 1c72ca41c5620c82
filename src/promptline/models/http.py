"""`SharedHttpTransport`: the one keep-alive HTTP client every model provider talks through,
built on aiohttp (imported on first use, so importing the model layer stays cheap)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING

from promptline.core.errors import ConfigError
from promptline.models.transport import (
    HttpResponse,
    Stage,
    StreamResponse,
    Timeouts,
    TransportConnectError,
    TransportError,
    connect_failure,
    timed_out,
)

if TYPE_CHECKING:
    import aiohttp

__all__ = ["SharedHttpTransport"]


class SharedHttpTransport:
    """An `HttpTransport` with a pool of keep-alive connections per host.

    ``max_connections_per_host`` bounds the open connections to one host (further requests
    wait for a free one); hosts do not share a limit. The client is created on first use in the
    running event loop; `aclose` closes every pooled connection. Proxies are taken from the
    ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY`` environment variables. Of `Timeouts`,
    ``first_byte`` bounds every read (aiohttp has no separate limit for the first one).
    """

    def __init__(self, *, max_connections_per_host: int = 100) -> None:
        """Configure the pool; no connection is opened until the first request."""
        if max_connections_per_host < 1:
            raise ConfigError(
                f"max_connections_per_host must be at least 1, got {max_connections_per_host}",
                hint="give the number of parallel connections allowed to one provider, such as 100",
            )
        self._per_host = max_connections_per_host
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._proxies: dict[tuple[str, str], str | None] = {}

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeout: float | Timeouts,  # noqa: ASYNC109 - the HttpTransport protocol's shape
    ) -> HttpResponse:
        """Send a request and read the whole answer within ``timeout``."""
        import aiohttp

        if not isinstance(timeout, Timeouts):
            timeout = Timeouts.single(timeout, stream=False)
        session = self._client()
        stage: Stage = "first_byte"
        try:
            async with session.request(
                method,
                url,
                headers=dict(headers),
                data=body,
                timeout=_client_timeout(timeout),
                proxy=self._proxy_for(url),
            ) as answer:
                stage = "body"
                data = await answer.read()
                return HttpResponse(answer.status, _headers(answer), data)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _translate(exc, method, url, timeout, stage) from exc

    def stream(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeout: float | Timeouts,
    ) -> AbstractAsyncContextManager[StreamResponse]:
        """Send a request and receive the answer in chunks, within ``timeout`` (one number
        bounds the connection, the first byte and every gap between chunks, not the whole
        answer)."""
        if not isinstance(timeout, Timeouts):
            timeout = Timeouts.single(timeout, stream=True)
        return self._stream(method, url, dict(headers), body, timeout)

    @asynccontextmanager
    async def _stream(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, limits: Timeouts
    ) -> AsyncIterator[StreamResponse]:
        import aiohttp

        session = self._client()
        try:
            context = session.request(
                method,
                url,
                headers=headers,
                data=body,
                timeout=_client_timeout(limits),
                proxy=self._proxy_for(url),
            )
            answer = await context.__aenter__()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _translate(exc, method, url, limits, "first_byte") from exc
        try:
            yield _StreamingAnswer(answer, method, url, limits)
        finally:
            if not answer.content.at_eof():
                # Left unread (cut short by the caller): the connection cannot be reused.
                answer.close()
            await context.__aexit__(None, None, None)

    async def aclose(self) -> None:
        """Close every pooled connection; a later request opens new ones."""
        session, self._session, self._loop = self._session, None, None
        if session is not None and not session.closed:
            await session.close()

    def _client(self) -> aiohttp.ClientSession:
        import aiohttp

        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            # A client is tied to the loop it was made in; a new loop (a new asyncio.run) gets
            # its own, the old one having died with its loop.
            connector = aiohttp.TCPConnector(
                limit=0, limit_per_host=self._per_host, keepalive_timeout=30
            )
            # trust_env would look up ~/.netrc and the proxy variables in a worker thread on
            # every request (two thread hops, most of a local call's cost); proxies are
            # resolved once per host in `_proxy_for` instead, and API calls need no cookies.
            self._session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,
                auto_decompress=True,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            self._loop = loop
        return self._session

    def _proxy_for(self, url: str) -> str | None:
        """The proxy for ``url`` from HTTPS_PROXY / HTTP_PROXY / NO_PROXY, looked up once per
        scheme and host."""
        scheme, _, rest = url.partition("://")
        host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
        key = (scheme, host)
        if key not in self._proxies:
            import urllib.request

            proxies = urllib.request.getproxies()
            proxy = proxies.get(scheme)
            if proxy and urllib.request.proxy_bypass(host.rsplit(":", 1)[0]):
                proxy = None
            self._proxies[key] = proxy or None
        return self._proxies[key]


class _StreamingAnswer:
    """A `StreamResponse` over an aiohttp answer, translating its errors."""

    __slots__ = ("_answer", "_headers", "_method", "_timeout", "_url")

    def __init__(
        self, answer: aiohttp.ClientResponse, method: str, url: str, timeout: Timeouts
    ) -> None:
        self._answer = answer
        self._headers = _headers(answer)
        self._method = method
        self._url = url
        self._timeout = timeout

    @property
    def status(self) -> int:
        """The HTTP status code."""
        return self._answer.status

    @property
    def headers(self) -> Mapping[str, str]:
        """The answer's headers, names lower-case."""
        return self._headers

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        """Body chunks as they arrive."""
        import aiohttp

        content = self._answer.content
        while True:
            try:
                chunk = await content.readany()
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise _translate(exc, self._method, self._url, self._timeout, "body") from exc
            if not chunk:
                return
            yield chunk

    async def read(self) -> bytes:
        """The rest of the body."""
        import aiohttp

        try:
            return await self._answer.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _translate(exc, self._method, self._url, self._timeout, "body") from exc


def _client_timeout(limits: Timeouts) -> aiohttp.ClientTimeout:
    import aiohttp

    total = None if limits.total == math.inf else limits.total
    return aiohttp.ClientTimeout(
        total=total, sock_connect=limits.connect, sock_read=limits.first_byte
    )


def _headers(answer: aiohttp.ClientResponse) -> dict[str, str]:
    return {name.lower(): value for name, value in answer.headers.items()}


def _translate(
    exc: BaseException, method: str, url: str, limits: Timeouts, stage: Stage
) -> TransportError:
    import aiohttp

    where = f"{method} {url}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return timed_out(method, url, "connect", "connect", limits.connect)
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return timed_out(method, url, "first_byte", stage, limits.first_byte)
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return timed_out(method, url, "total", stage, limits.total)
    if isinstance(exc, aiohttp.ClientConnectorError):
        # Could not connect (refused, unknown host, untrusted certificate): nothing was sent.
        reason = connect_failure(exc.os_error, exc.host)
        return TransportConnectError(
            f"{where}: cannot connect: {reason}", reason=reason, connecting=True
        )
    if isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
        reason = _describe(exc)
        return TransportConnectError(f"{where}: {reason}", reason=reason)
    return TransportError(f"{where}: {_describe(exc)}", reason=_describe(exc))


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return text if text else type(exc).__name__
