"""The HTTP seam of the model layer: providers speak their wire formats through this, and only
`models/http.py` knows which HTTP library is underneath."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, Protocol
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from promptline.core.errors import ProviderError

DEFAULT_CONNECT_TIMEOUT_SECS: Final = 5.0
"""Time allowed to open a connection to a provider (``connect_timeout_secs``)."""

DEFAULT_FIRST_BYTE_TIMEOUT_SECS: Final = 60.0
"""Time allowed for a provider's answer to start, and for a streamed answer's longest silence
(``first_byte_timeout_secs``)."""

DEFAULT_TIMEOUT_SECS: Final = 600.0
"""Time allowed for a whole model call, streamed or not (``timeout_secs``)."""

TimeLimit = Literal["connect", "first_byte", "total"]
"""Which limit of `Timeouts` ran out."""

Stage = Literal["connect", "first_byte", "body"]
"""What a call was waiting for: a connection, the answer's first byte, or more of its body."""

SETTING_OF: Final[Mapping[TimeLimit, str]] = {
    "connect": "connect_timeout_secs",
    "first_byte": "first_byte_timeout_secs",
    "total": "timeout_secs",
}
"""The provider setting (under ``models.providers.<name>``) behind each limit."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """The time limits of one HTTP call, in seconds.

    ``connect`` bounds opening the connection (TLS and a proxy tunnel included); ``first_byte``
    bounds the wait from the request sent to the first byte of the answer, and for a streamed
    answer every silence between two of its pieces; ``total`` bounds the whole call, waiting for
    a pooled connection included (``math.inf``: no bound). Every limit is also within
    ``total``. A call that is not streamed gets its first byte only once the server has made
    the whole answer, so for it ``first_byte`` bounds the making of the answer too.
    """

    connect: float = DEFAULT_CONNECT_TIMEOUT_SECS
    first_byte: float = DEFAULT_FIRST_BYTE_TIMEOUT_SECS
    total: float = DEFAULT_TIMEOUT_SECS

    def __post_init__(self) -> None:
        for name in ("connect", "first_byte", "total"):
            value = getattr(self, name)
            if not value > 0:  # NaN too
                from promptline.core.errors import ConfigError

                raise ConfigError(
                    f"the {name} timeout must be a positive number of seconds, got {value}",
                    hint="give timeouts in seconds, such as connect 5, first byte 60, total 600",
                )

    @classmethod
    def single(cls, seconds: float, *, stream: bool) -> Timeouts:
        """What one number means to a transport: for a stream, the limit of every wait (the
        connection, the first byte, each gap) with no bound on the whole; otherwise the limit
        of the whole call."""
        return cls(seconds, seconds, math.inf if stream else seconds)

    @classmethod
    def of(cls, timeout: float | Timeouts) -> Timeouts:
        """``timeout`` as limits: a number is the total, with the default connect and
        first-byte limits (each cut to the total when it is shorter)."""
        return timeout if isinstance(timeout, Timeouts) else cls().within(timeout)

    def within(self, total: float | None) -> Timeouts:
        """These limits with the whole call bounded by ``total`` seconds (None or 0: as they
        are), as when a request asks for a time limit of its own."""
        if not total:
            return self
        return Timeouts(min(self.connect, total), min(self.first_byte, total), total)


class TransportError(Exception):
    """The request did not complete at the HTTP level (providers map it to `ProviderError`).

    ``reason`` is what went wrong without the method and URL that the message starts with."""

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason if reason is not None else message


class TransportConnectError(TransportError):
    """The connection was refused, reset or dropped (also mid-stream). ``connecting`` is true
    when it could not be opened at all (nothing was sent)."""

    def __init__(self, message: str, *, reason: str | None = None, connecting: bool = False):
        super().__init__(message, reason=reason)
        self.connecting = connecting


class TransportTimeout(TransportError):
    """No answer in time: ``limit`` ran out (``seconds`` long) while the call waited for
    ``stage``."""

    def __init__(
        self,
        message: str,
        *,
        limit: TimeLimit = "total",
        stage: Stage = "first_byte",
        seconds: float | None = None,
    ) -> None:
        super().__init__(message)
        self.limit: TimeLimit = limit
        self.stage: Stage = stage
        self.seconds = seconds


def timed_out(
    method: str, url: str, limit: TimeLimit, stage: Stage, seconds: float
) -> TransportTimeout:
    """The `TransportTimeout` of a call, worded the same by every transport."""
    if stage == "connect":
        said = f"could not connect within {seconds:g} s"
    elif stage == "first_byte":
        said = f"no answer within {seconds:g} s"
    elif limit == "total":
        said = f"the answer did not complete within {seconds:g} s"
    else:
        said = f"the answer stopped: nothing arrived for {seconds:g} s"
    return TransportTimeout(f"{method} {url}: {said}", limit=limit, stage=stage, seconds=seconds)


def connect_failure(exc: OSError, host: str) -> str:
    """Why a connection to ``host`` could not be opened, in words (not an errno)."""
    import socket
    import ssl

    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: nothing listens on that port"
    if isinstance(exc, socket.gaierror):
        return f"the host name {host!r} cannot be resolved"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"its TLS certificate is not trusted: {exc.verify_message or exc}"
    text = exc.strerror or str(exc)
    return text if text else type(exc).__name__


def provider_failure(
    exc: TransportError, *, provider: str, model: str | None, url: str
) -> ProviderError:
    """The `ProviderError` for a call to ``url`` that failed at the HTTP level: what happened,
    where, which setting (under ``models.providers.<provider>``) limits it, and what to do."""
    from promptline.core.errors import ProviderTimeout, ProviderUnavailable

    key = f"models.providers.{provider}"
    parts = urlsplit(url)
    server = f"{parts.scheme}://{parts.netloc}"
    if isinstance(exc, TransportTimeout):
        setting = SETTING_OF[exc.limit]
        seconds = f"{exc.seconds:g} s" if exc.seconds is not None else "the time allowed"
        if exc.stage == "connect":
            what = f"could not connect to {server} within {seconds} ({setting})"
            hint = (
                f"check that the server at {server} is up and that {key}.base_url is right; "
                f"on a slow network raise {key}.{setting}"
            )
        elif exc.stage == "body" and exc.limit == "total":
            what = f"the answer from {url} did not complete within {seconds} ({setting})"
            hint = f"raise {key}.{setting} for answers this long, or ask for a shorter one"
        elif exc.stage == "body":
            what = f"the answer from {url} stopped: nothing arrived for {seconds} ({setting})"
            hint = f"retry; if the model pauses this long while it thinks, raise {key}.{setting}"
        else:
            what = f"{url} accepted the connection but sent no answer within {seconds} ({setting})"
            hint = (
                f"check that {key}.base_url points at the model API and that the server is "
                f"not stuck; if the model is only slow to start, raise {key}.{setting}"
            )
        return ProviderTimeout(
            what, provider=provider, model=model, hint=hint, url=url, limit=setting
        )
    if isinstance(exc, TransportConnectError) and exc.connecting:
        return ProviderUnavailable(
            f"could not connect to {url}: {exc.reason}",
            provider=provider,
            model=model,
            hint=f"check that the server at {server} is running and that {key}.base_url is right",
            url=url,
        )
    return ProviderUnavailable(
        f"the call to {url} failed: {exc.reason}",
        provider=provider,
        model=model,
        hint="retry; the provider or a proxy on the way cut the connection",
        url=url,
    )


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
        timeout: float | Timeouts,  # noqa: ASYNC109 - a per-call budget the transport enforces itself
    ) -> HttpResponse:
        """Send a request and read the whole answer (a number: the limit of the whole call,
        see `Timeouts.single`)."""
        ...

    def stream(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeout: float | Timeouts,
    ) -> AbstractAsyncContextManager[StreamResponse]:
        """Send a request and receive the answer incrementally (a number: the limit of every
        wait, see `Timeouts.single`)."""
        ...

    async def aclose(self) -> None:
        """Close every pooled connection."""
        ...


def without_key(body: bytes, api_key: str | None) -> bytes:
    """An error answer's ``body`` with ``api_key`` replaced by ``***``: some endpoints quote
    the key they refused, and the error goes on to the event log, the caller and the log."""
    if not api_key:
        return body
    return body.replace(api_key.encode("utf-8"), b"***")


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
