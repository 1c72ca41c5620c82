"""The event log on SQLite: one writer at a time, by ``BEGIN IMMEDIATE`` on a writer thread
that commits the appends waiting at once together (group commit)."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from promptline.events.sql import AppendSession, Row, SqlEventStore, driver_connection

# Connection settings the writer copies from the engine's own connections, so that it waits
# for locks and syncs exactly as every other connection to the file does.
_INHERITED_PRAGMAS = ("busy_timeout", "synchronous", "wal_autocheckpoint")


class SqliteEventStore(SqlEventStore):
    """`EventStore` on a SQLite file.

    ``BEGIN IMMEDIATE`` takes the database's write lock before the first read, which is what
    makes seq and position assignment safe across processes.

    Appends run on a thread of their own with a connection of their own: the whole
    transaction (lock, heads, numbering, insert, commit) is one hand-off to that thread,
    where through aiosqlite each statement would be one (and SQLAlchemy's pool another).
    The thread also queues this process's appends, so they never meet SQLite's busy
    retries among themselves, and it commits the appends that are waiting when it starts
    a transaction together (group commit): each in a savepoint of its own, so one that
    fails (a stale expected seq, an id already stored) is rolled back alone and only its
    caller gets the error; every caller hears back only after the COMMIT. Reads go
    through the engine's pool and run beside it (WAL). An in-memory database, which
    another connection would not see, is written through the engine instead.
    """

    _storage_errors = (sqlite3.Error, SQLAlchemyError, OSError)

    def __init__(self, engine: AsyncEngine, *, owns_engine: bool = False) -> None:
        super().__init__(engine, owns_engine=owns_engine)
        self._path = _file_of(engine)
        self._lock = asyncio.Lock()  # only for the in-memory path through the engine
        self._writer: _WriterThread | None = None

    def _is_duplicate(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) or super()._is_duplicate(exc)

    async def _write(
        self, heads_sql: str, streams: Sequence[str], number: Callable[[Sequence[Any]], list[Row]]
    ) -> None:
        if self._path is None:
            await super()._write(heads_sql, streams, number)
            return
        if self._writer is None:
            pragmas = await self._pragmas()
            if self._writer is None:  # another append may have started it meanwhile
                self._writer = _WriterThread(self._path, pragmas, self._insert_sql)
        await self._writer.append(heads_sql, streams, number)

    async def _pragmas(self) -> dict[str, int]:
        async with self._engine.connect() as conn:
            driver = await driver_connection(conn)
            settings = {}
            for name in _INHERITED_PRAGMAS:
                rows = await driver.execute_fetchall(f"PRAGMA {name}")
                settings[name] = int(rows[0][0])
            return settings

    @contextlib.asynccontextmanager
    async def _locked_transaction(self) -> AsyncIterator[AppendSession]:
        async with self._lock, self._engine.connect() as conn:
            driver = await driver_connection(conn)
            await driver.execute("BEGIN IMMEDIATE")
            try:
                yield _DriverSession(driver)
            except BaseException:
                # A failed ROLLBACK must not hide the error that caused it; the pool resets
                # (or discards) the connection on return anyway.
                with contextlib.suppress(sqlite3.Error, ValueError):
                    await driver.execute("ROLLBACK")
                raise
            await driver.execute("COMMIT")

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Row]:
        async with self._engine.connect() as conn:
            driver = await driver_connection(conn)
            rows = await driver.execute_fetchall(sql, params)
            return list(rows)

    async def close(self) -> None:
        """Stop the writer thread and close its connection, then as `SqlEventStore.close`."""
        writer, self._writer = self._writer, None
        if writer is not None:
            await writer.close()
        await super().close()


def _file_of(engine: AsyncEngine) -> Path | None:
    """The database file, or None when another connection could not open the same database
    by its path (in memory, or a ``file:`` URI with options)."""
    database = engine.url.database
    if not database or database == ":memory:" or "uri" in engine.url.query:
        return None
    return Path(database)


class _Append:
    """One append waiting for the writer: its streams, how to number it, who to tell."""

    __slots__ = ("error", "future", "heads_sql", "loop", "number", "streams")

    def __init__(
        self,
        heads_sql: str,
        streams: Sequence[str],
        number: Callable[[Sequence[Any]], list[Row]],
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[None],
    ) -> None:
        self.heads_sql = heads_sql
        self.streams = streams
        self.number = number
        self.loop = loop
        self.future = future
        self.error: BaseException | None = None


_STOP = None
"""Put on the writer's queue to end its thread."""


class _WriterThread:
    """One thread owning one SQLite connection, writing the appends queued for it.

    Each transaction takes every append waiting when it begins (group commit): one
    ``BEGIN IMMEDIATE``, one read of the last position, one savepoint and insert per
    append, one ``COMMIT`` (one sync of the WAL). Callers are told after the COMMIT, one
    wake-up of each event loop for all of its callers.
    """

    def __init__(self, path: Path, pragmas: dict[str, int], insert_sql: str) -> None:
        self._path = path
        self._pragmas = pragmas
        self._insert_sql = insert_sql
        self._queue: queue.SimpleQueue[_Append | asyncio.Future[None] | None] = queue.SimpleQueue()
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="promptline-events", daemon=True)
        self._thread.start()

    async def append(
        self, heads_sql: str, streams: Sequence[str], number: Callable[[Sequence[Any]], list[Row]]
    ) -> None:
        """Write one append (numbered by ``number`` from the heads row); returns once it is
        committed, or raises what refused it."""
        if self._closed:
            raise RuntimeError("the event store's writer is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put(_Append(heads_sql, streams, number, loop, future))
        await future

    async def close(self) -> None:
        """Write what is queued, close the connection, end the thread."""
        self._closed = True
        if not self._thread.is_alive():
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.put(_STOP)
        self._queue.put(done)
        # A RuntimeError: the loop is closing (the interpreter is exiting); the thread closes
        # the connection on its own, and is a daemon.
        with contextlib.suppress(RuntimeError):
            await done

    # -- on the writer thread -----------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            for name, value in self._pragmas.items():
                conn.execute(f"PRAGMA {name} = {int(value)}")
            self._conn = conn
        return self._conn

    def _serve(self) -> None:
        get, get_nowait = self._queue.get, self._queue.get_nowait
        stopping = False
        while not stopping:
            first = get()
            if first is _STOP:
                break
            if isinstance(first, asyncio.Future):
                continue  # a close that found the thread stopped already
            group = [first]
            while True:
                try:
                    more = get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stopping = True
                    break
                if isinstance(more, _Append):
                    group.append(more)
            self._commit(group)
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
        while True:  # tell whoever waits on the close
            try:
                waiting = get_nowait()
            except queue.Empty:
                break
            if isinstance(waiting, asyncio.Future):
                _tell(waiting.get_loop(), [(waiting, None)])
            elif isinstance(waiting, _Append):
                waiting.error = RuntimeError("the event store is closed")
                _tell(waiting.loop, [(waiting.future, waiting.error)])

    def _commit(self, group: list[_Append]) -> None:
        """One transaction for ``group``: each append in a savepoint; then tell everyone."""
        try:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._insert_all(conn, group)
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        except Exception as exc:  # the transaction failed: so did every append in it
            for append in group:
                append.error = append.error or exc
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, BaseException | None]]] = {}
        for append in group:
            by_loop.setdefault(append.loop, []).append((append.future, append.error))
        for loop, outcomes in by_loop.items():
            _tell(loop, outcomes)

    def _insert_all(self, conn: sqlite3.Connection, group: list[_Append]) -> None:
        position: int | None = None
        last: dict[str, int] = {}  # each stream's last seq, as committed by this transaction
        alone = len(group) == 1
        for append in group:
            streams = append.streams
            try:
                if not alone:
                    conn.execute("SAVEPOINT append")
                if position is None:
                    heads = conn.execute(append.heads_sql, tuple(streams)).fetchone()
                    position = int(heads[0] or 0)
                    for stream, seq in zip(streams, heads[1:], strict=True):
                        last[stream] = int(seq or 0)
                for stream in streams:
                    if stream not in last:
                        row = conn.execute(_LAST_SEQ_SQL, (stream,)).fetchone()
                        last[stream] = int(row[0] or 0)
                rows = append.number((position, *(last[s] for s in streams)))
                conn.executemany(self._insert_sql, rows)
                if not alone:
                    conn.execute("RELEASE append")
            except Exception as exc:
                if alone:
                    raise
                conn.execute("ROLLBACK TO append")
                conn.execute("RELEASE append")
                append.error = exc
                continue
            # Rows are (position, id, stream, seq, ...): the batch's last ones are the heads.
            for row in rows:
                last[row[2]] = row[3]
            if rows:
                position = rows[-1][0]


_LAST_SEQ_SQL = "SELECT max(seq) FROM events WHERE stream = ?"


def _tell(
    loop: asyncio.AbstractEventLoop, outcomes: list[tuple[Any, BaseException | None]]
) -> None:
    """Settle ``outcomes`` (future, error or None) on ``loop``, in one wake-up of it."""

    def settle() -> None:
        for future, error in outcomes:
            if future.done():
                continue  # its caller was cancelled; the append stands (or failed) anyway
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    with contextlib.suppress(RuntimeError):  # a closed loop: no one is waiting any more
        loop.call_soon_threadsafe(settle)


class _DriverSession:
    def __init__(self, driver: Any) -> None:
        self._driver = driver  # an aiosqlite.Connection

    async def heads(self, sql: str, streams: Sequence[str]) -> Sequence[Any]:
        rows = await self._driver.execute_fetchall(sql, streams)
        return tuple(rows[0])

    async def insert(self, sql: str, rows: list[Row]) -> None:
        await self._driver.executemany(sql, rows)
