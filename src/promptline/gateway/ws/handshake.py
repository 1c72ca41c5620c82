"""Who may open the control plane: a browser only from an allowed Origin (a program sends
none), and only with a valid API key. The refusals are close codes the client can read."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

from starlette.websockets import WebSocket

from promptline.core.errors import AuthenticationError, RateLimitedError
from promptline.gateway.deps import authenticate, gateway
from promptline.security.auth import Caller

__all__ = [
    "CLOSE_CHANNEL_OFF",
    "CLOSE_ORIGIN_REFUSED",
    "CLOSE_RATE_LIMITED",
    "CLOSE_UNAUTHORIZED",
    "Refusal",
    "admit",
    "origin_allowed",
    "redact_token",
]

CLOSE_UNAUTHORIZED = 4401
CLOSE_ORIGIN_REFUSED = 4403
CLOSE_CHANNEL_OFF = 4404
CLOSE_RATE_LIMITED = 4429


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a handshake is refused: the close code and a reason (at most 123 bytes)."""

    code: int
    reason: str


async def admit(websocket: WebSocket) -> Caller | Refusal:
    """The caller of a handshake, or why it is refused. Either way the ``token`` query
    parameter is gone from the connection's scope afterwards (see `redact_token`)."""
    try:
        settings = gateway(websocket).app.settings
        if not settings.channels.websocket.enabled:
            return Refusal(CLOSE_CHANNEL_OFF, "channel off: set channels.websocket.enabled: true")
        origin = websocket.headers.get("origin")
        allowed = settings.gateway.allowed_origins
        if origin is not None and not origin_allowed(origin, allowed):
            return Refusal(CLOSE_ORIGIN_REFUSED, "origin not allowed: add it to allowed_origins")
        try:
            return await authenticate(websocket, query=True)
        except AuthenticationError as exc:
            return Refusal(CLOSE_UNAUTHORIZED, _short(f"unauthorized: {exc.message}"))
        except RateLimitedError as exc:
            return Refusal(
                CLOSE_RATE_LIMITED, f"rate limited: retry in {max(1, round(exc.retry_after))} s"
            )
    finally:
        redact_token(websocket)


def origin_allowed(origin: str, allowed: list[str]) -> bool:
    """True when ``origin`` is one of ``allowed`` (scheme, host and port, in any case; a
    trailing slash does not count)."""
    wanted = origin.strip().rstrip("/").lower()
    return any(wanted == entry.strip().rstrip("/").lower() for entry in allowed)


def redact_token(websocket: WebSocket) -> None:
    """Take the ``token`` query parameter out of the connection's scope, in place.

    The server logs the handshake's path with its query from this very scope (uvicorn's
    ``"WebSocket /v1/ws?..." [accepted]``), and so may any middleware or error reporter
    that reads it later; the key, once checked, is no one's business.
    """
    scope = websocket.scope
    raw = scope.get("query_string", b"")
    if b"token" not in raw:
        return
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    kept = [(name, value) for name, value in pairs if name != "token"]
    scope["query_string"] = urlencode(kept).encode("latin-1")


def _short(reason: str, limit: int = 123) -> str:
    encoded = reason.encode()
    if len(encoded) <= limit:
        return reason
    return encoded[: limit - 3].decode(errors="ignore") + "..."
