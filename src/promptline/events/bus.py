"""Publish/subscribe inside one process: persist to the event store first, then fan out.

Subscribers read from bounded queues; one that falls behind is dropped (never waited for)
and told where to resume, and a subscriber may start from a cursor and catch up from the store.
Transient events (a model's streamed ``llm_delta``) are fanned out without being stored.
Subscriptions are indexed by the stream (or else the run) their filter names, so an event is
offered only to the subscriptions that can want it, not tested against every one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from promptline.core.errors import InvalidInputError, ServiceUnavailableError, SubscriberLagged
from promptline.core.events import Event
from promptline.events.checks import check_cursor, check_filter
from promptline.events.protocols import EventFilter, EventStore

CATCH_UP_PAGE = 500
"""How many stored events a catching-up subscription reads per query."""


class InProcessEventBus:
    """`EventBus` for one process, backed by any `EventStore`.

    Publishing holds one lock across append and fan-out, so every subscriber sees events in
    position order (which is also per-stream seq order), even with concurrent publishers.
    Fan-out only puts events on queues and never awaits a subscriber.
    """

    def __init__(self, store: EventStore, *, default_max_queue: int = 1000) -> None:
        _check_max_queue(default_max_queue)
        self._store = store
        self._default_max_queue = default_max_queue
        self._lock = asyncio.Lock()
        # Every subscription is in exactly one of these: by its filter's stream, else by its
        # filter's run, else with those that may want any event.
        self._by_stream: dict[str, list[BusSubscription]] = {}
        self._by_run: dict[str, list[BusSubscription]] = {}
        self._anywhere: list[BusSubscription] = []
        self._count = 0
        self._closed = False

    @property
    def store(self) -> EventStore:
        """The store every published event is appended to."""
        return self._store

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions are attached right now."""
        return self._count

    async def publish(self, event: Event, *, expected_seq: int | None = None) -> Event:
        """Append ``event`` to the store, then deliver it to matching subscribers.

        Returns the stored event (with ``stream``, ``seq`` and ``position``). If the append
        fails nothing is delivered.
        """
        self._check_open()
        async with self._lock:
            stored = await self._store.append(event, expected_seq=expected_seq)
            self._fan_out(stored)
        return stored

    async def publish_batch(
        self, events: Sequence[Event], *, expected_seqs: Mapping[str, int] | None = None
    ) -> list[Event]:
        """Append several events atomically, then deliver them in order."""
        self._check_open()
        async with self._lock:
            stored = await self._store.append_batch(events, expected_seqs=expected_seqs)
            for event in stored:
                self._fan_out(event)
        return stored

    async def publish_transient(self, event: Event) -> Event:
        """Deliver ``event`` to matching subscribers now, without storing it.

        For what is only worth seeing live (a model's streamed ``llm_delta``; the
        ``llm_result`` that follows is stored and carries the whole answer). The event keeps
        ``seq`` and ``position`` 0: it moves no cursor, a resumed subscription does not
        replay it, and a subscriber sees it after the stored events published before it.
        An empty ``stream`` is filled in as the store would (see `Event.stream_name`).
        """
        self._check_open()
        if not event.stream:
            event = event.model_copy(update={"stream": event.stream_name})
        self._fan_out(event)
        return event

    def _fan_out(self, event: Event) -> None:
        # Only the subscriptions indexed under the event's stream or run, and those with
        # neither in their filter, are candidates. Each list is copied: a subscription that
        # lags detaches itself during the loop.
        for candidates in (
            self._by_stream.get(event.stream),
            self._by_run.get(event.run_id) if event.run_id is not None else None,
            self._anywhere,
        ):
            if not candidates:
                continue
            for sub in tuple(candidates):
                flt = sub.filter
                if flt is None or flt.matches(event):
                    sub._offer(event)

    def subscribe(
        self,
        filter: EventFilter | None = None,
        *,
        from_seq: int | None = None,
        from_position: int | None = None,
        max_queue: int | None = None,
    ) -> BusSubscription:
        """Receive matching events; see `EventBus.subscribe` for the cursor rules.

        The subscription is attached before this returns, so nothing published afterwards
        is missed. ``max_queue`` defaults to the bus's ``default_max_queue``. Use it as an
        async iterator, and as ``async with`` to close it on exit.
        """
        self._check_open()
        check_filter(filter)
        if from_seq is not None and from_position is not None:
            raise InvalidInputError(
                "give from_seq or from_position, not both",
                hint="from_seq resumes one stream, from_position the whole log",
            )
        if from_seq is not None:
            check_cursor(from_seq, "from_seq")
            if filter is None or filter.stream is None:
                raise InvalidInputError(
                    "from_seq needs a filter with a stream",
                    hint="subscribe(EventFilter(stream=...), from_seq=...) or use from_position",
                )
        if from_position is not None:
            check_cursor(from_position, "from_position")
        size = self._default_max_queue if max_queue is None else max_queue
        _check_max_queue(size)
        sub = BusSubscription(
            self, filter, from_seq=from_seq, from_position=from_position, max_queue=size
        )
        subs = self._index_of(filter, create=True)
        assert subs is not None
        subs.append(sub)
        self._count += 1
        return sub

    def _index_of(
        self, filter: EventFilter | None, *, create: bool = False
    ) -> list[BusSubscription] | None:
        """The list a subscription with ``filter`` is kept in (None: no such list yet)."""
        if filter is not None and filter.stream is not None:
            index, key = self._by_stream, filter.stream
        elif filter is not None and filter.run_id is not None:
            index, key = self._by_run, filter.run_id
        else:
            return self._anywhere
        found = index.get(key)
        if found is None and create:
            found = index[key] = []
        return found

    def _detach(self, sub: BusSubscription) -> None:
        subs = self._index_of(sub.filter)
        if subs is None:
            return
        # Identity, not equality: a subscription is only ever itself.
        for position, other in enumerate(subs):
            if other is sub:
                del subs[position]
                self._count -= 1
                break
        else:
            return
        if not subs and subs is not self._anywhere:
            # An emptied list goes, so the index does not grow with every stream ever seen.
            flt = sub.filter
            assert flt is not None
            if flt.stream is not None:
                del self._by_stream[flt.stream]
            elif flt.run_id is not None:
                del self._by_run[flt.run_id]

    async def close(self) -> None:
        """End every subscription; later publishes and subscribes are refused."""
        self._closed = True
        everyone = [*self._anywhere]
        for subs in (*self._by_stream.values(), *self._by_run.values()):
            everyone += subs
        for sub in everyone:
            await sub.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ServiceUnavailableError(
                "the event bus is closed", hint="build a new bus; a closed one stays closed"
            )


