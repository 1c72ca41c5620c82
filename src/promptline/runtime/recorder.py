"""The events of one run, written in as few transactions as their meaning allows.

Results (``llm_result``, ``tool_result``, messages, lifecycle moves) wait in a buffer and go
out with the next command (``llm_command``, ``tool_command``, ``permission_request``, ...),
which must be on the record before the run acts on it. Nothing waits on anything outside
the process while results are buffered, so a crash loses no decision that was acted on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from promptline.core.events import Event
from promptline.events.protocols import EventBus, EventFilter, Subscription

__all__ = ["RunEvents"]

_BUFFERED = frozenset(
    {
        "agent_lifecycle",
        "run_started",
        "message_received",
        "message_sent",
        "llm_result",
        "tool_result",
        "error",
    }
)


class RunEvents:
    """An `EventBus` for one run: buffers result events, writes them with the next command.

    ``on_activity`` is called (with the monotonic time) whenever the run records anything;
    the watchdog uses it to tell a live run from a wedged one.
    """

    def __init__(self, bus: EventBus, *, on_activity: Callable[[float], None] | None = None):
        self._bus = bus
        self._buffer: list[Event] = []
        self._on_activity = on_activity

    def emit(self, event: Event) -> None:
        """Record ``event`` with the next write."""
        self._buffer.append(event)
        if self._on_activity is not None:
            self._on_activity(time.monotonic())

    async def flush(self) -> None:
        """Write what is buffered."""
        if self._buffer:
            batch, self._buffer = self._buffer, []
            await self._bus.publish_batch(batch)

    async def publish(self, event: Event, *, expected_seq: int | None = None) -> Event:
        """Buffer a result event; write a command event (with the buffer, in order) now."""
        if self._on_activity is not None:
            self._on_activity(time.monotonic())
        if event.type in _BUFFERED and expected_seq is None:
            self._buffer.append(event)
            return event
        if not self._buffer:
            return await self._bus.publish(event, expected_seq=expected_seq)
        batch, self._buffer = [*self._buffer, event], []
        stored = await self._bus.publish_batch(batch)
        return stored[-1]

    async def publish_batch(
        self, events: Sequence[Event], *, expected_seqs: Mapping[str, int] | None = None
    ) -> list[Event]:
        """Write the buffer and ``events`` at once."""
        batch, self._buffer = [*self._buffer, *events], []
        if self._on_activity is not None:
            self._on_activity(time.monotonic())
        stored = await self._bus.publish_batch(batch, expected_seqs=expected_seqs)
        return stored[len(stored) - len(events) :]

    def subscribe(
        self,
        filter: EventFilter | None = None,
        *,
        from_seq: int | None = None,
        from_position: int | None = None,
        max_queue: int | None = None,
    ) -> Subscription:
        """Subscribe on the underlying bus."""
        return self._bus.subscribe(
            filter, from_seq=from_seq, from_position=from_position, max_queue=max_queue
        )

    async def close(self) -> None:
        """Write what is buffered (the underlying bus stays open)."""
        await self.flush()
