"""The seams of the event layer: what every event store and event bus must do.

Cursor convention, everywhere: ``from_seq=N`` means "events of the stream with seq > N" and
``from_position=P`` means "events with global position > P", so a reader passes the last
value it saw (0 for "from the start").
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from promptline.core.events import Event


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a query or subscription wants; ``None`` fields match anything."""

    types: frozenset[str] | None = None
    stream: str | None = None
    session_id: str | None = None
    run_id: str | None = None
    user_id: str | None = None
    tenant_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, event: Event) -> bool:
        """True when ``event`` passes every condition set on this filter."""
        return (
            (self.types is None or event.type in self.types)
            and (self.stream is None or event.stream == self.stream)
            and (self.session_id is None or event.session_id == self.session_id)
            and (self.run_id is None or event.run_id == self.run_id)
            and (self.user_id is None or event.user_id == self.user_id)
            and (self.tenant_id is None or event.tenant_id == self.tenant_id)
            and (self.since is None or event.ts >= self.since)
            and (self.until is None or event.ts < self.until)
        )


class EventStore(Protocol):
    """Append-only log of events with a gap-free ``seq`` per stream and a global ``position``.

    Appends are atomic: a batch is stored whole or not at all. Positions are assigned in
    commit order, so a reader polling ``read_all(from_position=...)`` never skips an event.
    """

    async def append(self, event: Event, *, expected_seq: int | None = None) -> Event:
        """Store one event; returns it with ``stream``, ``seq`` and ``position`` filled in.

        ``expected_seq`` (optimistic concurrency): fail with `ConflictError` unless the
        stream's last seq is exactly this (0 for a stream that must not exist yet).
        """
        ...

    async def append_batch(
        self, events: Sequence[Event], *, expected_seqs: Mapping[str, int] | None = None
    ) -> list[Event]:
        """Store several events (of one or many streams) in one transaction."""
        ...

    async def read_stream(
        self, stream: str, *, from_seq: int = 0, limit: int | None = None
    ) -> list[Event]:
        """Events of ``stream`` with seq > ``from_seq``, in seq order."""
        ...

    async def read_all(
        self,
        filter: EventFilter | None = None,
        *,
        from_position: int = 0,
        limit: int | None = None,
        descending: bool = False,
    ) -> list[Event]:
        """Events matching ``filter`` with position > ``from_position``, in position order.

        With ``descending`` the newest come first, which is what "the last N events" wants;
        a non-zero ``from_position`` then means position < ``from_position`` (pass the last
        position seen to page backwards).
        """
        ...

    async def count(self, filter: EventFilter | None = None) -> int:
        """How many stored events match ``filter``."""
        ...

    async def last_seq(self, stream: str) -> int:
        """The seq of the newest event of ``stream`` (0 when it has none)."""
        ...

    async def last_position(self) -> int:
        """The position of the newest event in the log (0 when it is empty)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class Subscription(Protocol):
    """A live feed of events; iterate it. Ends with `SubscriberLagged` if it fell behind."""

    @property
    def last_seq(self) -> int | None:
        """Seq of the last event delivered (for a single-stream subscription)."""
        ...

    @property
    def last_position(self) -> int | None:
        """Position of the last event delivered."""
        ...

    def __aiter__(self) -> AsyncIterator[Event]: ...

    async def __anext__(self) -> Event: ...

    async def close(self) -> None:
        """Stop receiving; iteration ends."""
        ...


class EventBus(Protocol):
    """Publish (persist first, then fan out) and subscribe with filters and catch-up."""

    async def publish(self, event: Event, *, expected_seq: int | None = None) -> Event:
        """Append ``event`` to the store, then deliver it to matching subscribers."""
        ...

    async def publish_batch(
        self, events: Sequence[Event], *, expected_seqs: Mapping[str, int] | None = None
    ) -> list[Event]:
        """Append several events atomically, then deliver them in order.

        ``expected_seqs`` (stream -> last seq) is checked as by `EventStore.append_batch`.
        """
        ...

    async def publish_transient(self, event: Event) -> Event:
        """Deliver ``event`` to matching live subscribers without storing it (``seq`` and
        ``position`` stay 0, so it moves no cursor and is never replayed); the event as
        delivered. For what only matters live, such as a model's streamed ``llm_delta``.
        """
        ...

    def subscribe(
        self,
        filter: EventFilter | None = None,
        *,
        from_seq: int | None = None,
        from_position: int | None = None,
        max_queue: int | None = None,
    ) -> Subscription:
        """Receive matching events (``max_queue`` None: the bus's default).

        With neither cursor, only events published from now on arrive. ``from_seq`` (needs
        ``filter.stream``) or ``from_position`` first replays stored events after the cursor,
        then goes live, with no gap and no duplicate. A subscriber whose queue holds
        ``max_queue`` undelivered events is dropped: it gets what was queued, then
        `SubscriberLagged` naming its last seq/position, and may resubscribe from there.
        The publisher never waits for a subscriber.
        """
        ...

    async def close(self) -> None:
        """End every subscription."""
        ...
