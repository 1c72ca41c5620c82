"""The in-process event bus: persist-then-deliver, filters, catch-up, overflow and close."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from promptline.core.errors import (
    ConflictError,
    InvalidInputError,
    ServiceUnavailableError,
    SubscriberLagged,
)
from promptline.core.events import ErrorData, ErrorEvent, Event, RunStarted, RunStartedEvent
from promptline.events.bus import CATCH_UP_PAGE, BusSubscription, InProcessEventBus
from promptline.events.factory import create_event_store
from promptline.events.memory import InMemoryEventStore
from promptline.events.protocols import EventFilter, EventStore
from promptline.storage.database import create_engine

# Bounds a wait that should end at once; only reached if the code under test is broken.
STUCK = 10.0


def err(stream: str = "s1", n: int = 0) -> ErrorEvent:
    return ErrorEvent(stream=stream, session_id=stream, data=ErrorData(code="t", message=str(n)))


async def take(sub: BusSubscription, n: int) -> list[Event]:
    out: list[Event] = []
    for _ in range(n):
        out.append(await asyncio.wait_for(anext(sub), STUCK))
    return out


def _url(request: pytest.FixtureRequest) -> str:
    """The database of the backend named by the fixture's param; "" for `InMemoryEventStore`."""
    if request.param == "memory":
        return ""
    return str(request.getfixturevalue(f"{request.param}_url"))


async def _store(url: str) -> AsyncIterator[EventStore]:
    store: EventStore
    if url:
        store = create_event_store(create_engine(url), owns_engine=True)
    else:
        store = InMemoryEventStore()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture(params=["sqlite", "memory"])
def store_url(request: pytest.FixtureRequest) -> str:
    return _url(request)


@pytest.fixture(params=["sqlite", "postgres", "memory"])
def any_store_url(request: pytest.FixtureRequest) -> str:
    return _url(request)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[EventStore]:
    async for s in _store(store_url):
        yield s


@pytest.fixture
async def any_store(any_store_url: str) -> AsyncIterator[EventStore]:
    async for s in _store(any_store_url):
        yield s


@pytest.fixture
async def bus(store: EventStore) -> AsyncIterator[InProcessEventBus]:
    bus = InProcessEventBus(store)
    yield bus
    await bus.close()


async def test_publish_persists_before_any_subscriber_sees_the_event(
    bus: InProcessEventBus, store: EventStore
) -> None:
    sub = bus.subscribe()
    published = await bus.publish(err())
    [got] = await take(sub, 1)
    assert got == published
    assert (got.seq, got.position) == (1, 1)
    assert await store.read_stream("s1") == [got]


async def test_failed_append_delivers_nothing(bus: InProcessEventBus) -> None:
    sub = bus.subscribe()
    await bus.publish(err(n=1))
    with pytest.raises(ConflictError):
        await bus.publish(err(n=2), expected_seq=0)
    await bus.publish(err(n=3))
    got = await take(sub, 2)
    assert [e.data.message for e in got] == ["1", "3"]  # type: ignore[union-attr]


async def test_live_subscription_gets_only_events_published_after_it(
    bus: InProcessEventBus,
) -> None:
    await bus.publish(err(n=1))
    sub = bus.subscribe()
    await bus.publish(err(n=2))
    [got] = await take(sub, 1)
    assert got.seq == 2


async def test_filters_route_each_event_to_the_matching_subscribers(
    bus: InProcessEventBus,
) -> None:
    everything = bus.subscribe()
    only_a = bus.subscribe(EventFilter(stream="a"))
    only_runs = bus.subscribe(EventFilter(types=frozenset({"run_started"})))
    await bus.publish(err("a", 1))
    await bus.publish(err("b", 2))
    await bus.publish(RunStartedEvent(stream="b", data=RunStarted(agent="x")))
    await bus.publish(err("a", 3))
    assert [e.position for e in await take(everything, 4)] == [1, 2, 3, 4]
    assert [e.position for e in await take(only_a, 2)] == [1, 4]
    assert [e.type for e in await take(only_runs, 1)] == ["run_started"]
    # Nothing else is waiting: the next matching event is the next one delivered.
    await bus.publish(RunStartedEvent(stream="a", data=RunStarted(agent="y")))
    assert [e.position for e in await take(only_runs, 1)] == [5]
    assert [e.position for e in await take(only_a, 1)] == [5]


