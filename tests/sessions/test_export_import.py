"""Export and import: a deterministic document, identical round trips, clean refusals."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sessions_support import ACME_ADMIN, ALICE, Stack, StackOpener, fresh_sqlite_url

from promptline.core.clock import ManualClock
from promptline.core.errors import ConflictError, FormatVersionError, InvalidInputError
from promptline.core.messages import FilePart, ImagePart, Message, TextPart, ToolCall
from promptline.events.replay import replay
from promptline.sessions import SessionLimits, SessionManager, SessionProjection, dump_document


async def _rich_session(sessions: SessionManager, clock: ManualClock) -> str:
    session = await sessions.create(
        ALICE,
        channel="slack",
        context={"plan": ["a", "b"], "nested": {"x": 1.5, "none": None, "ok": True}},
        tools=["file_read", {"name": "shell", "version": "2", "config": {"cwd": "/w"}}],
        permissions={"file_read": "allow", "shell": "ask", "rm": "deny"},
        metadata={"thread": "T-1", "emoji": "🦜"},
        ttl=timedelta(days=3),
    )
    berlin = timezone(timedelta(hours=1))
    messages = [
        Message(role="system", content="You are terse."),
        Message(
            role="user",
            content=[
                TextPart(text="Grüße — what is in this picture?"),
                ImagePart(data="aGVsbG8=", media_type="image/png"),
                FilePart(name="a.txt", url="https://example.com/a.txt"),
            ],
            created_at=datetime(2026, 1, 1, 10, 0, tzinfo=berlin),
        ),
        Message(
            role="assistant",
            content="",
            tool_calls=[ToolCall(id="call_1", name="shell", arguments={"cmd": "ls"})],
        ),
        Message(role="tool", content="a.txt", tool_call_id="call_1", name="shell"),
        Message(role="assistant", content="A file.", metadata={"model": "m1"}),
    ]
    for message in messages:
        clock.advance(1)
        await sessions.append_message(session.id, message, ALICE)
    return session.id


async def test_export_import_export_into_another_database_is_identical(
    stack: Stack, opener: StackOpener, clock: ManualClock, tmp_path: Path
) -> None:
    sid = await _rich_session(stack.manager, clock)
    exported = await stack.manager.export(sid, ALICE)
    assert exported["format"] == "promptline.session"
    assert exported["version"] == 1
    assert len(exported["history"]) == 5

    # Through JSON text, as a file would carry it.
    carried = json.loads(dump_document(exported))
    clock.advance(3600)  # importing later changes nothing in the document
    other = opener(await fresh_sqlite_url(tmp_path / "other.db"))
    imported = await other.manager.import_(carried, ALICE)
    assert imported.id == sid
    assert imported.history == (await stack.manager.get(sid, ALICE)).history

    again = await other.manager.export(sid, ALICE)
    assert again == exported
    assert dump_document(again) == dump_document(exported)


async def test_an_expired_session_round_trips_as_expired(
    stack: Stack, opener: StackOpener, clock: ManualClock, tmp_path: Path
) -> None:
    session = await stack.manager.create(ALICE, channel="cli", ttl=timedelta(minutes=1))
    await stack.manager.append_message(session.id, Message(role="user", content="old"), ALICE)
    clock.advance(61)
    await stack.manager.expire_due()
    exported = await stack.manager.export(session.id, ALICE)
    assert exported["session"]["status"] == "expired"

    other = opener(await fresh_sqlite_url(tmp_path / "other.db"))
    imported = await other.manager.import_(exported, ALICE)
    assert imported.status == "expired"
    assert await other.manager.export(session.id, ALICE) == exported


async def test_export_is_deterministic(sessions: SessionManager, clock: ManualClock) -> None:
    sid = await _rich_session(sessions, clock)
    first = await sessions.export(sid, ALICE)
    clock.advance(86_400)
    assert await sessions.export(sid, ALICE) == first
    assert "exported_at" not in json.dumps(first)


async def test_import_writes_events_so_the_log_alone_rebuilds_the_session(
    stack: Stack, opener: StackOpener, clock: ManualClock, tmp_path: Path
) -> None:
    sid = await _rich_session(stack.manager, clock)
    document = await stack.manager.export(sid, ALICE)
    other = opener(await fresh_sqlite_url(tmp_path / "other.db"))
    imported = await other.manager.import_(document, ALICE)

    types = [e.type for e in await other.store.read_stream(sid)]
    assert types == ["session_created", "message_sent", "message_received"] + ["message_sent"] * 3
    projection = SessionProjection()
    await replay(other.store, projection, stream=sid)
    assert projection.session(sid) == imported


async def test_importing_an_id_in_use_is_a_conflict_that_points_to_as_new_id(
    stack: Stack, clock: ManualClock
) -> None:
    sid = await _rich_session(stack.manager, clock)
    document = await stack.manager.export(sid, ALICE)
    events_before = await stack.store.last_position()
    with pytest.raises(ConflictError, match="already in use") as info:
        await stack.manager.import_(document, ALICE)
    assert info.value.hint is not None
    assert "as_new_id" in info.value.hint
    assert await stack.store.last_position() == events_before

    copy_ = await stack.manager.import_(document, ALICE, as_new_id=True)
    assert copy_.id != sid
    assert copy_.history == (await stack.manager.get(sid, ALICE)).history
    exported_copy = await stack.manager.export(copy_.id, ALICE)
    exported_copy["session"]["id"] = sid
    assert exported_copy == document


def _document() -> dict[str, Any]:
    return {
        "format": "promptline.session",
        "version": 1,
        "session": {
            "id": "ses_imported",
            "user_id": "alice",
            "channel": "cli",
            "status": "active",
            "created_at": "2026-01-01T00:00:00Z",
            "expires_at": None,
            "context": {},
            "tools": [],
            "permissions": {"rules": {}},
            "metadata": {},
        },
        "history": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }


async def test_a_minimal_hand_written_document_imports(sessions: SessionManager) -> None:
    session = await sessions.import_(_document(), ALICE)
    assert session.id == "ses_imported"
    assert session.created_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert [m.text for m in session.history] == ["hi"]


def _with(path: str, value: Any) -> dict[str, Any]:
    document = copy.deepcopy(_document())
    *parents, last = path.split(".")
    target: Any = document
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if value is _DROP:
        del target[last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return document


_DROP = object()


@pytest.mark.parametrize(
    ("document", "hint_word"),
    [
        (_with("format", "other.thing"), "export"),
        (_with("format", _DROP), "export"),
        (_with("version", 2), "release"),
        (_with("version", "1"), "release"),
    ],
    ids=["other-format", "no-format", "newer-version", "version-as-text"],
)
async def test_another_format_or_version_is_a_format_version_error(
    sqlite_stack: Stack, document: dict[str, Any], hint_word: str
) -> None:
    stack = sqlite_stack
    with pytest.raises(FormatVersionError) as info:
        await stack.manager.import_(document, ALICE)
    assert info.value.hint is not None
    assert hint_word in info.value.hint
    assert await stack.store.last_position() == 0
    assert await stack.manager.list(ALICE) == []


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ("not a dict", "(document)"),
        (["a", "list"], "(document)"),
        (_with("history", "nope"), "history"),
        (_with("history.0.role", "robot"), "history.0.role"),
        (_with("session.channel", _DROP), "session.channel"),
        (_with("session.channel", "has spaces"), "session.channel"),
        (_with("session.id", "bad id!"), "session.id"),
        (_with("session.status", "archived"), "session.status"),
        (_with("session.created_at", "2026-01-01T00:00:00"), "session.created_at"),
        (_with("session.user_id", ""), "session.user_id"),
        (_with("session.context", [1, 2]), "session.context"),
        (_with("session.permissions", {"rules": {"x": "maybe"}}), "session.permissions.rules.x"),
        (_with("session.surprise", 1), "session.surprise"),
        (_with("session", _DROP), "session"),
        (_with("extra", True), "extra"),
    ],
)
async def test_a_document_of_the_wrong_shape_names_the_field_and_stores_nothing(
    sqlite_stack: Stack, document: Any, field: str
) -> None:
    stack = sqlite_stack
    with pytest.raises(InvalidInputError) as info:
        await stack.manager.import_(document, ACME_ADMIN)
    assert not isinstance(info.value, FormatVersionError)
    assert info.value.details["field"] == field
    assert info.value.hint
    assert await stack.store.last_position() == 0
    assert await stack.manager.list(ACME_ADMIN) == []


async def test_an_oversized_message_in_a_document_is_refused_before_anything_is_stored(
    db_url: str, opener: StackOpener
) -> None:
    small = opener(db_url, limits=SessionLimits(max_message_bytes=2000))
    document = _document()
    document["history"].append({"role": "assistant", "content": "y" * 5000})
    with pytest.raises(InvalidInputError, match=r"history\.1") as info:
        await small.manager.import_(document, ALICE)
    assert info.value.details["field"] == "history.1"
    assert await small.store.last_position() == 0


async def test_a_history_over_the_import_limit_is_refused(db_url: str, opener: StackOpener) -> None:
    small = opener(db_url, limits=SessionLimits(max_import_messages=1))
    document = _document()
    document["history"].append({"role": "assistant", "content": "two"})
    with pytest.raises(InvalidInputError, match="import limit"):
        await small.manager.import_(document, ALICE)
    assert await small.store.last_position() == 0


async def test_an_id_taken_by_another_manager_mid_import_stores_nothing(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = _document()
    manager = stack.manager
    await manager.import_(document, ALICE)
    before = await stack.store.last_position()

    async def checked_too_early(*_: Any, **__: Any) -> None:
        return None  # as if the id was free when this process looked

    monkeypatch.setattr(manager, "_ensure_unused", checked_too_early)
    document["history"].append({"role": "assistant", "content": "would be duplicated"})
    with pytest.raises(ConflictError, match="already in use") as info:
        await manager.import_(document, ALICE)
    assert info.value.hint is not None
    assert "as_new_id" in info.value.hint
    assert await stack.store.last_position() == before
    assert (await manager.get("ses_imported", ALICE)).message_count == 1
