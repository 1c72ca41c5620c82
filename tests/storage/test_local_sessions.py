"""Sessions through `sqlite3` (`local_sessions`): what they write is what `SessionManager` writes
for the same calls, what they read is what it reads, and whatever they cannot do exactly as it
does (a record behind its log, an unknown, deleted or expired session) they leave to it,
having written nothing."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from promptline.core.clock import ManualClock
from promptline.core.errors import InvalidInputError
from promptline.core.events import MessageReceived, MessageReceivedEvent
from promptline.core.messages import Message
from promptline.events.bus import InProcessEventBus
from promptline.events.factory import create_event_store
from promptline.events.protocols import EventStore
from promptline.sessions import Principal, SessionManager
from promptline.sessions.checkpoint import CHECKPOINT_NAME
from promptline.storage import local_sessions
from promptline.storage.database import create_engine
from promptline.storage.local import LocalDatabase, complete, open_local

TTL = timedelta(days=30)
ALICE = Principal(tenant_id="acme", user_id="alice")
OPERATOR = Principal(tenant_id="default", user_id="operator", admin=True)


@dataclass
class Full:
    """The full path's session machinery over the same file."""

    manager: SessionManager
    store: EventStore


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def db(db_path: Path) -> Iterator[LocalDatabase]:
    opened = open_local(f"sqlite:///{db_path}")
    assert opened is not None
    with opened:
        yield opened


@pytest.fixture
async def full(db_path: Path, clock: ManualClock) -> AsyncIterator[Full]:
    engine = create_engine(f"sqlite:///{db_path}")
    store = create_event_store(engine)
    bus = InProcessEventBus(store)
    yield Full(SessionManager(engine, bus, clock=clock, default_ttl=TTL, store=store), store)
    await bus.close()
    await store.close()
    await engine.dispose()


def _rows(path: Path, sql: str, *params: Any) -> list[dict[str, Any]]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute(sql, params).fetchall()]
    finally:
        conn.close()


def _stored(path: Path, sid: str) -> dict[str, Any]:
    """A session's rows, events included, without what differs between two sessions: ids,
    positions, row ids."""
    [record] = _rows(path, "SELECT * FROM sessions WHERE id = ?", sid)
    record.pop("id")
    messages = _rows(path, "SELECT * FROM session_messages WHERE session_id = ? ORDER BY idx", sid)
    events = _rows(path, "SELECT * FROM events WHERE stream = ? ORDER BY seq", sid)
    for row in messages:
        del row["id"], row["session_id"]
    for row in events:
        body = orjson.loads(row.pop("body"))
        for key in ("id", "stream", "session_id", "position"):
            del body[key]
        row.update(body=body)
        for key in ("id", "stream", "session_id", "position"):
            del row[key]
    return {"record": record, "messages": messages, "events": events}


def _count(path: Path, table: str) -> int:
    return int(_rows(path, f"SELECT count(*) AS n FROM {table}")[0]["n"])


async def test_a_session_written_locally_is_stored_as_the_manager_stores_it(
    db: LocalDatabase, full: Full, db_path: Path, clock: ManualClock
) -> None:
    said = Message(role="user", content="Where is the March invoice?")
    answered = Message(role="assistant", content="It went out on the 2nd.")
    local = local_sessions.create(db, ALICE, channel="cli", ttl=TTL, clock=clock)
    assert local is not None
    assert local_sessions.append_message(db, local.id, said, clock=clock) == said
    assert local_sessions.append_message(db, local.id, answered, clock=clock) == answered
    managed = await full.manager.create(ALICE, channel="cli")
    await full.manager.append_message(managed.id, said, OPERATOR)
    await full.manager.append_message(managed.id, answered, OPERATOR)

    assert _stored(db_path, local.id) == _stored(db_path, managed.id)
    read = local_sessions.read(db, local.id, clock=clock)
    assert read == await full.manager.get(local.id, OPERATOR)
    assert read is not None
    assert [m.text for m in read.history] == [said.text, answered.text]
    assert await full.manager.recover(full=True) == []  # nothing for a rebuild to correct


