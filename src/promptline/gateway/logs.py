"""The gateway's log: one access line per HTTP request and two per WebSocket connection (its
open and its close), and how the process writes its log (``logging.level``, ``logging.format``:
readable lines or JSON lines).

An access line names the method, the path (never the query, which may carry a ``token``), the
status, the time taken and the id of the API key that was checked (``-`` when none was),
never a key itself: ``GET /v1/agents 200 1.4 ms key_01J...``. A WebSocket's lines:
``WS /v1/ws open key_01J...`` and ``WS /v1/ws close 1000 after 12.5 s key_01J...``.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from _typeshed import SupportsWrite
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from promptline.config.settings import LoggingSettings

__all__ = [
    "ACCESS_LOGGER",
    "KEY_ID_SCOPE",
    "AccessLog",
    "JsonLines",
    "announce",
    "configure_logging",
]

ACCESS_LOGGER = "promptline.access"
GATEWAY_LOGGER = "promptline.gateway"
KEY_ID_SCOPE = "promptline.key_id"
"""The scope entry where authentication leaves the checked key's id for the access line."""

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
TEXT_DATE_FORMAT = "%Y-%m-%d %H:%M:%S%z"
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_SAFE_PATH = "/:@!$&'()*+,;=-._~%"


class TextLines(logging.Formatter):
    """``2025-06-02 14:03:11+0000 INFO promptline.access: GET /v1/agents 200 1.4 ms -``; the
    time is worked out once a second (most lines of a busy log share it)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT, TEXT_DATE_FORMAT)
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime(TEXT_DATE_FORMAT, time.localtime(second))
            self._second = second
        return self._stamp


class JsonLines(logging.Formatter):
    """One JSON object per line: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``,
    an access line's fields (``kind``, ``method``, ``path``, ``status``, ``ms``, ``key_id``,
    and for a WebSocket ``event``, ``close_code``), and ``error`` with a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        import orjson

        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "access", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(settings: LoggingSettings, stream: SupportsWrite[str]) -> logging.Handler:
    """Send the process's log records to ``stream`` in ``settings.format``: PromptLine's own
    at ``settings.level`` and above, other libraries' (uvicorn, websockets) at warning and
    above, with API keys masked. Returns the handler (replacing any the root logger had)."""
    from promptline.gateway.ws.log_redaction import SecretRedaction

    redaction = SecretRedaction()

    def masked(record: logging.LogRecord) -> bool:
        # Access lines are made without a key (see `_path`): a request does not pay for
        # three more regular expressions.
        return record.name == ACCESS_LOGGER or redaction.filter(record)

    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLines() if settings.format == "json" else TextLines())
    handler.addFilter(masked)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    # Other libraries' debug and info lines are theirs to turn on: aiosqlite's debug lines,
    # for one, quote the data written.
    root.setLevel(logging.WARNING)
    logging.getLogger("promptline").setLevel(_LEVELS[settings.level])
    # Python's warnings become records too, so a JSON log holds nothing but JSON lines.
    logging.captureWarnings(True)
    return handler


def announce(message: str, *args: object) -> None:
    """A line of the gateway's life (starting, serving, stopped): written in the log's format
    whatever ``logging.level`` is, since `promptline logs` and `promptline start` read them."""
    logger = logging.getLogger(GATEWAY_LOGGER)
    logger.handle(logger.makeRecord(logger.name, logging.INFO, "(gateway)", 0, message, args, None))


class AccessLog:
    """ASGI middleware writing the access lines; outside every other layer of the app, so a
    request refused before a route (413) or failing in one (500) has its line too.

    A line costs about 20 µs (a record made, formatted and written); when the level leaves
    access lines out, a request pays one level check (about 1 µs).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._log = logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" and self._log.isEnabledFor(logging.INFO):
            await self._http(scope, receive, send)
        elif kind == "websocket" and self._log.isEnabledFor(logging.INFO):
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            # No answer started: the server answers 500 (or the app failed before answering).
            status = status or 500
            ms = (time.perf_counter() - started) * 1000
            method = scope["method"]
            path = _path(scope)
            key_id = scope.get(KEY_ID_SCOPE) or "-"
            fields = {
                "kind": "http",
                "method": method,
                "path": path,
                "status": status,
                "ms": round(ms, 3),
                "key_id": key_id,
            }
            self._write("%s %s %d %.1f ms %s", (method, path, status, ms, key_id), fields)

    def _write(self, message: str, args: tuple[object, ...], fields: dict[str, Any]) -> None:
        # Straight to the handlers: the level was checked when the request came in, and the
        # caller's frame (which `Logger.info` looks for) says nothing here.
        log = self._log
        record = log.makeRecord(
            log.name, logging.INFO, __file__, 0, message, args, None, extra={"access": fields}
        )
        log.handle(record)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = _path(scope)
        opened: float | None = None
        close_code: int | None = None

        async def sending(message: Message) -> None:
            nonlocal opened, close_code
            kind = message["type"]
            if kind == "websocket.accept":
                opened = time.perf_counter()
                self._ws_line("open", path, scope)
            elif kind == "websocket.close" and close_code is None:
                close_code = int(message.get("code") or 1000)
            await send(message)

        async def receiving() -> Message:
            nonlocal close_code
            message = await receive()
            if message["type"] == "websocket.disconnect" and close_code is None:
                close_code = int(message.get("code") or 1005)
            return message

        try:
            await self.app(scope, receiving, sending)
        finally:
            if opened is None:
                # Closed before it was accepted: the client got an HTTP 403.
                self._ws_line("refused", path, scope, close_code=close_code or 1006)
            else:
                ms = (time.perf_counter() - opened) * 1000
                self._ws_line("close", path, scope, close_code=close_code or 1006, ms=ms)

    def _ws_line(
        self,
        event: str,
        path: str,
        scope: Scope,
        *,
        close_code: int | None = None,
        ms: float | None = None,
    ) -> None:
        key_id = scope.get(KEY_ID_SCOPE) or "-"
        fields: dict[str, Any] = {"kind": "websocket", "event": event, "path": path}
        text = f"WS {path} {event}"
        if close_code is not None:
            fields["close_code"] = close_code
            text += f" {close_code}"
        if ms is not None:
            fields["ms"] = round(ms, 3)
            text += f" after {ms / 1000:.1f} s"
        fields["key_id"] = key_id
        self._write("%s %s", (text, key_id), fields)


def _path(scope: Scope) -> str:
    """The request's path as it was sent (percent-encoded, so a line cannot be split or faked
    by what a path holds), without its query, and with any API key in it masked."""
    raw = scope.get("raw_path")
    # Some servers and test transports include the query in raw_path; it may hold a `token`.
    text = bytes(raw).partition(b"?")[0].decode("latin-1") if raw else str(scope.get("path", ""))
    if not (text.isascii() and text.isprintable()) or " " in text:
        text = quote(text, safe=_SAFE_PATH)
    if "pl_key_" in text:
        from promptline.gateway.ws.log_redaction import redact

        text = redact(text)
    return text
