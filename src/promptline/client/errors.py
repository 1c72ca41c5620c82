"""The gateway's error answers as typed exceptions: the `promptline.core.errors` class that
has the answer's ``code`` (`ClientError` for a code this client does not know), with the
server's message, hint and details."""

from __future__ import annotations

from typing import Any

from promptline.core import errors as core
from promptline.core.errors import (
    AuthenticationError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    PromptLineError,
    RateLimitedError,
    ServiceUnavailableError,
)

__all__ = [
    "ClientError",
    "ConnectionLostError",
    "error_from_body",
    "error_from_rpc",
    "error_from_status",
]


class ClientError(PromptLineError):
    """An error answer whose ``code`` this client has no class for (a newer server, or a
    failure such as ``internal_error``). ``code`` is the server's; ``status`` the HTTP status
    (None over the WebSocket)."""

    code = "client_error"

    def __init__(
        self,
        message: str,
        *,
        code: str,
        status: int | None = None,
        hint: str | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message, hint=hint, **details)
        self.code = code
        self.status = status


class ConnectionLostError(ServiceUnavailableError):
    """The WebSocket closed while a request was in flight: it may or may not have been
    carried out. Read the state back (or retry what is safe to repeat)."""

    code = "connection_lost"


def _classes() -> dict[str, type[PromptLineError]]:
    found: dict[str, type[PromptLineError]] = {}
    for value in vars(core).values():
        if isinstance(value, type) and issubclass(value, PromptLineError):
            found.setdefault(value.code, value)
    # Codes of failures outside an endpoint: HTTP (no route, no credentials) and JSON-RPC
    # (no such method, a malformed frame). The exception keeps the server's code.
    found["forbidden"] = PermissionDeniedError
    found["method_not_found"] = NotFoundError
    found["invalid_request"] = InvalidInputError
    return found


_BY_CODE = _classes()

_BY_STATUS: dict[int, type[PromptLineError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    413: PayloadTooLargeError,
    422: InvalidInputError,
    429: RateLimitedError,
}

# Attributes some error classes carry besides message, hint and details.
_ATTRIBUTES = ("retry_after", "provider", "model", "status", "last_seq", "last_position")


def build_error(
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    *,
    status: int | None = None,
    retry_after: float | None = None,
) -> PromptLineError:
    """The exception for an error answer: the core class registered for ``code``."""
    details = dict(details or {})
    hint = details.pop("hint", None)
    hint = hint if isinstance(hint, str) else None
    kind = _BY_CODE.get(code)
    if kind is None:
        return ClientError(message, code=code, status=status, hint=hint, **details)
    # The core classes' constructors differ (some compute their own hint); build each the
    # same way so the server's message, hint and details are what the caller sees.
    error = kind.__new__(kind)
    PromptLineError.__init__(error, message, hint=hint, **details)
    if error.code != code:
        error.code = code
    for name in _ATTRIBUTES:
        if name in details:
            setattr(error, name, details[name])
    if isinstance(error, RateLimitedError):
        seconds = retry_after if retry_after is not None else details.get("retry_after")
        error.retry_after = float(seconds) if isinstance(seconds, int | float) else 1.0
    return error


def error_from_body(
    status: int, body: Any, *, retry_after: str | None = None, fallback: str = ""
) -> PromptLineError:
    """The exception for an HTTP error answer (``body`` is its decoded JSON, or anything
    else when the answer did not come from the gateway)."""
    seconds = _seconds(retry_after)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        details = error.get("details")
        return build_error(
            error["code"],
            str(error.get("message") or error["code"]),
            details if isinstance(details, dict) else {},
            status=status,
            retry_after=seconds,
        )
    return error_from_status(status, fallback or f"HTTP {status}", retry_after=seconds)


def error_from_status(
    status: int, message: str, *, retry_after: float | None = None
) -> PromptLineError:
    """The exception for an HTTP status without the gateway's error body (a proxy's page)."""
    kind = _BY_STATUS.get(status)
    if kind is not None:
        return build_error(kind.code, message, status=status, retry_after=retry_after)
    if status >= 500:
        return ServiceUnavailableError(
            message, hint="the server or a proxy in front of it failed; retry later", status=status
        )
    return ClientError(message, code=f"http_{status}", status=status)


_RPC_CODES: dict[int, tuple[str, str | None]] = {
    -32700: ("invalid_input", "the frame was not JSON"),
    -32600: ("invalid_input", "the frame is not a JSON-RPC 2.0 request"),
    -32601: ("not_found", "the server does not know this method; is it an older version?"),
    -32602: ("invalid_input", None),
}


def error_from_rpc(error: Any) -> PromptLineError:
    """The exception for a JSON-RPC error object (``{"code", "message", "data"}``)."""
    if not isinstance(error, dict):
        return ClientError(f"malformed JSON-RPC error: {error!r}", code="bad_response")
    message = str(error.get("message") or "error")
    data = error.get("data")
    if isinstance(data, dict) and isinstance(data.get("code"), str):
        details = data.get("details")
        return build_error(data["code"], message, details if isinstance(details, dict) else {})
    number = error.get("code")
    code, hint = (
        _RPC_CODES.get(number, ("rpc_error", None))
        if isinstance(number, int)
        else (
            "rpc_error",
            None,
        )
    )
    extra: dict[str, Any] = {"rpc_code": number}
    if hint:
        extra["hint"] = hint
    return build_error(code, message, extra)


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