async def test_publish_batch_delivers_every_event_in_order(bus: InProcessEventBus) -> None:
    sub = bus.subscribe()
    stored = await bus.publish_batch([err("a"), err("b"), err("a")])
    assert await take(sub, 3) == stored


async def test_concurrent_publishers_deliver_in_position_order(bus: InProcessEventBus) -> None:
    sub = bus.subscribe(max_queue=1000)

    async def publisher(stream: str) -> None:
        for n in range(25):
            await bus.publish(err(stream, n))

    await asyncio.gather(*(publisher(s) for s in ("a", "b", "c", "d")))
    got = await take(sub, 100)
    assert [e.position for e in got] == list(range(1, 101))
    for stream in "abcd":
        assert [e.seq for e in got if e.stream == stream] == list(range(1, 26))


async def _consume_resubscribing(
    bus: InProcessEventBus,
    total: int,
    flt: EventFilter,
    max_queue: int,
    publisher: asyncio.Task[None],
) -> tuple[list[int], bool]:
    """Read ``total`` events of one stream from seq 0, resubscribing whenever it lags.

    Also says whether the publisher was still running when some event arrived.
    """
    seqs: list[int] = []
    resumes: list[tuple[int | None, int]] = []
    overlapped = False
    cursor = 0
    while len(seqs) < total:
        async with bus.subscribe(flt, from_seq=cursor, max_queue=max_queue) as sub:
            try:
                while len(seqs) < total:
                    event = await asyncio.wait_for(anext(sub), STUCK)
                    seqs.append(event.seq)
                    cursor = event.seq
                    overlapped = overlapped or not publisher.done()
            except SubscriberLagged as lag:
                resumes.append((lag.last_seq, cursor))
    assert all(reported == seen for reported, seen in resumes)
    return seqs, overlapped


@pytest.mark.parametrize("max_queue", [7, 1000])
async def test_catch_up_from_zero_while_publishing_delivers_every_event_once_in_order(
    any_store: EventStore, max_queue: int
) -> None:
    bus = InProcessEventBus(any_store)
    total = 2 * CATCH_UP_PAGE  # catch-up reads more than one page
    head_start = asyncio.Event()

    async def publisher() -> None:
        for n in range(0, total, 10):
            if n < total - 300:
                await bus.publish_batch([err("s1", n + i) for i in range(10)])
            else:
                for i in range(10):
                    await bus.publish(err("s1", n + i))
                    if i % 2:
                        await bus.publish(err("noise", n + i))
            if n == total - 400:
                head_start.set()
            # Let the subscriber in between rounds, also when the store never waits (memory).
            await asyncio.sleep(0)

    task = asyncio.create_task(publisher())
    await head_start.wait()
    seqs, overlapped = await _consume_resubscribing(
        bus, total, EventFilter(stream="s1"), max_queue, task
    )
    await task
    assert overlapped
    assert seqs == list(range(1, total + 1))
    await bus.close()


async def test_from_position_catch_up_spans_streams_and_goes_live(bus: InProcessEventBus) -> None:
    await bus.publish_batch([err("a"), err("b"), err("c"), err("a"), err("b")])
    sub = bus.subscribe(from_position=2)
    await bus.publish(err("c"))
    got = await take(sub, 4)
    assert [(e.stream, e.position) for e in got] == [("c", 3), ("a", 4), ("b", 5), ("c", 6)]
    assert sub.last_position == 6


async def test_from_position_catch_up_applies_the_filter(bus: InProcessEventBus) -> None:
    await bus.publish_batch([err("a"), err("b"), err("a")])
    sub = bus.subscribe(EventFilter(stream="a"), from_position=0)
    await bus.publish(err("b"))
    await bus.publish(err("a"))
    assert [e.position for e in await take(sub, 3)] == [1, 3, 5]