class BusSubscription:
    """One subscriber's feed from an `InProcessEventBus`; iterate it.

    With a cursor it first reads stored events (in pages) while live events wait in its
    queue; live events it already read from the store are skipped. Should the queue fill
    during catch-up, it is emptied and the store is read further instead: nothing is lost.
    Once live, a full queue detaches the subscription: what was queued is still delivered,
    then iteration raises `SubscriberLagged`. One task iterates a subscription.

    Transient events (``seq`` 0, see `InProcessEventBus.publish_transient`) move neither
    cursor. When catch-up ends, the live events queued up to the last one already read from
    the store are dropped, transient ones among them: what follows a stored event that was
    delivered from the store is still delivered, in order; what came before it is stale.
    """

    def __init__(
        self,
        bus: InProcessEventBus,
        filter: EventFilter | None,
        *,
        from_seq: int | None,
        from_position: int | None,
        max_queue: int,
    ) -> None:
        self._bus = bus
        self.filter = filter
        self._max_queue = max_queue
        self._queue: deque[Event] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._lagged: SubscriberLagged | None = None
        # Catch-up state: which cursor is read from the store, and how far it has read.
        self._by_seq = from_seq is not None
        self._stream = filter.stream if filter is not None and filter.stream is not None else ""
        self._catching_up = from_seq is not None or from_position is not None
        self._read_seq = from_seq or 0
        self._read_position = from_position or 0
        self._backlog: deque[Event] = deque()
        self._overflowed = False
        self._last_seq: int | None = from_seq
        self._last_position: int | None = from_position
        # Where the newest queued event leaves the cursor; what `SubscriberLagged` reports.
        self._queued_seq: int | None = from_seq
        self._queued_position: int | None = from_position

    @property
    def last_seq(self) -> int | None:
        """Seq of the last event delivered (a resume cursor for a single-stream filter)."""
        return self._last_seq

    @property
    def last_position(self) -> int | None:
        """Position of the last event delivered."""
        return self._last_position

    @property
    def lagged(self) -> bool:
        """True once the subscription fell behind and was detached from the bus."""
        return self._lagged is not None

    @property
    def closed(self) -> bool:
        """True once `close` was called (or the bus closed)."""
        return self._closed

    def __aiter__(self) -> BusSubscription:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._backlog:
                return self._deliver(self._backlog.popleft())
            if self._catching_up:
                await self._read_page()
                continue
            if self._queue:
                event = self._queue.popleft()
                if self._already_read(event):
                    continue
                return self._deliver(event)
            if self._lagged is not None:
                raise self._lagged
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _deliver(self, event: Event) -> Event:
        if event.seq:  # a transient event (seq 0) moves no cursor
            self._last_seq = event.seq
            self._last_position = event.position
        return event

    def _already_read(self, event: Event) -> bool:
        if not event.seq:
            return False  # transient: `_drop_stale` kept only those after the store's end
        if self._by_seq:
            return event.seq <= self._read_seq
        return event.position <= self._read_position

    async def _read_page(self) -> None:
        self._overflowed = False
        store = self._bus.store
        if self._by_seq:
            page = await store.read_stream(
                self._stream, from_seq=self._read_seq, limit=CATCH_UP_PAGE
            )
        else:
            page = await store.read_all(
                self.filter, from_position=self._read_position, limit=CATCH_UP_PAGE
            )
        if self._closed:
            return
        if page:
            self._read_seq = page[-1].seq
            self._read_position = max(self._read_position, page[-1].position)
            flt = self.filter
            self._backlog.extend(e for e in page if flt is None or flt.matches(e))
        # A short page means the store is read to its end, and the queue holds every live
        # event since (unless it overflowed meanwhile, then read on). This check and the
        # switch to live happen without an await, so no publish can slip in between.
        if len(page) < CATCH_UP_PAGE and not self._overflowed:
            self._catching_up = False
            self._drop_stale()

    def _drop_stale(self) -> None:
        """Drop the queued live events up to the last stored one already read (transient
        events before it are older than what the store delivered)."""
        queue = self._queue
        last_read = -1
        for index, event in enumerate(queue):
            if event.seq and self._already_read(event):
                last_read = index
        for _ in range(last_read + 1):
            queue.popleft()

    def _offer(self, event: Event) -> None:
        """Called by the bus for each matching event; never blocks."""
        if self._closed or self._lagged is not None:
            return
        if len(self._queue) >= self._max_queue:
            if self._catching_up:
                # The store has these events too; drop the queue and read further instead.
                self._queue.clear()
                self._overflowed = True
            else:
                self._lag(event)
                return
        self._queue.append(event)
        if event.seq:
            self._queued_seq = event.seq
            self._queued_position = event.position
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _lag(self, dropped: Event) -> None:
        # Resume just before the first event this subscriber did not get (a transient one
        # names no place in the log: then from the last stored event queued, if any).
        seq = self._queued_seq
        if seq is None and dropped.seq:
            seq = dropped.seq - 1
        position = self._queued_position
        if position is None and dropped.position:
            position = dropped.position - 1
        self._lagged = SubscriberLagged(
            f"subscriber fell more than {self._max_queue} events behind and was dropped",
            last_seq=seq,
            last_position=position,
        )
        self._bus._detach(self)
        self._wake()

    async def close(self) -> None:
        """Stop receiving: iteration ends (queued events are discarded)."""
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self._backlog.clear()
        self._bus._detach(self)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def __aenter__(self) -> BusSubscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _check_max_queue(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(
            f"max_queue must be a positive integer, not {value!r}",
            hint="a few hundred to a few thousand events suits most subscribers",
        )
