"""Recovery: events that reached the log but not the projection are applied, once, in order."""

from __future__ import annotations

from typing import Any

import pytest
from sessions_support import ALICE, Stack, StackOpener
from sqlalchemy import delete, select

from promptline.core.clock import ManualClock
from promptline.core.errors import StorageError
from promptline.core.events import (
    Event,
    LlmCommand,
    LlmCommandEvent,
    MessageReceived,
    MessageReceivedEvent,
    MessageSent,
    MessageSentEvent,
    SessionCreated,
    SessionCreatedEvent,
    SessionExpired,
    SessionExpiredEvent,
)
from promptline.core.messages import Message
from promptline.sessions import SessionManager
from promptline.sessions.checkpoint import read_checkpoint
from promptline.storage.schema import session_messages, sessions


def _envelope(sid: str, clock: ManualClock) -> dict[str, Any]:
    return {"session_id": sid, "tenant_id": "acme", "user_id": "alice", "ts": clock.now()}


def _said(sid: str, text: str, clock: ManualClock) -> Event:
    """A user message as the log holds it, written by a process that died before projecting."""
    return MessageReceivedEvent(
        **_envelope(sid, clock), data=MessageReceived(message=Message(role="user", content=text))
    )


async def _checkpoint(stack: Stack) -> int:
    async with stack.engine.connect() as conn:
        return await read_checkpoint(conn)


async def _message_rows(stack: Stack, sid: str) -> list[tuple[int, int, str]]:
    t = session_messages.c
    query = select(t.idx, t.seq, t.text).where(t.session_id == sid).order_by(t.idx)
    async with stack.engine.connect() as conn:
        return [(row.idx, row.seq, row.text) for row in (await conn.execute(query)).all()]


async def test_recover_applies_events_a_crashed_process_did_not_project(
    db_url: str, opener: StackOpener, clock: ManualClock
) -> None:
    before = opener(db_url)
    session = await before.manager.create(ALICE, channel="cli")
    await before.manager.append_message(session.id, Message(role="user", content="one"), ALICE)
    assert await _checkpoint(before) == await before.store.last_position()
    # The process appended these two events, then died before projecting them.
    await before.store.append(_said(session.id, "two", clock))
    await before.store.append(_said(session.id, "three", clock))
    await before.engine.dispose()

    after = opener(db_url)
    assert await _message_rows(after, session.id) == [(0, 2, "one")]  # the record lags
    assert await after.manager.recover() == [session.id]
    got = await after.manager.get(session.id, ALICE)
    assert [m.text for m in got.history] == ["one", "two", "three"]
    assert (got.message_count, got.last_seq) == (3, 4)
    assert await _message_rows(after, session.id) == [(0, 2, "one"), (1, 3, "two"), (2, 4, "three")]
    assert await _checkpoint(after) == await after.store.last_position()
    assert await after.manager.recover() == []


async def test_recover_creates_a_session_whose_creation_was_never_projected(
    stack: Stack, opener: StackOpener, db_url: str, clock: ManualClock
) -> None:
    await stack.manager.create(ALICE, channel="cli")  # moves the checkpoint past 0
    created = SessionCreatedEvent(**_envelope("ses_lost", clock), data=SessionCreated(channel="x"))
    await stack.store.append(created)
    await stack.store.append(_said("ses_lost", "hello", clock))
    await stack.store.append(
        SessionExpiredEvent(**_envelope("ses_lost", clock), data=SessionExpired())
    )

    restarted = opener(db_url).manager
    assert await restarted.recover() == ["ses_lost"]
    lost = await restarted.get("ses_lost", ALICE)
    assert (lost.channel, lost.status, lost.message_count) == ("x", "expired", 1)


async def test_recover_is_idempotent_and_full_rescans_change_nothing(
    stack: Stack, clock: ManualClock
) -> None:
    session = await stack.manager.create(ALICE, channel="cli")
    for text in ("a", "b"):
        await stack.manager.append_message(session.id, Message(role="user", content=text), ALICE)
    await stack.store.append(_said(session.id, "c", clock))
    assert await stack.manager.recover() == [session.id]
    rows = await _message_rows(stack, session.id)
    assert await stack.manager.recover(full=True) == []
    assert await stack.manager.recover() == []
    assert await _message_rows(stack, session.id) == rows
    assert (await stack.manager.get(session.id, ALICE)).message_count == 3


async def test_a_full_recover_rebuilds_a_wiped_projection_from_the_log(
    stack: Stack, clock: ManualClock
) -> None:
    manager = stack.manager
    first = await manager.create(ALICE, channel="cli", context={"k": "v"})
    second = await manager.create(ALICE, channel="slack")
    for n in range(3):
        await manager.append_message(first.id, Message(role="user", content=f"f{n}"), ALICE)
        await manager.append_message(second.id, Message(role="assistant", content=f"s{n}"), ALICE)
    await manager.update(second.id, ALICE, metadata={"m": 1})
    want = {s: await manager.get(s, ALICE) for s in (first.id, second.id)}
    async with stack.engine.begin() as conn:
        await conn.execute(delete(session_messages))
        await conn.execute(delete(sessions))

    assert sorted(await manager.recover(full=True)) == sorted(want)
    assert {s: await manager.get(s, ALICE) for s in want} == want
    assert [h.session_id for h in await manager.search(ALICE, "f1")] == [first.id]


