"""Replay: a projection rebuilt from the log alone equals the one kept up to date from the bus."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from promptline.core.errors import InvalidInputError
from promptline.core.events import (
    ErrorData,
    ErrorEvent,
    Event,
    MessageReceived,
    MessageReceivedEvent,
    parse_event,
)
from promptline.core.messages import Message
from promptline.events.bus import InProcessEventBus
from promptline.events.factory import create_event_store
from promptline.events.protocols import EventFilter, EventStore
from promptline.events.replay import Projection, replay
from promptline.storage.database import create_engine


@dataclass
class Transcripts:
    """A read model: each session's message texts, event count per type, last seq per stream."""

    texts: dict[str, list[str]] = field(default_factory=dict)
    by_type: dict[str, int] = field(default_factory=dict)
    last_seq: dict[str, int] = field(default_factory=dict)

    def apply(self, event: Event) -> None:
        self.by_type[event.type] = self.by_type.get(event.type, 0) + 1
        self.last_seq[event.stream] = event.seq
        if isinstance(event, MessageReceivedEvent):
            self.texts.setdefault(event.stream, []).append(event.data.message.text)


def said(session: str, text: str) -> MessageReceivedEvent:
    return MessageReceivedEvent(
        session_id=session, data=MessageReceived(message=Message(role="user", content=text))
    )


def failed(session: str) -> ErrorEvent:
    return ErrorEvent(session_id=session, data=ErrorData(code="x", message="boom"))


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[EventStore]:
    store = create_event_store(create_engine(db_url), owns_engine=True)
    try:
        yield store
    finally:
        await store.close()


def test_a_plain_class_with_apply_is_a_projection() -> None:
    projection: Projection = Transcripts()
    assert callable(projection.apply)


async def test_projection_rebuilt_from_the_log_equals_the_live_one(store: EventStore) -> None:
    bus = InProcessEventBus(store)
    live = Transcripts()
    sub = bus.subscribe()
    published: list[Event] = []
    for i in range(30):
        published.append(await bus.publish(said(f"s{i % 3}", f"hello {i}")))
        if i % 7 == 0:
            published.extend(await bus.publish_batch([failed(f"s{i % 3}"), said("s9", "x")]))
    published.append(await bus.publish(parse_event({"type": "future_thing", "data": {"v": 1}})))
    for _ in published:
        live.apply(await asyncio.wait_for(anext(sub), 10))
    await bus.close()

    rebuilt = Transcripts()
    last = await replay(store, rebuilt, batch=4)
    assert rebuilt == live
    assert last == published[-1].position
    assert rebuilt.texts["s0"][:2] == ["hello 0", "hello 3"]
    assert rebuilt.by_type["future_thing"] == 1


async def test_replay_resumes_from_a_checkpoint_applying_only_newer_events(
    store: EventStore,
) -> None:
    await store.append_batch([said("s1", "a"), said("s1", "b")])
    first = Transcripts()
    checkpoint = await replay(store, first)
    await store.append_batch([said("s1", "c"), said("s2", "d")])
    second = Transcripts()
    assert await replay(store, second, from_position=checkpoint) == checkpoint + 2
    assert second.texts == {"s1": ["c"], "s2": ["d"]}
    assert await replay(store, Transcripts(), from_position=checkpoint + 2) == checkpoint + 2


async def test_replay_of_one_stream_with_a_filter(store: EventStore) -> None:
    await store.append_batch([said("s1", "a"), failed("s1"), said("s2", "b"), said("s1", "c")])
    only = Transcripts()
    await replay(
        store, only, stream="s1", filter=EventFilter(types=frozenset({"message_received"}))
    )
    assert only.texts == {"s1": ["a", "c"]}
    assert only.by_type == {"message_received": 2}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch": 0}, "batch"),
        ({"stream": "a", "filter": EventFilter(stream="b")}, "contradicts"),
    ],
)
async def test_replay_rejects_bad_arguments(
    store: EventStore, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        await replay(store, Transcripts(), **kwargs)  # type: ignore[arg-type]
