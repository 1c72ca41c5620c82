"""The REST side of the client: one `httpx.AsyncClient` with the key, JSON in and out, the
gateway's error answers raised as typed exceptions, and Server-Sent Event streams."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import orjson

from promptline import __version__
from promptline.client.errors import error_from_body
from promptline.client.sse import ServerSentEvent, read_events
from promptline.core.errors import PromptLineError, ServiceUnavailableError

__all__ = ["DEFAULT_TIMEOUT", "HttpTransport", "user_agent"]

DEFAULT_TIMEOUT = 30.0


def user_agent() -> str:
    """What the client tells the gateway it is (``promptline-client/VERSION``)."""
    return f"promptline-client/{__version__}"


class HttpTransport:
    """Sends requests to ``base_url`` with ``api_key``; answers are decoded JSON."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        all_headers = {"User-Agent": user_agent(), **(headers or {})}
        if api_key:
            all_headers["Authorization"] = f"Bearer {api_key}"
        self.http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=all_headers,
            timeout=timeout,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        timeout: Any = httpx.USE_CLIENT_DEFAULT,  # noqa: ASYNC109 - httpx enforces it per request
    ) -> Any:
        """The decoded JSON answer (None for an empty one); the error answer raised."""
        content = orjson.dumps(json) if json is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else None
        try:
            response = await self.http.request(
                method,
                path,
                params=clean(params),
                content=content,
                headers=headers,
                timeout=timeout,
            )
        except httpx.TransportError as exc:
            raise self.unreachable(exc) from exc
        if response.is_error:
            raise self.error_of(response)
        if not response.content:
            return None
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise ServiceUnavailableError(
                f"{method} {path} answered something that is not JSON",
                hint="is base_url the PromptLine gateway (and not a proxy's page)?",
                status=response.status_code,
            ) from None

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[AsyncIterator[ServerSentEvent]]:
        """An event stream's frames; closing the context closes the connection."""
        content = orjson.dumps(json) if json is not None else None
        all_headers = {"Accept": "text/event-stream", **(headers or {})}
        if content is not None:
            all_headers["Content-Type"] = "application/json"
        # No read timeout: a stream may be quiet for long (a run waiting for an approval).
        timeout = httpx.Timeout(self.http.timeout.connect, read=None)
        request = self.http.build_request(
            method,
            path,
            params=clean(params),
            content=content,
            headers=all_headers,
            timeout=timeout,
        )
        try:
            response = await self.http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise self.unreachable(exc) from exc
        try:
            if response.is_error:
                await response.aread()
                raise self.error_of(response)
            yield read_events(response.aiter_lines())
        finally:
            await response.aclose()

    def error_of(self, response: httpx.Response) -> PromptLineError:
        """The typed exception for an error answer."""
        try:
            body = orjson.loads(response.content) if response.content else None
        except orjson.JSONDecodeError:
            body = None
        request = response.request
        return error_from_body(
            response.status_code,
            body,
            retry_after=response.headers.get("retry-after"),
            fallback=f"{request.method} {request.url.path}: HTTP {response.status_code}",
        )

    def unreachable(self, exc: httpx.TransportError) -> PromptLineError:
        """The exception for a request that got no answer."""
        if isinstance(exc, httpx.TimeoutException):
            return ServiceUnavailableError(
                f"the gateway at {self.base_url} did not answer in time ({type(exc).__name__})",
                hint="retry, or pass a longer timeout",
            )
        return ServiceUnavailableError(
            f"cannot reach the gateway at {self.base_url}: {exc or type(exc).__name__}",
            hint="is `promptline serve` running there, and is the URL right?",
        )


def clean(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Query parameters without the unset ones (booleans as true/false)."""
    if not params:
        return None
    out: dict[str, Any] = {}
    for name, value in params.items():
        if value is None:
            continue
        out[name] = ("true" if value else "false") if isinstance(value, bool) else value
    return out
