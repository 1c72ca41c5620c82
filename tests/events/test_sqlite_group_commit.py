"""Group commit in the SQLite event store: appends waiting at once share one transaction, a
refused one fails alone, and nobody hears back before the COMMIT."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from promptline.core.errors import ConflictError, SchemaVersionError
from promptline.core.events import ErrorData, ErrorEvent
from promptline.events.protocols import EventFilter
from promptline.events.sqlite import SqliteEventStore, _Append, _WriterThread


def err(session: str, n: int = 0, *, event_id: str | None = None) -> ErrorEvent:
    extra = {"id": event_id} if event_id else {}
    return ErrorEvent(session_id=session, data=ErrorData(code="test", message=f"{n}"), **extra)


@pytest.fixture
def path(sqlite_url: str) -> Path:
    return Path(sqlite_url.split("///", 1)[1])


@pytest.fixture
async def store(path: Path) -> AsyncIterator[SqliteEventStore]:
    opened = SqliteEventStore.open(path)
    yield opened
    await opened.close()


def stored_ids(path: Path) -> set[str]:
    """The ids in the log as another connection sees them (committed rows only)."""
    conn = sqlite3.connect(path)
    try:
        return {row[0] for row in conn.execute("SELECT id FROM events")}
    finally:
        conn.close()


class HeldWriter:
    """The store's writer thread, held at its next ``BEGIN IMMEDIATE`` by another
    connection's write lock; records the size of each group it commits."""

    def __init__(self, store: SqliteEventStore, path: Path) -> None:
        writer = store._writer
        assert isinstance(writer, _WriterThread)
        self.groups: list[int] = []
        self.entered = threading.Event()
        commit = writer._commit

        def counted(group: list[_Append]) -> None:
            self.groups.append(len(group))
            self.entered.set()
            commit(group)

        writer._commit = counted  # type: ignore[method-assign]
        self.blocker = sqlite3.connect(path, isolation_level=None)
        self.blocker.execute("BEGIN IMMEDIATE")

    async def busy(self) -> None:
        """Wait until the writer has taken a group and waits for the lock."""
        assert await asyncio.to_thread(self.entered.wait, 30)

    def release(self) -> None:
        self.blocker.execute("ROLLBACK")
        self.blocker.close()


async def test_appends_waiting_at_once_commit_together_and_a_refused_one_fails_alone(
    store: SqliteEventStore, path: Path
) -> None:
    await store.append(err("s"))
    taken = err("t")
    await store.append(taken)
    held = HeldWriter(store, path)
    acknowledged: dict[str, set[str]] = {}

    async def append(name: str, batch: list[ErrorEvent], expected: dict[str, int] | None) -> None:
        await store.append_batch(batch, expected_seqs=expected)
        acknowledged[name] = stored_ids(path)  # what is committed when the caller hears

    first_batch = [err("f", 1)]
    first = asyncio.create_task(append("first", first_batch, None))
    await held.busy()  # the first append is the writer's group, waiting for the lock
    good = [err("s", 1)]
    also_good = [err("s", 3), err("u", 1)]
    tasks = [
        asyncio.create_task(append("good", good, {"s": 1})),
        asyncio.create_task(append("stale", [err("s", 2)], {"s": 1})),  # good moved s to 2
        asyncio.create_task(append("taken", [err("t", 1, event_id=taken.id)], None)),
        asyncio.create_task(append("also good", also_good, {"s": 2})),
    ]
    await asyncio.sleep(0)  # each task ran up to its wait: all four are queued
    assert not first.done()
    assert not any(t.done() for t in tasks)
    held.release()

    await first
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert held.groups == [1, 4]  # one transaction for the four waiting
    assert results[0] is None
    assert results[3] is None
    assert isinstance(results[1], ConflictError)
    assert "expected 1" in str(results[1])
    assert isinstance(results[2], ConflictError)
    assert taken.id in str(results[2])
    # Each caller heard back with its events committed.
    assert {e.id for e in first_batch} <= acknowledged["first"]
    assert {e.id for e in good} <= acknowledged["good"]
    assert {e.id for e in also_good} <= acknowledged["also good"]
    s = await store.read_stream("s")
    assert [(e.seq, e.data.message) for e in s] == [(1, "0"), (2, "1"), (3, "3")]  # type: ignore[union-attr]
    assert [e.position for e in await store.read_all()] == [1, 2, 3, 4, 5, 6]
    assert await store.count(EventFilter(stream="t")) == 1


async def test_a_failed_commit_fails_every_append_of_the_group(
    store: SqliteEventStore, path: Path
) -> None:
    """Nobody is told "stored" for a transaction that did not commit."""
    await store.append(err("s"))
    writer = store._writer
    assert isinstance(writer, _WriterThread)
    conn = writer._connection()
    # A trigger that refuses any insert makes the whole transaction fail at its first row.
    await asyncio.to_thread(
        conn.execute,
        "CREATE TEMP TRIGGER refuse BEFORE INSERT ON events"
        " BEGIN SELECT RAISE(ABORT, 'refused'); END",
    )
    results = await asyncio.gather(
        store.append(err("s", 1)), store.append(err("v", 1)), return_exceptions=True
    )
    assert all(isinstance(r, Exception) for r in results)
    assert await store.count() == 1


async def test_open_refuses_a_file_without_this_releases_schema(tmp_path: Path) -> None:
    with pytest.raises(SchemaVersionError, match="db upgrade"):
        SqliteEventStore.open(tmp_path / "missing.db")
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    with pytest.raises(SchemaVersionError):
        SqliteEventStore.open(empty)


async def test_open_has_no_engine(store: SqliteEventStore) -> None:
    with pytest.raises(AttributeError):
        _ = store.engine


async def test_close_writes_what_is_queued_then_ends_the_thread(path: Path) -> None:
    store = SqliteEventStore.open(path)
    await store.append(err("s"))
    writer = store._writer
    assert isinstance(writer, _WriterThread)
    pending = asyncio.create_task(store.append(err("s", 1)))
    await asyncio.sleep(0)  # the append is queued before the close
    await store.close()
    await pending
    await asyncio.to_thread(writer._thread.join, 30)  # it ends right after telling the close
    assert not writer._thread.is_alive()
    await writer.close()  # a second close has nothing to wait for
    reopened = SqliteEventStore.open(path)
    try:
        assert await reopened.last_seq("s") == 2
    finally:
        await reopened.close()
