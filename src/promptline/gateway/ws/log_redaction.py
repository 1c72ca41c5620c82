"""Keeps API keys out of the server's logs: uvicorn logs a WebSocket handshake's path (with
``?token=``), and at debug level the websockets library logs every request header
(``Authorization`` included), before the app sees the connection."""

from __future__ import annotations

import logging
import re

__all__ = ["SERVER_LOGGERS", "SecretRedaction", "install_secret_redaction", "redact"]

SERVER_LOGGERS = ("uvicorn.error", "uvicorn.access", "websockets")
"""The loggers that write what a client sent."""

_SECRETS = (
    # An API key or a refresh token wherever it appears (its secret part is what matters).
    re.compile(r"(pl_(?:key|rt)_[0-9A-Z]{26}_)[A-Za-z0-9_-]+"),
    # A credential sent as a WebSocket subprotocol.
    re.compile(r"(promptline\.bearer\.)[^\s\"',]+"),
    # A token query parameter, whatever it holds.
    re.compile(r"((?:[?&]|%3F|%26)token=)[^&\s\"']*", re.IGNORECASE),
    # Credentials in headers, as the websockets library logs them ("< Authorization: ...").
    re.compile(r"((?:authorization|x-api-key)\s*[:=]\s*)(?:bearer\s+)?[^\s\"',]+", re.IGNORECASE),
)
_MASK = "[redacted]"


def redact(text: str) -> str:
    """``text`` with API keys, ``token`` parameters and credential headers masked."""
    for pattern in _SECRETS:
        text = pattern.sub(lambda m: m.group(1) + _MASK, text)
    return text


class SecretRedaction(logging.Filter):
    """A logging filter that masks secrets in a record's message (it never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's to report
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


def install_secret_redaction(names: tuple[str, ...] = SERVER_LOGGERS) -> None:
    """Add `SecretRedaction` to the server's loggers (once: calling again changes nothing).

    A filter on a logger survives uvicorn's logging configuration, which replaces handlers
    but keeps filters."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, SecretRedaction) for f in logger.filters):
            logger.addFilter(SecretRedaction())
