"""`SharedHttpTransport`: the one keep-alive HTTP client every model provider talks through,
built on aiohttp (imported on first use, so importing the model layer stays cheap)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING

from promptline.core.errors import ConfigError
from promptline.models.transport import (
    HttpResponse,
    StreamResponse,
    TransportConnectError,
    TransportError,
    TransportTimeout,
)

if TYPE_CHECKING:
    import aiohttp

__all__ = ["SharedHttpTransport"]


class SharedHttpTransport:
    """An `HttpTransport` with a pool of keep-alive connections per host.

    ``max_connections_per_host`` bounds the open connections to one host (further requests
    wait for a free one); hosts do not share a limit. The client is created on first use in the
    running event loop; `aclose` closes every pooled connection. Proxies are taken from the
    ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY`` environment variables.
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
        timeout: float,  # noqa: ASYNC109 - the HttpTransport protocol's shape
    ) -> HttpResponse:
        """Send a request and read the whole answer within ``timeout`` seconds."""
        import aiohttp

        session = self._client()
        try:
            async with session.request(
                method,
                url,
                headers=dict(headers),
                data=body,
                timeout=aiohttp.ClientTimeout(total=timeout),
                proxy=self._proxy_for(url),
            ) as answer:
                data = await answer.read()
                return HttpResponse(answer.status, _headers(answer), data)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _translate(exc, method, url, timeout) from exc

    def stream(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeout: float,
    ) -> AbstractAsyncContextManager[StreamResponse]:
        """Send a request and receive the answer in chunks; ``timeout`` bounds the wait for the
        connection, for the first byte and for every gap between chunks, not the whole answer."""
        return self._stream(method, url, dict(headers), body, timeout)

    @asynccontextmanager
    async def _stream(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, seconds: float
    ) -> AsyncIterator[StreamResponse]:
        import aiohttp

        session = self._client()
        limits = aiohttp.ClientTimeout(total=None, connect=seconds, sock_read=seconds)
        try:
            context = session.request(
                method, url, headers=headers, data=body, timeout=limits, proxy=self._proxy_for(url)
            )
            answer = await context.__aenter__()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _translate(exc, method, url, seconds) from exc
        try:
            yield _StreamingAnswer(answer, method, url, seconds)
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
        self, answer: aiohttp.ClientResponse, method: str, url: str, timeout: float
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
                raise _translate(exc, self._method, self._url, self._timeout) from exc
            if not chunk:
                return
            yield chunk

    async def read(self) -> bytes:
        """The rest of the body."""
        import aiohttp

        try:
            return await self._answer.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _translate(exc, self._method, self._url, self._timeout) from exc


def _headers(answer: aiohttp.ClientResponse) -> dict[str, str]:
    return {name.lower(): value for name, value in answer.headers.items()}


def _translate(exc: BaseException, method: str, url: str, timeout: float) -> TransportError:
    import aiohttp

    where = f"{method} {url}"
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return TransportTimeout(f"{where}: no answer within {timeout:g} s")
    if isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
        return TransportConnectError(f"{where}: {_describe(exc)}")
    return TransportError(f"{where}: {_describe(exc)}")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return text if text else type(exc).__name__
