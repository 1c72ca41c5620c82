"""A connection's bounded send queue: frames wait here until the socket takes them. Whoever
queues a frame waits while ``capacity`` frames are already waiting, so what a client does
not read piles up upstream (in the bus, which drops a subscriber that falls too far
behind), never here."""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["Outbox"]


class Outbox:
    """At most ``capacity`` frames (text) waiting to be sent, in order."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("an outbox holds at least one frame")
        self.capacity = capacity
        self._frames: deque[str] = deque()
        self._not_empty = asyncio.Event()
        self._not_full = asyncio.Event()
        self._not_full.set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def closed(self) -> bool:
        """True once `close` was called."""
        return self._closed

    async def put(self, frame: str) -> bool:
        """Queue ``frame``, waiting for room; False (nothing queued) once the outbox is
        closed."""
        while len(self._frames) >= self.capacity and not self._closed:
            self._not_full.clear()
            await self._not_full.wait()
        if self._closed:
            return False
        self._frames.append(frame)
        self._not_empty.set()
        return True

    async def get(self) -> str | None:
        """The next frame, waiting for one; None once the outbox is closed."""
        while not self._frames:
            if self._closed:
                return None
            self._not_empty.clear()
            await self._not_empty.wait()
        frame = self._frames.popleft()
        self._not_full.set()
        return frame

    def close(self) -> None:
        """Take no more frames and drop the waiting ones; every waiter wakes up."""
        self._closed = True
        self._frames.clear()
        self._not_empty.set()
        self._not_full.set()
