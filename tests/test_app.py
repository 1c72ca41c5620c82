"""The object graph built from settings: every service wired to the same log."""

from __future__ import annotations

from pathlib import Path

from promptline.app import build_app
from promptline.config import load_settings
from promptline.core.messages import Message
from promptline.sessions.models import Principal


async def test_services_share_one_log_and_survive_a_restart(tmp_path: Path) -> None:
    settings = load_settings(None, environ={"PROMPTLINE_HOME": str(tmp_path)})
    alice = Principal(user_id="alice")
    async with build_app(settings) as app:
        session = await app.sessions.create(alice, channel="cli")
        await app.sessions.append_message(session.id, Message(role="user", content="hi"), alice)
        await app.state.set("session", "topic", "greetings", namespace=session.id)
        stream = await app.events.read_stream(session.id)
        assert [e.type for e in stream] == ["session_created", "message_received", "state_change"]
        assert [e.seq for e in stream] == [1, 2, 3]

    async with build_app(settings) as app:
        again = await app.sessions.get(session.id, alice)
        assert [m.text for m in again.history] == ["hi"]
        entry = await app.state.get("session", "topic", namespace=session.id)
        assert entry is not None
        assert entry.value == "greetings"
    assert (tmp_path / "state.db").exists()
