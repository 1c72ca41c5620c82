"""Bad input: clear errors that name the field and say what to do, and nothing stored."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sessions_support import ALICE, Stack, StackOpener

from promptline.core.errors import InvalidInputError, NotFoundError
from promptline.core.messages import ImagePart, Message
from promptline.sessions import SessionLimits, SessionManager


async def test_an_unknown_session_id_is_not_found_everywhere(sessions: SessionManager) -> None:
    message = Message(role="user", content="x")
    for call in (
        sessions.get("ses_missing", ALICE),
        sessions.append_message("ses_missing", message, ALICE),
        sessions.update("ses_missing", ALICE, metadata={}),
        sessions.export("ses_missing", ALICE),
        sessions.list(ALICE, before="ses_missing"),
    ):
        with pytest.raises(NotFoundError, match="ses_missing") as info:
            await call
        assert info.value.hint


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"channel": ""}, "channel"),
        ({"channel": 7}, "channel"),
        ({"channel": "x" * 65}, "channel"),
        ({"context": "text"}, "context"),
        ({"context": {"when": datetime(2026, 1, 1)}}, "context.when"),
        ({"context": {"n": float("nan")}}, "context.n"),
        ({"context": {1: "int key"}}, "context"),
        ({"metadata": {"s": {1, 2}}}, "metadata.s"),
        ({"tools": "file_read"}, "tools"),
        ({"tools": [{"version": "1"}]}, "tools.0.name"),
        ({"tools": [{"name": "x", "config": {"o": object()}}]}, "tools.0.config.o"),
        ({"permissions": {"shell": "sometimes"}}, "permissions.rules.shell"),
        ({"permissions": ["allow"]}, "permissions"),
        ({"ttl": 30}, "ttl"),
        ({"ttl": timedelta(seconds=-1)}, "ttl"),
        ({"session_id": "has space"}, "session_id"),
        ({"session_id": "x" * 65}, "session_id"),
    ],
)
async def test_create_refuses_bad_fields_by_name(
    sqlite_stack: Stack, kwargs: dict[str, Any], field: str
) -> None:
    stack = sqlite_stack
    arguments: dict[str, Any] = {"channel": "cli", **kwargs}
    with pytest.raises(InvalidInputError) as info:
        await stack.manager.create(ALICE, **arguments)
    assert info.value.details["field"] == field
    assert info.value.hint
    assert await stack.store.last_position() == 0


async def test_a_principal_must_be_a_principal(sessions: SessionManager) -> None:
    with pytest.raises(InvalidInputError, match="Principal"):
        await sessions.create({"user_id": "alice"}, channel="cli")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"role": "robot", "content": "x"}, "message.role"),
        ({"content": "no role"}, "message.role"),
        ("just text", "message"),
        ({"role": "user", "content": [{"type": "video"}]}, "message.content.0"),
    ],
)
async def test_append_refuses_a_malformed_message(
    sqlite_stack: Stack, message: Any, field: str
) -> None:
    stack = sqlite_stack
    session = await stack.manager.create(ALICE, channel="cli")
    with pytest.raises(InvalidInputError) as info:
        await stack.manager.append_message(session.id, message, ALICE)
    assert info.value.details["field"] == field
    assert await stack.store.last_seq(session.id) == 1


async def test_a_message_over_the_size_limit_is_refused_and_not_stored(
    db_url: str, opener: StackOpener
) -> None:
    stack = opener(db_url, limits=SessionLimits(max_message_bytes=10_000))
    session = await stack.manager.create(ALICE, channel="cli")
    with pytest.raises(InvalidInputError, match="over the limit of 10,000") as info:
        await stack.manager.append_message(
            session.id, Message(role="user", content="x" * 10_001), ALICE
        )
    assert info.value.details == {
        "field": "message",
        "size": info.value.details["size"],
        "limit": 10_000,
    }
    assert info.value.hint is not None
    assert "SessionLimits" in info.value.hint
    # Images count too: the limit is on the whole message.
    with pytest.raises(InvalidInputError, match="over the limit"):
        await stack.manager.append_message(
            session.id,
            Message(role="user", content=[ImagePart(data="A" * 20_000, media_type="image/png")]),
            ALICE,
        )
    await stack.manager.append_message(session.id, Message(role="user", content="x" * 9000), ALICE)
    assert await stack.store.last_seq(session.id) == 2
    assert (await stack.manager.get(session.id, ALICE)).message_count == 1


async def test_the_default_limit_is_one_mebibyte_of_message(sessions: SessionManager) -> None:
    assert sessions.limits.max_message_bytes == 1024 * 1024
    session = await sessions.create(ALICE, channel="cli")
    with pytest.raises(InvalidInputError, match="over the limit"):
        await sessions.append_message(
            session.id, Message(role="user", content="x" * (1024 * 1024)), ALICE
        )


async def test_a_context_over_the_field_limit_is_refused(db_url: str, opener: StackOpener) -> None:
    stack = opener(db_url, limits=SessionLimits(max_field_bytes=100))
    with pytest.raises(InvalidInputError, match="context is") as info:
        await stack.manager.create(ALICE, channel="cli", context={"big": "y" * 200})
    assert info.value.details["field"] == "context"
    session = await stack.manager.create(ALICE, channel="cli")
    with pytest.raises(InvalidInputError, match="metadata is"):
        await stack.manager.update(session.id, ALICE, metadata={"big": "y" * 200})
    assert await stack.store.last_seq(session.id) == 1


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda s: s.get(42, ALICE), "session_id"),
        (lambda s: s.get("x", ALICE, history_limit=-1), "history_limit"),
        (lambda s: s.list(ALICE, limit=0), "limit"),
        (lambda s: s.list(ALICE, limit=True), "limit"),
        (lambda s: s.list(ALICE, status="gone"), "status"),
        (lambda s: s.list(ALICE, user_id=5), "user_id"),
        (lambda s: s.search(ALICE, "x", limit=10_000), "limit"),
        (lambda s: s.expire_due(limit=0), "limit"),
        (lambda s: s.update("x", ALICE, expires_at=datetime(2030, 1, 1)), "expires_at"),
        (
            lambda s: s.import_({"format": "promptline.session"}, ALICE, as_new_id="yes"),
            "as_new_id",
        ),
    ],
)
async def test_calls_refuse_arguments_of_the_wrong_type_by_name(
    sqlite_stack: Stack, call: Any, field: str
) -> None:
    with pytest.raises(InvalidInputError) as info:
        await call(sqlite_stack.manager)
    assert info.value.hint
    assert info.value.details["field"] == field


def test_limits_must_be_positive() -> None:
    with pytest.raises(InvalidInputError, match="max_message_bytes"):
        SessionLimits(max_message_bytes=0)
