"""Server-Sent Events read from a stream of lines (the text/event-stream format)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

__all__ = ["ServerSentEvent", "read_events"]


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One frame: its ``event`` type, ``data`` (lines joined by newlines) and ``id``."""

    event: str
    data: str
    id: str | None = None


async def read_events(lines: AsyncIterable[str]) -> AsyncIterator[ServerSentEvent]:
    """The frames of ``lines`` (without line breaks), as the format defines them: a blank
    line ends a frame; comments (``:``) and frames without data are skipped."""
    event = ""
    data: list[str] = []
    last_id: str | None = None
    async for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield ServerSentEvent(event=event or "message", data="\n".join(data), id=last_id)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id" and "\0" not in value:
            last_id = value
    # A frame cut by the end of the stream is not complete: it is not dispatched.
