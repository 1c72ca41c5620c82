"""The HTTP seam of the model layer: providers speak their wire formats through this, and only
`models/http.py` knows which HTTP library is underneath."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol


class TransportError(Exception):
    """The request did not complete at the HTTP level (providers map it to `ProviderError`)."""


class TransportConnectError(TransportError):
    """The connection was refused, reset or dropped (also mid-stream)."""


class TransportTimeout(TransportError):
    """No answer in time: the whole call (``request``), or the first byte / any gap between
    chunks (``stream``)."""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A complete answer. Header names are lower-case."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class StreamResponse(Protocol):
    """An answer being received. Header names are lower-case."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def iter_bytes(self) -> AsyncIterator[bytes]:
        """Body chunks as they arrive (raises `TransportError` subclasses)."""
        ...

    async def read(self) -> bytes:
        """The rest of the body (for error answers)."""
        ...


class HttpTransport(Protocol):
    """One shared, keep-alive HTTP client (a pool per host) for every provider."""

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeout: float,  # noqa: ASYNC109 - a per-call budget the transport enforces itself
    ) -> HttpResponse:
        """Send a request and read the whole answer."""
        ...

    def stream(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeout: float,
    ) -> AbstractAsyncContextManager[StreamResponse]:
        """Send a request and receive the answer incrementally."""
        ...

    async def aclose(self) -> None:
        """Close every pooled connection."""
        ...


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """How long a 429/503 answer asks the client to wait: ``retry-after-ms``, else
    ``Retry-After`` as seconds or as an HTTP date (a proxy may send one); None if neither."""
    if not headers:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        from datetime import UTC

        when = when.replace(tzinfo=UTC)
    import time

    return max(when.timestamp() - time.time(), 0.0)
