"""The events of one run, written in as few transactions as their meaning allows.

Results (``llm_result``, ``tool_result``, messages, lifecycle moves) wait in a buffer and go
out with the next command (``llm_command``, ``tool_command``, ``permission_request``, ...),
which must be on the record before the run acts on it. Nothing waits on anything outside
the process while results are buffered, so a crash loses no decision that was acted on.

A run left by a stopping process is `seal`-ed: what it records from then on (the results
of calls cut short by the stop) is dropped, so the log shows it exactly as a crash at that
moment would, and a restart resumes it from there.
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
        "run_steered",
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
        self._sealed: list[Event] | None = None

    @property
    def sealed(self) -> bool:
        """True once `seal` was called: nothing more is recorded but what it kept."""
        return self._sealed is not None

    def emit(self, event: Event) -> None:
        """Record ``event`` with the next write."""
        if self._sealed is not None:
            return
        self._buffer.append(event)
        if self._on_activity is not None:
            self._on_activity(time.monotonic())

    def seal(self) -> None:
        """Record nothing more from now on; what is buffered now is kept for `close_with`."""
        if self._sealed is None:
            self._sealed, self._buffer = self._buffer, []

    async def close_with(self, events: Sequence[Event] = ()) -> None:
        """Seal (if not yet), then write what was buffered when sealed and ``events``."""
        self.seal()
        batch, self._sealed = [*(self._sealed or ()), *events], []
        if batch:
            await self._bus.publish_batch(batch)

    async def flush(self) -> None:
        """Write what is buffered."""
        if self._buffer:
            batch, self._buffer = self._buffer, []
            await self._bus.publish_batch(batch)

    async def publish(self, event: Event, *, expected_seq: int | None = None) -> Event:
        """Buffer a result event; write a command event (with the buffer, in order) now."""
        if self._sealed is not None:
            return event
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
        if self._sealed is not None:
            return list(events)
        batch, self._buffer = [*self._buffer, *events], []
        if self._on_activity is not None:
            self._on_activity(time.monotonic())
        stored = await self._bus.publish_batch(batch, expected_seqs=expected_seqs)
        return stored[len(stored) - len(events) :]

    async def publish_transient(self, event: Event) -> Event:
        """Deliver ``event`` live, unstored (after what is buffered, which is written first
        so that subscribers see the run's events in order)."""
        if self._sealed is not None:
            return event
        if self._on_activity is not None:
            self._on_activity(time.monotonic())
        await self.flush()
        return await self._bus.publish_transient(event)

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
