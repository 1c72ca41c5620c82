"""Who may open the control plane: a browser only from an allowed Origin (a program sends
none), and only with a valid API key or access token, sent in the ``Authorization`` (or
``X-API-Key``) header or, from a browser (which cannot set headers on a WebSocket), as the
subprotocol ``promptline.bearer.<token>``. A token in the URL is refused: URLs get logged.
The refusals are close codes the client can read."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.websockets import WebSocket

from promptline.core.errors import AuthenticationError, RateLimitedError
from promptline.gateway.deps import authenticate, gateway, source_of
from promptline.security.auth import Caller

__all__ = [
    "APP_PROTOCOL",
    "BEARER_PROTOCOL",
    "CLOSE_CHANNEL_OFF",
    "CLOSE_ORIGIN_REFUSED",
    "CLOSE_RATE_LIMITED",
    "CLOSE_UNAUTHORIZED",
    "Refusal",
    "admit",
    "offered",
    "origin_allowed",
    "redact_token",
    "selected_subprotocol",
]

CLOSE_UNAUTHORIZED = 4401
CLOSE_ORIGIN_REFUSED = 4403
CLOSE_CHANNEL_OFF = 4404
CLOSE_RATE_LIMITED = 4429

BEARER_PROTOCOL = "promptline.bearer."
"""A subprotocol ``promptline.bearer.<token>`` carries a browser's credential."""
APP_PROTOCOL = "promptline"
"""The subprotocol the server selects when a client offers it (a browser offering subprotocols
needs one selected; it sends ``promptline`` beside its bearer one)."""


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
        host = websocket.headers.get("host")
        if origin is not None and not origin_allowed(origin, allowed, host=host):
            return Refusal(CLOSE_ORIGIN_REFUSED, "origin not allowed: add it to allowed_origins")
        if "token" in websocket.query_params:
            why = (
                "token in URL refused (URLs get logged): send Authorization header or "
                "subprotocol promptline.bearer.<token>"
            )
            # A handshake without an accepted credential is a failed login like any other.
            await gateway(websocket).app.audit.failed_login(
                source_of(websocket), key_id=None, reason=why
            )
            return Refusal(CLOSE_UNAUTHORIZED, why)
        bearer = next(
            (
                p[len(BEARER_PROTOCOL) :]
                for p in offered(websocket)
                if p.startswith(BEARER_PROTOCOL)
            ),
            None,
        )
        try:
            return await authenticate(websocket, token=bearer)
        except AuthenticationError as exc:
            return Refusal(CLOSE_UNAUTHORIZED, _short(f"unauthorized: {exc.message}"))
        except RateLimitedError as exc:
            return Refusal(
                CLOSE_RATE_LIMITED, f"rate limited: retry in {max(1, round(exc.retry_after))} s"
            )
    finally:
        redact_token(websocket)


def selected_subprotocol(websocket: WebSocket) -> str | None:
    """The subprotocol to accept ``websocket`` with: `APP_PROTOCOL` when the client offered
    it (a browser that offers subprotocols fails a connection that selects none), else
    none."""
    return APP_PROTOCOL if APP_PROTOCOL in offered(websocket) else None


def origin_allowed(origin: str, allowed: list[str], *, host: str | None = None) -> bool:
    """True when ``origin`` is one of ``allowed`` (scheme, host and port, in any case; a
    trailing slash does not count), or, with the request's ``host`` given, a loopback origin
    of the gateway itself (``http://localhost:8080`` asking ``localhost:8080``: its own
    page; a name that only resolves to loopback, as in DNS rebinding, is not one)."""
    wanted = origin.strip().rstrip("/").lower()
    if any(wanted == entry.strip().rstrip("/").lower() for entry in allowed):
        return True
    return host is not None and _same_loopback_origin(wanted, host.strip().lower())


def _same_loopback_origin(origin: str, host: str) -> bool:
    try:
        parts = urlsplit(origin)
        hostname, port = parts.hostname, parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or hostname is None or not _is_loopback(hostname):
        return False
    netloc = parts.netloc
    default = {"http": 80, "https": 443}[parts.scheme]
    same = {netloc, f"{netloc}:{default}"} if port is None else {netloc}
    if port == default:
        same.add(netloc.rsplit(":", 1)[0])
    return host in same


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname.strip("[]")).is_loopback
    except ValueError:
        return False


def offered(websocket: WebSocket) -> list[str]:
    """The subprotocols the client offered, in its order."""
    raw = websocket.headers.get("sec-websocket-protocol", "")
    return [p.strip() for p in raw.split(",") if p.strip()]


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
