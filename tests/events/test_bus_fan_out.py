"""The bus's fan-out: each event reaches exactly the subscriptions whose filter matches it
(indexed by stream and run, the rest tested one by one), and transient events (a model's
``llm_delta``) reach live subscribers in order with the stored events but are never stored
nor replayed."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest

from promptline.core.errors import SubscriberLagged
from promptline.core.events import (
    ErrorData,
    ErrorEvent,
    Event,
    LlmDelta,
    LlmDeltaEvent,
    RunStarted,
    RunStartedEvent,
)
from promptline.events.bus import BusSubscription, InProcessEventBus
from promptline.events.memory import InMemoryEventStore
from promptline.events.protocols import EventFilter

STUCK = 10.0
"""Bounds a wait that should end at once; only reached if the code under test is broken."""


@pytest.fixture
async def bus() -> AsyncIterator[InProcessEventBus]:
    bus = InProcessEventBus(InMemoryEventStore())
    yield bus
    await bus.close()


def err(stream: str, run: str | None = None, n: int = 0) -> ErrorEvent:
    return ErrorEvent(
        stream=stream, session_id=stream, run_id=run, data=ErrorData(code="t", message=str(n))
    )


def delta(stream: str, run: str | None = None, index: int = 0) -> LlmDeltaEvent:
    return LlmDeltaEvent(
        session_id=stream, run_id=run, data=LlmDelta(index=index, text=f"piece{index}")
    )


def drain(sub: BusSubscription) -> list[Event]:
    """What the subscription holds right now (without waiting)."""
    return list(sub._queue)


async def take(sub: BusSubscription, n: int) -> list[Event]:
    return [await asyncio.wait_for(anext(sub), STUCK) for _ in range(n)]


FILTERS = [
    None,
    EventFilter(),
    EventFilter(stream="a"),
    EventFilter(stream="b"),
    EventFilter(stream="a", run_id="r1"),
    EventFilter(run_id="r1"),
    EventFilter(run_id="r2"),
    EventFilter(types=frozenset({"run_started"})),
    EventFilter(run_id="r1", types=frozenset({"error"})),
    EventFilter(stream="b", types=frozenset({"run_started"})),
    EventFilter(session_id="a"),
    EventFilter(tenant_id="nobody"),
]


async def test_every_event_reaches_exactly_the_subscriptions_whose_filter_matches(
    bus: InProcessEventBus,
) -> None:
    subs = [bus.subscribe(f) for f in FILTERS]
    published: list[Event] = []
    for stream, run in itertools.product(("a", "b", "c"), ("r1", "r2", None)):
        published.append(await bus.publish(err(stream, run)))
        published.append(
            await bus.publish(
                RunStartedEvent(stream=stream, run_id=run, data=RunStarted(agent="x"))
            )
        )
    published.append(await bus.publish_transient(delta("a", "r1")))

    for flt, sub in zip(FILTERS, subs, strict=True):
        wanted = [e.id for e in published if flt is None or flt.matches(e)]
        assert [e.id for e in drain(sub)] == wanted, flt


async def test_the_index_forgets_closed_subscriptions_and_counts_the_rest(
    bus: InProcessEventBus,
) -> None:
    subs = [bus.subscribe(f) for f in FILTERS]
    assert bus.subscriber_count == len(FILTERS)
    for sub in subs[::2]:
        await sub.close()
    assert bus.subscriber_count == len(FILTERS) - len(subs[::2])
    await bus.publish(err("a", "r1"))
    assert all(not drain(s) for s in subs[::2])
    for sub in subs[1::2]:
        await sub.close()
    assert bus.subscriber_count == 0
    assert (bus._by_stream, bus._by_run, bus._anywhere) == ({}, {}, [])


async def test_a_lagging_subscription_leaves_its_stream_index_and_others_still_get_events(
    bus: InProcessEventBus,
) -> None:
    slow = bus.subscribe(EventFilter(stream="a"), max_queue=2)
    other = bus.subscribe(EventFilter(stream="a"))
    for n in range(4):
        await bus.publish(err("a", n=n))
    assert slow.lagged
    assert bus.subscriber_count == 1
    assert [e.seq for e in drain(other)] == [1, 2, 3, 4]


async def test_a_live_subscriber_sees_transient_deltas_in_order_between_stored_events(
    bus: InProcessEventBus,
) -> None:
    sub = bus.subscribe(EventFilter(stream="a"))
    first = await bus.publish(err("a", "r1", 1))
    sent = [await bus.publish_transient(delta("a", "r1", i)) for i in range(3)]
    last = await bus.publish(err("a", "r1", 2))

    got = await take(sub, 5)
    assert [e.id for e in got] == [first.id, *(d.id for d in sent), last.id]
    assert [e.seq for e in got] == [1, 0, 0, 0, 2]
    assert all(d.stream == "a" for d in sent)  # filled in from the session, as on append
    assert sub.last_seq == 2  # a transient event moves no cursor
    assert [e.id for e in await bus.store.read_stream("a")] == [first.id, last.id]


async def test_a_cursor_after_transient_deltas_stays_on_the_last_stored_event(
    bus: InProcessEventBus,
) -> None:
    sub = bus.subscribe(EventFilter(stream="a"))
    await bus.publish(err("a", n=1))
    await bus.publish_transient(delta("a"))
    await take(sub, 2)
    assert (sub.last_seq, sub.last_position) == (1, 1)


async def test_resuming_from_a_seq_replays_stored_events_only_then_goes_live_with_deltas(
    bus: InProcessEventBus,
) -> None:
    await bus.publish(err("a", "r1", 1))  # an llm_command, say
    await bus.publish_transient(delta("a", "r1", 0))  # missed: nobody was subscribed
    await bus.publish(err("a", "r1", 2))  # its llm_result, which holds the whole answer

    again = bus.subscribe(EventFilter(stream="a"), from_seq=0)
    live = await bus.publish_transient(delta("a", "r1", 1))
    got = await take(again, 3)
    assert [e.seq for e in got] == [1, 2, 0]
    assert got[-1].id == live.id


async def test_catch_up_drops_deltas_that_came_before_an_event_it_read_from_the_store(
    bus: InProcessEventBus,
) -> None:
    await bus.publish(err("a", n=1))
    sub = bus.subscribe(EventFilter(stream="a"), from_seq=0)
    # Published while the subscription has not read the store yet: queued live.
    stale = await bus.publish_transient(delta("a", index=0))
    await bus.publish(err("a", n=2))  # read from the store too, so the delta before is old
    fresh = await bus.publish_transient(delta("a", index=1))
    got = await take(sub, 3)
    assert [e.seq for e in got] == [1, 2, 0]
    assert got[-1].id == fresh.id
    assert stale.id not in {e.id for e in got}


async def test_catch_up_keeps_deltas_that_follow_the_last_stored_event(
    bus: InProcessEventBus,
) -> None:
    await bus.publish(err("a", n=1))
    sub = bus.subscribe(EventFilter(stream="a"), from_seq=0)
    pieces = [await bus.publish_transient(delta("a", index=i)) for i in range(2)]
    got = await take(sub, 3)
    assert [e.id for e in got[1:]] == [p.id for p in pieces]
    assert sub.last_seq == 1


async def test_a_subscriber_lagging_on_deltas_alone_resumes_from_its_last_stored_event(
    bus: InProcessEventBus,
) -> None:
    sub = bus.subscribe(EventFilter(stream="a"), max_queue=2)
    await bus.publish(err("a", n=1))
    await take(sub, 1)
    for i in range(3):
        await bus.publish_transient(delta("a", index=i))
    assert sub.lagged
    await take(sub, 2)
    with pytest.raises(SubscriberLagged) as caught:
        await take(sub, 1)
    assert caught.value.last_seq == 1