async def test_a_record_behind_its_log_is_left_to_the_full_path(
    db: LocalDatabase, full: Full, db_path: Path, clock: ManualClock
) -> None:
    session = await full.manager.create(ALICE, channel="cli")
    # As a run does: its message reaches the log first, the record catches up after.
    unprojected = MessageReceivedEvent(
        session_id=session.id,
        tenant_id="acme",
        user_id="alice",
        ts=clock.now(),
        data=MessageReceived(message=Message(role="user", content="late invoice")),
    )
    await full.store.append(unprojected)
    events = _count(db_path, "events")

    assert local_sessions.read(db, session.id, clock=clock) is None
    added = Message(role="user", content="another")
    assert local_sessions.append_message(db, session.id, added, clock=clock) is None
    assert local_sessions.search(db, "invoice", session_id=None, limit=20) is None
    assert _count(db_path, "events") == events

    caught_up = await full.manager.get(session.id, OPERATOR)
    assert [m.text for m in caught_up.history] == ["late invoice"]
    # The full path reads what the record lacks from the log and has its projector write
    # the record off the reader's path; once that has run, the local path reads it too.
    await full.manager.drain()
    assert local_sessions.read(db, session.id, clock=clock) == caught_up


async def test_an_unknown_deleted_or_expired_session_is_left_to_the_full_path(
    db: LocalDatabase, full: Full, db_path: Path, clock: ManualClock
) -> None:
    deleted = await full.manager.create(ALICE, channel="cli")
    await full.manager.delete(deleted.id, ALICE)
    expiring = await full.manager.create(ALICE, channel="cli")
    clock.advance(TTL.total_seconds())
    events = _count(db_path, "events")
    message = Message(role="user", content="hello")

    for sid in ("ses_unknown", deleted.id, expiring.id):
        assert local_sessions.append_message(db, sid, message, clock=clock) is None
    for sid in ("ses_unknown", deleted.id):
        assert local_sessions.read(db, sid, clock=clock) is None
        assert local_sessions.search(db, "hello", session_id=sid, limit=5) is None
    assert _count(db_path, "events") == events
    # Past its time but not swept yet: it reads as expired, as the manager reads it.
    read = local_sessions.read(db, expiring.id, clock=clock)
    assert read is not None
    assert read.status == "expired"
    assert read == await full.manager.get(expiring.id, OPERATOR)


async def test_a_message_written_locally_keeps_the_sessions_sandbox(
    db: LocalDatabase, full: Full, clock: ManualClock
) -> None:
    session = await full.manager.create(ALICE, channel="slack", sandbox="docker")

    added = Message(role="user", content="hello")
    assert local_sessions.append_message(db, session.id, added, clock=clock) == added

    read = local_sessions.read(db, session.id, clock=clock)
    assert read is not None
    assert read.sandbox == "docker"
    assert read == await full.manager.get(session.id, OPERATOR)


async def test_a_local_search_finds_what_the_manager_finds(db: LocalDatabase, full: Full) -> None:
    first = await full.manager.create(ALICE, channel="cli")
    second = await full.manager.create(Principal(tenant_id="globex", user_id="bob"), channel="web")
    for sid, text in (
        (first.id, "the invoice for March"),
        (first.id, "an invoice paid"),
        (second.id, "March rain"),
    ):
        await full.manager.append_message(sid, Message(role="user", content=text), OPERATOR)

    for query, session_id in (("invoice", None), ("march", None), ("march", second.id)):
        found = local_sessions.search(db, query, session_id=session_id, limit=20)
        assert found == await full.manager.search(OPERATOR, query, session_id=session_id, limit=20)
        assert found
    with pytest.raises(InvalidInputError, match="no words"):
        local_sessions.search(db, "?!", session_id=None, limit=20)


async def test_the_checkpoint_moves_on_a_local_write_only_over_nothing_unprojected(
    db: LocalDatabase, full: Full, db_path: Path, clock: ManualClock
) -> None:
    def checkpoint() -> int:
        return int(_rows(db_path, "SELECT position FROM projection_checkpoints")[0]["position"])

    session = local_sessions.create(db, ALICE, channel="cli", ttl=TTL, clock=clock)
    assert session is not None
    assert checkpoint() == complete(db.events.last_position()) == 1

    # Another process's session, published but not projected yet (it died in between).
    other = await full.manager.create(ALICE, channel="cli")
    await full.store.append(
        MessageReceivedEvent(
            session_id=other.id,
            tenant_id="acme",
            user_id="alice",
            ts=clock.now(),
            data=MessageReceived(message=Message(role="user", content="pending")),
        )
    )
    before = checkpoint()
    local_sessions.append_message(db, session.id, Message(role="user", content="mine"), clock=clock)
    assert checkpoint() == before
    assert local_sessions.search(db, "mine", session_id=None, limit=5) is None

    await full.manager.recover()
    assert checkpoint() == complete(db.events.last_position())
    hits = local_sessions.search(db, "pending mine", session_id=None, limit=5)
    assert hits == []
    assert local_sessions.search(db, "mine", session_id=None, limit=5)


def test_the_local_checkpoint_row_is_the_session_projections() -> None:
    assert local_sessions.CHECKPOINT_NAME == CHECKPOINT_NAME
