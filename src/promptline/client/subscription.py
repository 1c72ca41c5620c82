"""One session's events over the WebSocket, delivered in seq order with no duplicate and no
gap, across reconnections (the connection resubscribes from the last seq delivered)."""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import TracebackType

    from promptline.client.websocket import WebSocketConnection
    from promptline.core.events import Event

__all__ = ["Subscription"]

MAX_BUFFER = 10_000
"""Events a subscription holds for a slow reader before it stops taking more; once the reader
has caught up, it resubscribes from the last event it holds (nothing is lost)."""

GAP_RETRIES = 3
"""Resubscriptions tried when an event arrives after a gap, before it is taken anyway."""


class Subscription:
    """The events of one session's stream: ``async for event in subscription``.

    ``last_seq`` is the seq of the last event read (None until one is); after a disconnect
    the connection resubscribes from the last one received, and drops what it already has.
    Iteration ends after `close`; it raises when the subscription cannot go on (the
    connection gave up reconnecting, the session is gone).
    """

    def __init__(
        self,
        connection: WebSocketConnection,
        session_id: str,
        *,
        from_seq: int | None,
        max_buffer: int = MAX_BUFFER,
    ) -> None:
        self.connection = connection
        self.session_id = session_id
        self.last_seq = from_seq
        self.resume_seq = from_seq
        """The seq of the last event received (read or waiting to be): where a
        resubscription starts."""
        self.server_id: str | None = None
        """The subscription id the server gave (it changes when the connection resubscribes)."""
        self._max_buffer = max_buffer
        self._queue: collections.deque[Event] = collections.deque()
        self._wakeup = asyncio.Event()
        self._error: BaseException | None = None
        self._closed = False
        self._behind = False
        self._gap_seq: int | None = None
        self._gap_tries = 0

    # -- what the connection calls ----------------------------------------------------------

    def offer(self, event: Event) -> None:
        """Take an event that arrived for this subscription (drops what it already has)."""
        if self._closed or self._error is not None:
            return
        if event.stream_name != self.session_id or event.seq <= 0:
            # Not of the session's own stream: no seq order to keep.
            self._push(event)
            return
        last = self.resume_seq
        if last is not None and event.seq <= last:
            return  # a duplicate: replayed after a resubscription
        if self._behind or len(self._queue) >= self._max_buffer:
            # The reader is slow: drop, and resubscribe from resume_seq once it catches up.
            self._behind = True
            self._wakeup.set()
            return
        gap = last is not None and event.seq > last + 1
        if gap and (self._gap_seq != last or self._gap_tries < GAP_RETRIES):
            self._gap_tries = self._gap_tries + 1 if self._gap_seq == last else 1
            self._gap_seq = last
            self._behind = True  # ask again from resume_seq
            self._wakeup.set()
            return
        self.resume_seq = event.seq
        self._push(event)

    def fail(self, error: BaseException) -> None:
        """End the subscription with ``error`` (raised once the queued events are read)."""
        if self._error is None and not self._closed:
            self._error = error
            self._wakeup.set()

    def end(self) -> None:
        """End the subscription quietly (its connection was closed by the client)."""
        self._closed = True
        self._wakeup.set()

    @property
    def active(self) -> bool:
        """True until the subscription is closed or has failed."""
        return not self._closed and self._error is None

    def _push(self, event: Event) -> None:
        self._queue.append(event)
        self._wakeup.set()

    # -- what the reader calls --------------------------------------------------------------

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._queue:
                event = self._queue.popleft()
                if event.seq > 0 and event.stream_name == self.session_id:
                    self.last_seq = event.seq
                return event
            if self._closed:
                raise StopAsyncIteration
            if self._error is not None:
                raise self._error
            if self._behind:
                self._behind = False
                await self.connection.resubscribe(self)
                continue
            self._wakeup.clear()
            await self._wakeup.wait()

    async def next(self, timeout: float | None = None) -> Event:  # noqa: ASYNC109
        """The next event, waiting at most ``timeout`` seconds (`TimeoutError` after)."""
        async with asyncio.timeout(timeout):
            return await self.__anext__()

    async def close(self) -> None:
        """Stop receiving (the server is told, if the connection is up)."""
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self._wakeup.set()
        await self.connection.unsubscribe(self)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "active" if self.active else "closed" if self._closed else "failed"
        return f"<Subscription {self.session_id} last_seq={self.last_seq} {state}>"
