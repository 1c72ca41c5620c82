"""Text holding U+0000 (NUL): stored whole and read back identical on SQLite and PostgreSQL
(whose text columns cannot hold NUL), searchable around it, and never a broken session."""

from __future__ import annotations

import pytest
from sessions_support import ALICE, Stack

from promptline.core.errors import NotFoundError
from promptline.core.events import MessageSent, MessageSentEvent
from promptline.core.messages import Message, TextPart, ToolCall
from promptline.sessions import SessionManager

CONTEXT = {"ke\x00y": "val\x00ue", "list": ["\x00", {"\x00": ["a\x00b"]}]}


def _message(role: str, text: str) -> Message:
    return Message(
        role=role,  # type: ignore[arg-type]
        content=[TextPart(text=text)],
        name="na\x00me",
        metadata={"me\x00ta": ["da\x00ta"]},
    )


async def test_a_message_with_nul_is_stored_whole_and_the_session_takes_the_next_one(
    sessions: SessionManager,
) -> None:
    session = await sessions.create(ALICE, channel="cli", context=CONTEXT, metadata=CONTEXT)
    first = _message("user", "hello\x00world")
    call = ToolCall(id="call_1", name="shell", arguments={"c\x00md": "ls\x00-l"})
    answer = Message(role="assistant", content="done\x00", tool_calls=[call])

    await sessions.append_message(session.id, first, ALICE)
    await sessions.append_message(session.id, answer, ALICE)
    await sessions.append_message(session.id, Message(role="user", content="next"), ALICE)

    got = await sessions.get(session.id, ALICE)
    assert got.history == [first, answer, got.history[2]]
    assert [m.text for m in got.history] == ["hello\x00world", "done\x00", "next"]
    assert got.context == CONTEXT
    assert got.metadata == CONTEXT
    assert [s.id for s in await sessions.list(ALICE)] == [session.id]


async def test_an_exported_session_with_nul_imports_back_identical(
    sessions: SessionManager,
) -> None:
    session = await sessions.create(ALICE, channel="cli", context=CONTEXT)
    await sessions.append_message(session.id, _message("user", "a\x00b"), ALICE)
    document = await sessions.export(session.id, ALICE)

    copy = await sessions.import_(document, ALICE, as_new_id=True)

    again = await sessions.export(copy.id, ALICE)
    assert again["history"] == document["history"]
    assert again["session"] | {"id": session.id} == document["session"]


async def test_search_finds_the_words_on_both_sides_of_a_nul(sessions: SessionManager) -> None:
    session = await sessions.create(ALICE, channel="cli")
    await sessions.append_message(
        session.id, Message(role="user", content="invoice\x00march paid"), ALICE
    )

    for word in ("invoice", "march", "paid"):
        hits = await sessions.search(ALICE, word)
        assert [(h.session_id, h.idx) for h in hits] == [(session.id, 0)], word
        assert hits[0].message.text == "invoice\x00march paid"
        assert hits[0].snippet is not None
        assert f"[{word}]" in hits[0].snippet
        assert "\x00" not in hits[0].snippet
    assert [h.idx for h in await sessions.search(ALICE, "invoice march")] == [0]


async def test_messages_with_nul_that_the_runtime_records_are_projected(
    stack: Stack,
) -> None:
    """A model's answer and a tool's output reach the log as events (not through
    `append_message`); projecting them must not break the session."""
    sessions = stack.manager
    session = await sessions.create(ALICE, channel="cli")
    recorded = [
        _message("assistant", "model said \x00"),
        Message(role="tool", content="binary\x00output", tool_call_id="call_1", name="shell"),
    ]
    for message in recorded:
        await stack.bus.publish(
            MessageSentEvent(
                stream=session.id,
                session_id=session.id,
                tenant_id=ALICE.tenant_id,
                user_id=ALICE.user_id,
                data=MessageSent(message=message),
            )
        )

    assert await sessions.refresh(session.id)
    await sessions.append_message(session.id, Message(role="user", content="and now?"), ALICE)

    got = await sessions.get(session.id, ALICE)
    assert got.history[:2] == recorded
    assert got.message_count == 3
    assert [h.idx for h in await sessions.search(ALICE, "output")] == [1]


async def test_a_session_id_holding_nul_is_not_found(sessions: SessionManager) -> None:
    session = await sessions.create(ALICE, channel="cli")
    bad = session.id + "\x00"
    for call in (
        sessions.get(bad, ALICE),
        sessions.append_message(bad, Message(role="user", content="x"), ALICE),
        sessions.search(ALICE, "x", session_id=bad),
        sessions.list(ALICE, before=bad),
    ):
        with pytest.raises(NotFoundError):
            await call
