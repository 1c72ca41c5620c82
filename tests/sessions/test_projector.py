"""The projector: writers of a session's stream other than the manager (the agent runtime)
leave its record to `project_later`; reads stay exact, shutdown drains, a crash is recovered."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sessions_support import ALICE, Stack, StackOpener
from sqlalchemy import select

from promptline.core.clock import ManualClock
from promptline.core.events import (
    Event,
    MessageReceived,
    MessageReceivedEvent,
    MessageSent,
    MessageSentEvent,
)
from promptline.core.messages import Message
from promptline.sessions import SessionManager
from promptline.sessions.checkpoint import read_checkpoint
from promptline.storage.schema import session_messages


def _run_events(sid: str, clock: ManualClock, question: str, answer: str) -> list[Event]:
    """What a run writes to its session's stream: the question and the answer."""
    envelope: dict[str, Any] = {
        "stream": sid,
        "session_id": sid,
        "tenant_id": "acme",
        "user_id": "alice",
        "ts": clock.now(),
    }
    return [
        MessageReceivedEvent(
            **envelope, data=MessageReceived(message=Message(role="user", content=question))
        ),
        MessageSentEvent(
            **envelope, data=MessageSent(message=Message(role="assistant", content=answer))
        ),
    ]


async def _rows(stack: Stack, sid: str) -> list[str]:
    t = session_messages.c
    query = select(t.text).where(t.session_id == sid).order_by(t.idx)
    async with stack.engine.connect() as conn:
        return [row.text for row in (await conn.execute(query)).all()]


async def _checkpoint(stack: Stack) -> int:
    async with stack.engine.connect() as conn:
        return await read_checkpoint(conn)


class Gate:
    """Holds the projector's batches until opened; records each batch's sessions."""

    def __init__(self, manager: SessionManager, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opened = asyncio.Event()
        self.batches: list[set[str]] = []
        original: Callable[[dict[str, int]], Awaitable[None]] = manager._project_batch

        async def gated(floors: dict[str, int]) -> None:
            self.batches.append(set(floors))
            await self.opened.wait()
            await original(floors)

        monkeypatch.setattr(manager, "_project_batch", gated)


async def test_a_runs_messages_are_read_from_the_log_while_the_projector_has_not_run(
    stack: Stack, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(stack.manager, monkeypatch)
    session = await stack.manager.create(ALICE, channel="cli")
    await stack.bus.publish_batch(_run_events(session.id, clock, "hi", "hello"))
    stack.manager.project_later(session.id)

    got = await stack.manager.get(session.id, ALICE)
    latest = await stack.manager.get(session.id, ALICE, history_limit=1)
    head_only = await stack.manager.get(session.id, ALICE, history_limit=0)

    assert [m.text for m in got.history] == ["hi", "hello"]
    assert (got.message_count, got.last_seq) == (2, 3)
    assert [m.text for m in latest.history] == ["hello"]
    assert head_only.message_count == 2  # pending here: folded in from the log too
    assert await _rows(stack, session.id) == []  # the record still lags
    gate.opened.set()
    await stack.manager.drain()
    assert await _rows(stack, session.id) == ["hi", "hello"]


async def test_sessions_pending_at_once_are_projected_in_one_batch(
    stack: Stack, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(stack.manager, monkeypatch)
    ids = [(await stack.manager.create(ALICE, channel="cli")).id for _ in range(3)]
    for n, sid in enumerate(ids):
        await stack.bus.publish_batch(_run_events(sid, clock, f"q{n}", f"a{n}"))
    for sid in [*ids, ids[0]]:  # runs ending at once; twice pending is once projected
        stack.manager.project_later(sid)

    gate.opened.set()
    await stack.manager.drain()

    assert gate.batches == [set(ids)]
    assert [await _rows(stack, sid) for sid in ids] == [[f"q{n}", f"a{n}"] for n in range(3)]


async def test_search_and_list_wait_for_the_sessions_pending_here(
    stack: Stack, clock: ManualClock
) -> None:
    session = await stack.manager.create(ALICE, channel="cli")
    await stack.bus.publish_batch(_run_events(session.id, clock, "where is the invoice", "here"))
    stack.manager.project_later(session.id)

    hits = await stack.manager.search(ALICE, "invoice")
    listed = await stack.manager.list(ALICE)

    assert [hit.session_id for hit in hits] == [session.id]
    assert [s.message_count for s in listed] == [2]


async def test_a_crash_before_the_projector_ran_is_caught_up_by_recover(
    db_url: str, opener: StackOpener, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = opener(db_url)
    Gate(before.manager, monkeypatch)  # never opened: the process dies first
    ran = await before.manager.create(ALICE, channel="cli")
    other = await before.manager.create(ALICE, channel="cli")
    await before.bus.publish_batch(_run_events(ran.id, clock, "hi", "hello"))
    before.manager.project_later(ran.id)
    # A later write of this process stores a checkpoint: not past the pending session's events.
    await before.manager.append_message(other.id, Message(role="user", content="x"), ALICE)
    assert await _checkpoint(before) < await before.store.last_position()
    projector = before.manager._projector
    assert projector is not None
    projector.cancel()
    await asyncio.gather(projector, return_exceptions=True)
    await before.engine.dispose()

    after = opener(db_url)
    assert await _rows(after, ran.id) == []
    assert await after.manager.recover() == [ran.id]
    assert await _rows(after, ran.id) == ["hi", "hello"]


async def test_the_app_drains_the_projector_as_it_stops(tmp_path: Path) -> None:
    import sqlite3

    from promptline.app import build_app
    from promptline.config import load_settings

    settings = load_settings(None, environ={"PROMPTLINE_HOME": str(tmp_path)})
    async with build_app(settings) as app:
        runtime = await app.start_runtime()
        session = await app.sessions.create(ALICE, channel="http")
        result = await runtime.run("hello", session_id=session.id, principal=ALICE)
        assert result.status == "completed"
    database = sqlite3.connect(settings.state.sqlite_path)
    try:
        rows = database.execute(
            "SELECT role FROM session_messages WHERE session_id = ? ORDER BY idx", (session.id,)
        ).fetchall()
    finally:
        database.close()
    assert rows == [("user",), ("assistant",)]
