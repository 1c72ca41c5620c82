"""The pure projection: the log alone rebuilds what the manager stores (replay == live)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sessions_support import ALICE, BOB, Stack

from promptline.core.clock import ManualClock
from promptline.core.errors import NotFoundError
from promptline.core.events import (
    Event,
    MessageReceived,
    MessageReceivedEvent,
    SessionCreated,
    SessionCreatedEvent,
)
from promptline.core.messages import Message
from promptline.events.protocols import EventFilter
from promptline.events.replay import replay
from promptline.sessions import SessionProjection
from promptline.sessions.projection import SESSION_EVENT_TYPES


async def _busy_log(stack: Stack, clock: ManualClock) -> list[str]:
    manager = stack.manager
    a = await manager.create(ALICE, channel="cli", context={"a": 1}, tools=["t"])
    b = await manager.create(BOB, channel="slack", ttl=timedelta(minutes=10))
    for n in range(4):
        clock.advance(1)
        await manager.append_message(a.id, Message(role="user", content=f"a{n}"), ALICE)
        await manager.append_message(b.id, Message(role="assistant", content=f"b{n}"), BOB)
    await manager.update(a.id, ALICE, permissions={"t": "ask"}, metadata={"x": [1, 2]})
    clock.advance(600)
    await manager.expire_due()
    return [a.id, b.id]


async def test_replaying_one_stream_equals_the_live_session(
    stack: Stack, clock: ManualClock
) -> None:
    ids = await _busy_log(stack, clock)
    owners = {ids[0]: ALICE, ids[1]: BOB}
    for sid in ids:
        projection = SessionProjection()
        await replay(stack.store, projection, stream=sid)
        assert projection.session(sid) == await stack.manager.get(sid, owners[sid])


async def test_replaying_the_whole_log_rebuilds_every_session(
    stack: Stack, clock: ManualClock
) -> None:
    ids = await _busy_log(stack, clock)
    projection = SessionProjection()
    await replay(stack.store, projection)
    assert projection.session_ids == ids
    assert projection.session(ids[1]).status == "expired"
    assert projection.session(ids[1]) == await stack.manager.get(ids[1], BOB)


async def test_replaying_only_session_event_types_gives_the_same_history(
    stack: Stack, clock: ManualClock
) -> None:
    ids = await _busy_log(stack, clock)
    projection = SessionProjection()
    await replay(stack.store, projection, filter=EventFilter(types=SESSION_EVENT_TYPES))
    assert projection.session(ids[0]).history == (await stack.manager.get(ids[0], ALICE)).history


def _created(sid: str, seq: int, clock: ManualClock) -> SessionCreatedEvent:
    return SessionCreatedEvent(
        stream=sid,
        session_id=sid,
        seq=seq,
        tenant_id="acme",
        user_id="alice",
        ts=clock.now(),
        data=SessionCreated(channel="cli", tools=[{"name": "ok"}, {"bad": 1}]),
    )


def _said(sid: str, seq: int, text: str, clock: ManualClock) -> MessageReceivedEvent:
    return MessageReceivedEvent(
        stream=sid,
        session_id=sid,
        seq=seq,
        ts=clock.now(),
        data=MessageReceived(message=Message(role="user", content=text)),
    )


def test_applying_an_event_twice_changes_nothing(clock: ManualClock) -> None:
    projection = SessionProjection()
    events: list[Event] = [
        _created("s", 1, clock),
        _said("s", 2, "x", clock),
        _said("s", 2, "x", clock),
        _created("s", 1, clock),
    ]
    for event in events:
        projection.apply(event)
    session = projection.session("s")
    assert [m.text for m in session.history] == ["x"]
    assert (session.message_count, session.last_seq) == (1, 2)


def test_events_without_a_creation_and_invalid_tool_entries_are_skipped(
    clock: ManualClock,
) -> None:
    projection = SessionProjection()
    projection.apply(_said("orphan", 1, "lost", clock))
    projection.apply(_created("s", 1, clock))
    assert projection.session_ids == ["s"]
    assert [t.name for t in projection.session("s").tools] == ["ok"]
    with pytest.raises(NotFoundError, match="orphan"):
        projection.session("orphan")