async def test_from_seq_catch_up_reads_only_after_the_cursor(bus: InProcessEventBus) -> None:
    await bus.publish_batch([err("a", n) for n in range(5)])
    sub = bus.subscribe(EventFilter(stream="a"), from_seq=3)
    await bus.publish(err("a", 5))
    assert [e.seq for e in await take(sub, 3)] == [4, 5, 6]
    assert sub.last_seq == 6


async def test_lagged_subscriber_gets_what_was_queued_then_an_error_naming_its_cursor(
    bus: InProcessEventBus,
) -> None:
    slow = bus.subscribe(EventFilter(stream="s1"), max_queue=5)
    fast = bus.subscribe(max_queue=100)
    # The publisher is never held up by the subscriber that does not read.
    for n in range(12):
        await asyncio.wait_for(bus.publish(err("s1", n)), STUCK)
    assert slow.lagged
    assert bus.subscriber_count == 1
    assert [e.seq for e in await take(slow, 5)] == [1, 2, 3, 4, 5]
    with pytest.raises(SubscriberLagged) as caught:
        await take(slow, 1)
    assert (caught.value.last_seq, caught.value.last_position) == (5, 5)
    assert caught.value.hint
    # The other subscriber lost nothing.
    assert [e.seq for e in await take(fast, 12)] == list(range(1, 13))
    # Resubscribing from the reported cursor yields the rest: no loss, no duplicate.
    again = bus.subscribe(EventFilter(stream="s1"), from_seq=caught.value.last_seq)
    await bus.publish(err("s1", 12))
    assert [e.seq for e in await take(again, 8)] == list(range(6, 14))


async def test_lagged_subscriber_can_resume_by_position(bus: InProcessEventBus) -> None:
    slow = bus.subscribe(max_queue=3)
    await bus.publish_batch([err("a"), err("b"), err("a"), err("b"), err("c")])
    await take(slow, 3)
    with pytest.raises(SubscriberLagged) as caught:
        await take(slow, 1)
    assert caught.value.last_position == 3
    again = bus.subscribe(from_position=caught.value.last_position)
    assert [e.position for e in await take(again, 2)] == [4, 5]


async def test_close_ends_a_waiting_iteration_cleanly(bus: InProcessEventBus) -> None:
    sub = bus.subscribe()
    received: list[Event] = []
    got_one = asyncio.Event()

    async def consume() -> None:
        async for event in sub:
            received.append(event)
            got_one.set()

    task = asyncio.create_task(consume())
    await bus.publish(err())
    await got_one.wait()
    await asyncio.sleep(0)  # one turn of the loop: the consumer waits for the next event
    await sub.close()
    await asyncio.wait_for(task, STUCK)
    assert len(received) == 1
    assert sub.closed
    assert bus.subscriber_count == 0


async def test_async_with_closes_the_subscription(bus: InProcessEventBus) -> None:
    async with bus.subscribe() as sub:
        await bus.publish(err())
        assert len(await take(sub, 1)) == 1
    assert sub.closed
    assert bus.subscriber_count == 0
    with pytest.raises(StopAsyncIteration):
        await anext(sub)


async def test_bus_close_ends_every_subscription_and_refuses_more_work(
    store: EventStore,
) -> None:
    bus = InProcessEventBus(store)
    subs = [bus.subscribe(), bus.subscribe(EventFilter(stream="x"), from_seq=0)]
    waiting = [asyncio.create_task(anext(s)) for s in subs]
    await asyncio.sleep(0)
    await bus.close()
    for task in waiting:
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(task, STUCK)
    with pytest.raises(ServiceUnavailableError):
        await bus.publish(err())
    with pytest.raises(ServiceUnavailableError):
        bus.subscribe()
    assert await store.count() == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"from_seq": 0}, "needs a filter with a stream"),
        ({"filter": EventFilter(stream="a"), "from_seq": 1, "from_position": 1}, "not both"),
        ({"from_position": -1}, "from_position"),
        ({"max_queue": 0}, "max_queue"),
        ({"filter": {"stream": "a"}}, "EventFilter"),
    ],
)
def test_bad_subscribe_arguments_are_rejected(
    bus: InProcessEventBus, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        bus.subscribe(**kwargs)
    assert bus.subscriber_count == 0