async def test_an_append_first_catches_up_with_events_others_wrote_to_the_stream(
    stack: Stack, clock: ManualClock
) -> None:
    manager = stack.manager
    session = await manager.create(ALICE, channel="cli")
    # A run (another component, or another process) writes to the session's stream directly.
    await stack.bus.publish(
        LlmCommandEvent(**_envelope(session.id, clock), data=LlmCommand(model="m"))
    )
    await stack.bus.publish(
        MessageSentEvent(
            **_envelope(session.id, clock),
            data=MessageSent(message=Message(role="assistant", content="from the run")),
        )
    )
    await manager.append_message(session.id, Message(role="user", content="mine"), ALICE)
    got = await manager.get(session.id, ALICE)
    assert [m.text for m in got.history] == ["from the run", "mine"]
    assert got.last_seq == 4 == await stack.store.last_seq(session.id)
    assert await _message_rows(stack, session.id) == [(0, 3, "from the run"), (1, 4, "mine")]


async def test_a_second_process_on_the_same_database_sees_and_extends_sessions(
    db_url: str, opener: StackOpener
) -> None:
    one, two = opener(db_url).manager, opener(db_url).manager
    session = await one.create(ALICE, channel="cli")
    await one.append_message(session.id, Message(role="user", content="from one"), ALICE)
    await two.append_message(session.id, Message(role="user", content="from two"), ALICE)
    await one.append_message(session.id, Message(role="user", content="one again"), ALICE)
    for manager in (one, two):
        got = await manager.get(session.id, ALICE)
        assert [m.text for m in got.history] == ["from one", "from two", "one again"]


async def test_events_before_a_sessions_creation_are_ignored(
    sessions: SessionManager, stack: Stack, clock: ManualClock
) -> None:
    await stack.store.append(_said("ses_orphan", "nobody home", clock))
    assert await sessions.recover(full=True) == []
    assert await sessions.list(ALICE) == []


async def test_two_processes_appending_at_once_keep_one_history_in_log_order(
    db_url: str, opener: StackOpener
) -> None:
    import asyncio

    one, two = opener(db_url), opener(db_url)
    session = await one.manager.create(ALICE, channel="cli")

    async def say(stack: Stack, text: str) -> None:
        await stack.manager.append_message(session.id, Message(role="user", content=text), ALICE)

    await asyncio.gather(*(say(one if n % 2 else two, f"m{n}") for n in range(24)))
    logged = [
        e.data.message.text  # type: ignore[union-attr]
        for e in await one.store.read_stream(session.id)
        if e.type == "message_received"
    ]
    assert sorted(logged) == sorted(f"m{n}" for n in range(24))
    for stack in (one, two):
        got = await stack.manager.get(session.id, ALICE)
        assert [m.text for m in got.history] == logged
        assert got.last_seq == 25
    rows = await _message_rows(one, session.id)
    assert [idx for idx, _, _ in rows] == list(range(24))
    assert [seq for _, seq, _ in rows] == list(range(2, 26))


async def test_a_failed_projection_holds_the_checkpoint_until_recover_applies_it(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    import promptline.sessions.manager as manager_module

    manager = stack.manager
    broken = await manager.create(ALICE, channel="cli")
    other = await manager.create(ALICE, channel="cli")
    real_write_head = manager_module.write_head

    async def failing_write_head(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(manager_module, "write_head", failing_write_head)
    with pytest.raises(StorageError, match="disk I/O error"):
        await manager.append_message(broken.id, Message(role="user", content="lost?"), ALICE)
    monkeypatch.setattr(manager_module, "write_head", real_write_head)
    lost_position = (await stack.store.read_stream(broken.id))[-1].position

    # Later writes elsewhere must not move the checkpoint past the unprojected event.
    await manager.append_message(other.id, Message(role="user", content="fine"), ALICE)
    assert await _checkpoint(stack) < lost_position

    assert await manager.recover() == [broken.id]
    assert [m.text for m in (await manager.get(broken.id, ALICE)).history] == ["lost?"]
    assert await _checkpoint(stack) == await stack.store.last_position()


async def test_a_read_finds_what_the_log_holds_though_the_record_lags(
    stack: Stack, clock: ManualClock
) -> None:
    session = await stack.manager.create(ALICE, channel="cli")
    # Written by another writer (a run) that has not brought the record up to date yet.
    await stack.store.append(_said(session.id, "late", clock))

    got = await stack.manager.get(session.id, ALICE)
    head_only = await stack.manager.get(session.id, ALICE, history_limit=0)

    assert [m.text for m in got.history] == ["late"]
    assert head_only.message_count == 1
