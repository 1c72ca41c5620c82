"""Event streams over Server-Sent Events: a session's live tail that reconnects from the last
seq it delivered, and a message's run, read on from the session's log if its stream is cut."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from promptline.client.backoff import Backoff
from promptline.client.errors import ConnectionLostError, error_from_body
from promptline.client.http import HttpTransport
from promptline.client.run_stream import TERMINAL_TYPES
from promptline.client.sse import ServerSentEvent
from promptline.core.errors import ServiceUnavailableError
from promptline.core.events import Event, decode_event

__all__ = ["decode_frame", "message_events", "session_tail"]

_CUT = (httpx.TransportError, ServiceUnavailableError)
"""What a cut connection raises while a stream is read (or reopened)."""


def decode_frame(frame: ServerSentEvent) -> Event:
    """The event a frame carries (an ``error`` frame is raised as its error)."""
    if frame.event == "error":
        try:
            body: Any = orjson.loads(frame.data)
        except orjson.JSONDecodeError:
            body = None
        raise error_from_body(500, body, fallback=f"the stream failed: {frame.data[:200]}")
    return decode_event(frame.data, lenient=True)


async def session_tail(
    http: HttpTransport, session_id: str, *, from_seq: int | None, backoff: Backoff
) -> AsyncIterator[Event]:
    """The session's events after ``from_seq`` (None: from now on), for as long as the caller
    reads; a cut stream is reopened from the last seq delivered (``Last-Event-ID``), up to
    ``backoff.attempts`` times in a row."""
    last = from_seq
    path = f"/v1/sessions/{session_id}/events"
    delays = backoff.delays()
    while True:
        params = {"from_seq": last} if last is not None else None
        headers = {"Last-Event-ID": str(last)} if last is not None else None
        try:
            async with http.stream("GET", path, params=params, headers=headers) as frames:
                async for frame in frames:
                    event = decode_frame(frame)
                    if event.seq > 0 and event.stream_name == session_id:
                        if last is not None and event.seq <= last:
                            continue  # already delivered before the reconnection
                        last = event.seq
                    delays = backoff.delays()  # the connection works: a fresh budget
                    yield event
        except _CUT:
            pass
        delay = next(delays, None)
        if delay is None:
            raise ConnectionLostError(
                f"the event stream of session {session_id} was cut and could not be reopened "
                f"after {backoff.attempts} attempts",
                hint=f"subscribe again with from_seq={last}",
                last_seq=last,
            )
        await asyncio.sleep(delay)


async def message_events(
    frames: AsyncIterator[ServerSentEvent],
    http: HttpTransport,
    session_id: str,
    *,
    backoff: Backoff,
    stop: contextlib.AsyncExitStack,
) -> AsyncIterator[Event]:
    """The events of the run a message started, read from its own stream (``frames``); when
    that is cut before the run ended, read on from the session's log after the last seq seen.
    ``stop`` closes the message's stream."""
    run_id: str | None = None
    last: int | None = None
    try:
        async for frame in frames:
            event = decode_frame(frame)
            run_id = run_id or event.run_id
            if event.seq > 0 and event.stream_name == session_id:
                last = event.seq
            yield event
            if event.type in TERMINAL_TYPES and event.run_id == run_id:
                return
    except _CUT:
        pass
    finally:
        await stop.aclose()
    if run_id is None or last is None:
        raise ConnectionLostError(
            "the run's stream was cut before its first event: its id is not known",
            hint=f"find it with runs.list(session_id={session_id!r})",
        )
    async for event in session_tail(http, session_id, from_seq=last, backoff=backoff):
        if event.run_id != run_id:
            continue
        yield event
        if event.type in TERMINAL_TYPES:
            return
