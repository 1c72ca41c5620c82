"""The SSE building blocks: following a stream survives falling behind (no gap, no
duplicate), frames have the wire form, and ``Last-Event-ID`` is read strictly."""

from __future__ import annotations

import json
from typing import Any

import pytest

from promptline.core.errors import InvalidInputError
from promptline.core.events import Event, SessionExpired, SessionExpiredEvent
from promptline.events.bus import BusSubscription, InProcessEventBus
from promptline.events.memory import InMemoryEventStore
from promptline.gateway.service import event_json
from promptline.gateway.sse import follow, frame, resume_seq


class CountingBus(InProcessEventBus):
    """A bus that remembers the cursor of every subscription made on it."""

    cursors: list[int | None]

    def subscribe(self, *args: Any, **kwargs: Any) -> BusSubscription:
        self.cursors = [*getattr(self, "cursors", []), kwargs.get("from_seq")]
        return super().subscribe(*args, **kwargs)


def _event(n: int) -> Event:
    return SessionExpiredEvent(
        stream="ses_a", session_id="ses_a", data=SessionExpired(reason=f"r{n}")
    )


async def test_a_follower_that_falls_behind_resubscribes_and_misses_nothing() -> None:
    bus = CountingBus(InMemoryEventStore(), default_max_queue=3)
    for n in range(5):
        await bus.publish(_event(n))
    followed = follow(bus, "ses_a", from_seq=2)
    seqs = [(await anext(followed)).seq for _ in range(3)]  # caught up, now live
    for n in range(5, 25):  # far more than its queue holds while nobody reads
        await bus.publish(_event(n))
    await bus.publish(_event(25), expected_seq=25)

    while seqs[-1] < 26:
        seqs.append((await anext(followed)).seq)
    await followed.aclose()

    assert seqs == list(range(3, 27))
    assert len(bus.cursors) == 2  # it fell behind once and resubscribed
    assert bus.cursors[0] == 2
    assert (bus.cursors[1] or 0) > 2
    assert bus.subscriber_count == 0


async def test_a_follower_stops_after_the_event_it_waits_for_and_lets_go() -> None:
    bus = InProcessEventBus(InMemoryEventStore())
    for n in range(4):
        await bus.publish(_event(n))

    got = [e.seq async for e in follow(bus, "ses_a", from_seq=0, until=lambda e: e.seq == 2)]

    assert got == [1, 2]
    assert bus.subscriber_count == 0


async def test_a_frame_carries_the_seq_the_type_and_the_event_json() -> None:
    bus = InProcessEventBus(InMemoryEventStore())
    stored = await bus.publish(_event(0))

    lines = frame(stored).decode().split("\n")

    assert lines[0] == f"id: {stored.seq}"
    assert lines[1] == "event: session_expired"
    assert json.loads(lines[2].removeprefix("data: ")) == event_json(stored)
    assert lines[3:] == ["", ""]


def test_last_event_id_wins_and_must_be_a_seq() -> None:
    assert resume_seq(None, None) is None
    assert resume_seq(4, None) == 4
    assert resume_seq(4, " 9 ") == 9
    assert resume_seq(4, "") == 4
    for bad in ("x", "-1", "1.5", "٣", "9" * 40):
        with pytest.raises(InvalidInputError):
            resume_seq(None, bad)
