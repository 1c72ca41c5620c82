"""Incremental Server-Sent Events parser (WHATWG event-stream format) for streaming model replies.

Feed it byte chunks split anywhere; it returns each event as soon as its blank line arrives.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from promptline.core.errors import InvalidInputError

__all__ = ["DEFAULT_MAX_LINE_BYTES", "SseEvent", "SseParser", "aiter_sse"]

DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024
"""Longest incomplete line kept in memory before the stream is rejected."""

_BOM = b"\xef\xbb\xbf"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched event.

    ``event`` is the event type (``"message"`` when the stream named none), ``data`` the
    ``data:`` lines joined with ``\\n``, ``id`` the last event id seen so far in the stream (it
    carries over between events, as the spec says) or None if none was ever set, and ``retry``
    the reconnection time in milliseconds given in this event's block, or None.
    """

    event: str
    data: str
    id: str | None = None
    retry: int | None = None


class SseParser:
    """Turns a byte stream into `SseEvent` objects, one chunk at a time.

    Line breaks may be CRLF, CR or LF, and a chunk may end anywhere: inside a UTF-8 character,
    inside a line, or between the CR and LF of one line break. Invalid UTF-8 becomes U+FFFD.
    A leading byte-order mark is dropped. An event is dispatched on its blank line; `close`
    also dispatches a last event that the server ended without one.
    """

    __slots__ = (
        "_buf",
        "_closed",
        "_data",
        "_event",
        "_last_id",
        "_max_line",
        "_retry",
        "_retry_block",
        "_skip_lf",
        "_start",
    )

    def __init__(self, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        """Create a parser; ``max_line_bytes`` bounds memory for a stream that never breaks."""
        if max_line_bytes < 1:
            raise InvalidInputError(
                f"max_line_bytes must be positive, got {max_line_bytes}",
                hint="pass a byte count such as 1048576",
            )
        self._max_line = max_line_bytes
        self._buf = b""
        self._start = True  # still looking for a byte-order mark
        self._skip_lf = False  # the last chunk ended in CR: a leading LF belongs to it
        self._closed = False
        self._data: list[str] = []
        self._event = ""
        self._last_id: str | None = None
        self._retry: int | None = None
        self._retry_block: int | None = None

    @property
    def last_event_id(self) -> str | None:
        """The last ``id:`` seen (what a client sends back as ``Last-Event-ID``)."""
        return self._last_id

    @property
    def retry(self) -> int | None:
        """The last reconnection time in milliseconds the server asked for, if any."""
        return self._retry

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Add the next bytes of the stream; return the events they complete, in order."""
        if self._closed:
            raise InvalidInputError(
                "the SSE parser is closed", hint="create a new SseParser for a new stream"
            )
        buf = self._buf + chunk if self._buf else chunk
        if not buf:
            return []
        if self._start:
            if len(buf) < len(_BOM) and _BOM.startswith(buf):
                self._buf = buf  # could still become a byte-order mark
                return []
            self._start = False
            if buf.startswith(_BOM):
                buf = buf[len(_BOM) :]
        if self._skip_lf and buf:
            self._skip_lf = False
            if buf[0] == 0x0A:
                buf = buf[1:]
        if b"\r" in buf:
            end = max(buf.rfind(b"\n"), buf.rfind(b"\r"))
            if end < 0:
                return self._keep(buf)
            self._skip_lf = buf[end] == 0x0D and end == len(buf) - 1
            # LF and CR never occur inside a UTF-8 sequence, so complete lines decode alone.
            lines = _LINE_BREAK.split(buf[: end + 1].decode("utf-8", "replace"))
        else:
            end = buf.rfind(b"\n")
            if end < 0:
                return self._keep(buf)
            lines = buf[: end + 1].decode("utf-8", "replace").split("\n")
        self._buf = buf[end + 1 :]
        if len(self._buf) > self._max_line:
            self._too_long()
        lines.pop()  # the empty text after the last line break
        return self._lines(lines)

    def close(self) -> list[SseEvent]:
        """End the stream: return the last event if the server sent no blank line after it."""
        if self._closed:
            return []
        self._closed = True
        lines: list[str] = []
        if self._buf:
            lines.append(self._buf.decode("utf-8", "replace"))
            self._buf = b""
        lines.append("")  # treat the end of the stream as the missing blank line
        return self._lines(lines)

    def _keep(self, buf: bytes) -> list[SseEvent]:
        self._buf = buf
        if len(buf) > self._max_line:
            self._too_long()
        return []

    def _too_long(self) -> None:
        size = len(self._buf)
        self._buf = b""
        self._closed = True
        raise InvalidInputError(
            f"SSE line longer than {self._max_line} bytes without a line break",
            hint="the server is not sending an event stream, or raise max_line_bytes",
            size=size,
        )

    def _lines(self, lines: list[str]) -> list[SseEvent]:
        out: list[SseEvent] = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    out.append(
                        SseEvent(
                            self._event or "message",
                            "\n".join(data),
                            self._last_id,
                            self._retry_block,
                        )
                    )
                    data = self._data = []
                self._event = ""
                self._retry_block = None
                continue
            if line[0] == ":":
                continue  # a comment, often a keep-alive
            field, colon, value = line.partition(":")
            if colon and value[:1] == " ":
                value = value[1:]
            if field == "data":
                data.append(value)
            elif field == "event":
                self._event = value
            elif field == "id":
                if "\0" not in value:
                    self._last_id = value
            elif field == "retry" and value.isascii() and value.isdigit():
                self._retry = self._retry_block = int(value)
            # Any other field name is ignored, as the spec requires.
        return out


async def aiter_sse(
    chunks: AsyncIterable[bytes], *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> AsyncIterator[SseEvent]:
    """Yield the events of a byte stream (for example an HTTP response body) as they complete."""
    parser = SseParser(max_line_bytes=max_line_bytes)
    async for chunk in chunks:
        for event in parser.feed(chunk):
            yield event
    for event in parser.close():
        yield event
