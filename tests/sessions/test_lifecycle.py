"""Create, read, list, append, update, expire and resume sessions on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sessions_support import ACME_ADMIN, ALICE, BOB, Stack, StackOpener

from promptline.core.clock import ManualClock
from promptline.core.errors import ConflictError
from promptline.core.events import SessionCreatedEvent
from promptline.core.messages import Message
from promptline.events.protocols import EventFilter
from promptline.sessions import PermissionSet, SessionManager, ToolRef


async def test_create_returns_the_seed_record_and_get_reads_it_back(
    sessions: SessionManager, clock: ManualClock
) -> None:
    created = await sessions.create(
        ALICE,
        channel="slack",
        context={"topic": "billing", "depth": 2},
        tools=["file_read", {"name": "shell", "version": "1", "config": {"cwd": "/srv"}}],
        permissions={"file_read": "allow", "shell": "ask"},
        metadata={"thread": "T1"},
        ttl=timedelta(hours=2),
    )
    assert created.id.startswith("ses_")
    assert (created.tenant_id, created.user_id, created.channel) == ("acme", "alice", "slack")
    assert created.status == "active"
    assert created.context == {"topic": "billing", "depth": 2}
    assert created.tools == [
        ToolRef(name="file_read"),
        ToolRef(name="shell", version="1", config={"cwd": "/srv"}),
    ]
    assert created.permissions == PermissionSet(rules={"file_read": "allow", "shell": "ask"})
    assert created.metadata == {"thread": "T1"}
    assert created.created_at == clock.now() == created.updated_at
    assert created.expires_at == clock.now() + timedelta(hours=2)
    assert (created.history, created.message_count, created.last_seq) == ([], 0, 1)

    assert await sessions.get(created.id, ALICE) == created


async def test_create_publishes_session_created_on_the_session_stream(stack: Stack) -> None:
    created = await stack.manager.create(ALICE, channel="cli")
    [event] = await stack.store.read_stream(created.id)
    assert isinstance(event, SessionCreatedEvent)
    assert (event.stream, event.seq, event.session_id) == (created.id, 1, created.id)
    assert (event.tenant_id, event.user_id) == ("acme", "alice")
    assert event.data.channel == "cli"


async def test_default_ttl_applies_and_none_means_no_expiry(
    db_url: str, opener: StackOpener, clock: ManualClock
) -> None:
    thirty_days = await opener(db_url).manager.create(ALICE, channel="cli")
    assert thirty_days.expires_at == clock.now() + timedelta(days=30)
    forever = await opener(db_url, default_ttl=None).manager.create(ALICE, channel="cli")
    assert forever.expires_at is None


async def test_create_with_an_id_in_use_is_a_conflict(sessions: SessionManager) -> None:
    await sessions.create(ALICE, channel="cli", session_id="chat-42")
    with pytest.raises(ConflictError, match="already in use") as info:
        await sessions.create(BOB, channel="cli", session_id="chat-42")
    assert info.value.hint
    assert (await sessions.get("chat-42", ALICE)).user_id == "alice"


async def test_history_keeps_append_order_and_roles_pick_the_event_type(stack: Stack) -> None:
    sessions = stack.manager
    session = await sessions.create(ALICE, channel="cli")
    said = [
        Message(role="system", content="be brief"),
        Message(role="user", content="hello"),
        Message(role="assistant", content="hi there"),
        Message(role="user", content="bye"),
    ]
    for message in said:
        assert await sessions.append_message(session.id, message, ALICE) == message
    got = await sessions.get(session.id, ALICE)
    assert got.history == said
    assert (got.message_count, got.last_seq) == (4, 5)
    types = [e.type for e in await stack.store.read_stream(session.id)]
    assert types == [
        "session_created",
        "message_sent",
        "message_received",
        "message_sent",
        "message_received",
    ]


async def test_append_accepts_a_dict_and_records_the_channel(stack: Stack) -> None:
    session = await stack.manager.create(ALICE, channel="cli")
    message = await stack.manager.append_message(
        session.id, {"role": "user", "content": "from slack"}, ALICE, channel="slack"
    )
    assert message.text == "from slack"
    event = (await stack.store.read_stream(session.id))[-1]
    assert event.data.channel == "slack"  # type: ignore[union-attr]


async def test_history_limit_returns_the_latest_messages_in_order(sessions: SessionManager) -> None:
    session = await sessions.create(ALICE, channel="cli")
    for n in range(6):
        await sessions.append_message(session.id, Message(role="user", content=f"m{n}"), ALICE)
    latest = await sessions.get(session.id, ALICE, history_limit=2)
    assert [m.text for m in latest.history] == ["m4", "m5"]
    assert latest.message_count == 6
    assert (await sessions.get(session.id, ALICE, history_limit=0)).history == []


async def test_updated_at_follows_the_clock(sessions: SessionManager, clock: ManualClock) -> None:
    session = await sessions.create(ALICE, channel="cli")
    clock.advance(60)
    await sessions.append_message(session.id, Message(role="user", content="later"), ALICE)
    got = await sessions.get(session.id, ALICE)
    assert got.created_at == session.created_at
    assert got.updated_at == clock.now()


async def test_update_replaces_only_the_given_fields(stack: Stack, clock: ManualClock) -> None:
    sessions = stack.manager
    session = await sessions.create(
        ALICE, channel="cli", context={"a": 1}, metadata={"m": 1}, tools=["x"]
    )
    await sessions.append_message(session.id, Message(role="user", content="keep me"), ALICE)
    clock.advance(5)
    new_expiry = clock.now() + timedelta(days=1)
    updated = await sessions.update(
        session.id, ALICE, context={"b": 2}, permissions={"x": "deny"}, expires_at=new_expiry
    )
    assert updated.context == {"b": 2}
    assert updated.metadata == {"m": 1}
    assert updated.tools == [ToolRef(name="x")]
    assert updated.permissions.rules == {"x": "deny"}
    assert updated.expires_at == new_expiry
    assert updated.updated_at == clock.now()
    full = await sessions.get(session.id, ALICE)
    assert [m.text for m in full.history] == ["keep me"]
    assert (await stack.store.read_stream(session.id))[-1].type == "session_updated"


async def test_update_with_nothing_publishes_nothing(stack: Stack) -> None:
    session = await stack.manager.create(ALICE, channel="cli")
    await stack.manager.update(session.id, ALICE)
    assert await stack.store.last_seq(session.id) == 1


async def test_list_is_newest_first_and_filters_by_channel_and_status(
    sessions: SessionManager, clock: ManualClock
) -> None:
    ids = []
    for channel in ("cli", "slack", "cli"):
        ids.append((await sessions.create(ALICE, channel=channel, ttl=timedelta(hours=1))).id)
        clock.advance(1)
    await sessions.append_message(ids[0], Message(role="user", content="x"), ALICE)
    listed = await sessions.list(ALICE)
    assert [s.id for s in listed] == ids[::-1]
    assert all(s.history == [] for s in listed)
    assert listed[-1].message_count == 1
    assert [s.id for s in await sessions.list(ALICE, channel="cli")] == [ids[2], ids[0]]

    clock.advance(3600)
    await sessions.create(ALICE, channel="cli")
    assert sorted(await sessions.expire_due()) == sorted(ids)
    assert [s.id for s in await sessions.list(ALICE, status="expired")] == ids[::-1]
    assert len(await sessions.list(ALICE, status="active")) == 1


async def test_list_pages_with_before_and_limit(sessions: SessionManager) -> None:
    # Created within one clock instant: the id breaks the tie, so no session is skipped.
    ids = [(await sessions.create(ALICE, channel="cli")).id for _ in range(5)]
    first = await sessions.list(ALICE, limit=2)
    second = await sessions.list(ALICE, limit=2, before=first[-1].id)
    third = await sessions.list(ALICE, limit=2, before=second[-1].id)
    seen = [s.id for page in (first, second, third) for s in page]
    assert seen == sorted(ids, reverse=True)


async def test_admin_lists_the_tenant_and_filters_by_user(sessions: SessionManager) -> None:
    mine = await sessions.create(ALICE, channel="cli")
    theirs = await sessions.create(BOB, channel="cli")
    assert {s.id for s in await sessions.list(ACME_ADMIN)} == {mine.id, theirs.id}
    assert [s.id for s in await sessions.list(ACME_ADMIN, user_id="bob")] == [theirs.id]


async def test_expiry_sweep_marks_due_sessions_and_publishes_session_expired(
    stack: Stack, clock: ManualClock
) -> None:
    sessions = stack.manager
    short = await sessions.create(ALICE, channel="cli", ttl=timedelta(minutes=5))
    long = await sessions.create(ALICE, channel="cli", ttl=timedelta(hours=5))
    await sessions.append_message(short.id, Message(role="user", content="remember"), ALICE)
    clock.advance(299)
    assert await sessions.expire_due() == []
    clock.advance(1)
    assert await sessions.expire_due() == [short.id]
    assert await sessions.expire_due() == []

    expired = await sessions.get(short.id, ALICE)
    assert expired.status == "expired"
    assert [m.text for m in expired.history] == ["remember"]
    assert (await sessions.get(long.id, ALICE)).status == "active"
    last = (await stack.store.read_stream(short.id))[-1]
    assert (last.type, last.user_id, last.tenant_id) == ("session_expired", "alice", "acme")


async def test_an_expired_session_refuses_messages_and_updates(
    sessions: SessionManager, clock: ManualClock
) -> None:
    session = await sessions.create(ALICE, channel="cli", ttl=timedelta(minutes=1))
    clock.advance(60)
    # Due but not yet swept: refused all the same.
    with pytest.raises(ConflictError, match="expired") as info:
        await sessions.append_message(session.id, Message(role="user", content="late"), ALICE)
    assert info.value.details["reason"] == "expired"
    await sessions.expire_due()
    with pytest.raises(ConflictError, match="expired"):
        await sessions.append_message(session.id, Message(role="user", content="late"), ALICE)
    with pytest.raises(ConflictError, match="expired"):
        await sessions.update(session.id, ALICE, metadata={"x": 1})
    assert (await sessions.get(session.id, ALICE)).message_count == 0


async def test_update_can_extend_a_session_before_it_is_due(
    sessions: SessionManager, clock: ManualClock
) -> None:
    session = await sessions.create(ALICE, channel="cli", ttl=timedelta(minutes=1))
    await sessions.update(session.id, ALICE, expires_at=clock.now() + timedelta(hours=1))
    clock.advance(120)
    assert await sessions.expire_due() == []
    await sessions.append_message(session.id, Message(role="user", content="still here"), ALICE)


async def test_a_restarted_process_resumes_sessions_with_their_history(
    db_url: str, opener: StackOpener
) -> None:
    first = opener(db_url)
    session = await first.manager.create(ALICE, channel="cli", context={"step": 3})
    for text in ("one", "two", "three"):
        await first.manager.append_message(session.id, Message(role="user", content=text), ALICE)
    await first.engine.dispose()

    second = opener(db_url)
    assert await second.manager.recover() == []
    resumed = await second.manager.get(session.id, ALICE)
    assert [m.text for m in resumed.history] == ["one", "two", "three"]
    assert resumed.context == {"step": 3}
    await second.manager.append_message(session.id, Message(role="user", content="four"), ALICE)
    assert (await second.manager.get(session.id, ALICE)).message_count == 4


async def test_concurrent_appends_to_one_session_all_land_in_order(
    stack: Stack,
) -> None:
    import asyncio

    sessions = stack.manager
    session = await sessions.create(ALICE, channel="cli")
    texts = [f"m{n}" for n in range(20)]
    await asyncio.gather(
        *(
            sessions.append_message(session.id, Message(role="user", content=t), ALICE)
            for t in texts
        )
    )
    got = await sessions.get(session.id, ALICE)
    assert sorted(m.text for m in got.history) == sorted(texts)
    assert got.message_count == 20
    # The history order is the log's order.
    events = await stack.store.read_stream(session.id)
    logged = [e.data.message.text for e in events if e.type == "message_received"]  # type: ignore[union-attr]
    assert [m.text for m in got.history] == logged
    assert len(sessions._locks) == 0  # per-session locks are dropped once idle


async def test_events_name_the_session_owner_for_filtering(stack: Stack) -> None:
    session = await stack.manager.create(ALICE, channel="cli")
    await stack.manager.append_message(session.id, Message(role="user", content="x"), ACME_ADMIN)
    alice_events = await stack.store.read_all(EventFilter(user_id="alice"))
    assert [e.type for e in alice_events] == ["session_created", "message_received"]
