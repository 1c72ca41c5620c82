"""Server-Sent Events over the event bus: one stream's events after a seq, stored ones first
and then live, with no gap and no duplicate, until a condition or the client ends it.

Each frame is ``id: <seq>``, ``event: <type>``, ``data: <event JSON>`` (no id for a
transient ``llm_delta``); a client that reconnects with ``Last-Event-ID`` (or ``from_seq``)
resumes right after the last one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from promptline.core.errors import InvalidInputError, SubscriberLagged
from promptline.core.events import Event, encode_event
from promptline.events.protocols import EventBus, EventFilter
from promptline.runtime.records import RUN_ENDINGS

__all__ = [
    "PING_SECS",
    "RUN_ENDINGS",
    "EventStreamResponse",
    "follow",
    "frame",
    "resume_seq",
    "sse_frames",
]

PING_SECS = 15.0
"""A comment line goes out after this long without an event, so proxies keep the
connection open and a vanished client is noticed."""


async def follow(
    bus: EventBus,
    stream: str,
    *,
    from_seq: int | None = None,
    run_id: str | None = None,
    until: Callable[[Event], bool] | None = None,
) -> AsyncIterator[Event]:
    """The events of ``stream`` (of one run, with ``run_id``) with seq > ``from_seq``, then
    live ones as they are published (only live ones for None); ends after an event for
    which ``until`` is true, or when the bus closes.

    A subscription that falls behind is dropped by the bus; this one resubscribes from the
    last seq it delivered and catches up from the store, so the reader sees neither a gap
    nor a duplicate.
    """
    wanted = EventFilter(stream=stream, run_id=run_id)
    last = from_seq
    while True:
        subscription = bus.subscribe(wanted, from_seq=last)
        try:
            async for event in subscription:
                if event.seq:  # a transient event (seq 0) is no place to resume from
                    last = event.seq
                yield event
                if until is not None and until(event):
                    return
            return  # the bus closed
        except SubscriberLagged as lag:
            if lag.last_seq is not None and (last is None or lag.last_seq > last):
                last = lag.last_seq
        finally:
            await subscription.close()


def frame(event: Event) -> bytes:
    """One SSE frame: the event's seq as its id, its type, its JSON as its data. A transient
    event (seq 0, never stored) has no id, so a client's ``Last-Event-ID`` stays the last
    stored event's."""
    kind = event.type.replace("\r", " ").replace("\n", " ").encode()
    if not event.seq:
        return b"event: %s\ndata: %s\n\n" % (kind, encode_event(event))
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event.seq, kind, encode_event(event))


async def sse_frames(events: AsyncIterator[Event]) -> AsyncIterator[bytes]:
    """The frames of ``events``."""
    async for event in events:
        yield frame(event)


def resume_seq(from_seq: int | None, last_event_id: str | None) -> int | None:
    """Where a tail starts: after ``Last-Event-ID`` when the client sends one (a reconnect),
    else after ``from_seq``; None for live events only."""
    if last_event_id is None or not last_event_id.strip():
        return from_seq
    text = last_event_id.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise InvalidInputError(
            f"Last-Event-ID {last_event_id!r} is not an event seq",
            hint="send the id of the last frame received (a non-negative integer)",
            field="Last-Event-ID",
        )
    return int(text)


class EventStreamResponse(StreamingResponse):
    """A ``text/event-stream`` response that sends a comment every `PING_SECS` while idle
    and stops its source as soon as the client disconnects (whatever the server's ASGI
    version), closing the bus subscription behind it; it also ends when ``stopping`` is
    set (the server's graceful stop), which a client resumes from with ``Last-Event-ID``."""

    media_type = "text/event-stream"

    def __init__(
        self,
        frames: AsyncIterator[bytes],
        *,
        stopping: asyncio.Event | None = None,
        ping_secs: float = PING_SECS,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            _with_pings(frames, ping_secs),
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})},
        )
        self._stopping = stopping

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = finished = stopped = False

        async def tracked(message: Message) -> None:
            nonlocal started, finished
            await send(message)
            started = True
            finished = message["type"] == "http.response.body" and not message.get("more_body")

        async with anyio.create_task_group() as group:

            async def until_done(step: Callable[[], Awaitable[object]]) -> None:
                with contextlib.suppress(OSError):
                    await step()
                group.cancel_scope.cancel()

            async def until_stopping(stopping: asyncio.Event) -> None:
                nonlocal stopped
                await stopping.wait()
                stopped = True
                group.cancel_scope.cancel()

            group.start_soon(until_done, partial(self.stream_response, tracked))
            if self._stopping is not None:
                group.start_soon(until_stopping, self._stopping)
            await until_done(partial(self.listen_for_disconnect, receive))
        if stopped and not finished:  # end it properly: the client sees an end, not an error
            with contextlib.suppress(OSError):
                if not started:
                    await send(
                        {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
                    )
                await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _with_pings(frames: AsyncIterator[bytes], every: float) -> AsyncIterator[bytes]:
    # The next frame is awaited in a task that outlives a ping, so waiting never cancels
    # the source half-way through a step.
    source = aiter(frames)
    step: asyncio.Future[bytes] | None = None
    try:
        while True:
            if step is None:
                step = asyncio.ensure_future(anext(source))
            done, _ = await asyncio.wait({step}, timeout=every)
            if not done:
                yield b": ping\n\n"
                continue
            finished, step = step, None
            try:
                chunk = finished.result()
            except StopAsyncIteration:
                return
            yield chunk
    finally:
        with anyio.CancelScope(shield=True):
            if step is not None:
                step.cancel()
                with contextlib.suppress(BaseException):
                    await step
            closer = getattr(source, "aclose", None)
            if closer is not None:
                with contextlib.suppress(BaseException):
                    await closer()
