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
from typing import TYPE_CHECKING, Any

from promptline.events.content import CONTENT_INSERT_SQL, PromptIndex
from promptline.events.sql import _INSERT_SQL, AppendSession, Row, SqlEventStore, driver_connection

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

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

    `open` makes one without an engine (nor SQLAlchemy, which is 20 MB of a process that
    needs nothing else of it): its reads go through the writer's connection.
    """

    _storage_errors: tuple[type[BaseException], ...] = (sqlite3.Error, OSError)

    def __init__(self, engine: AsyncEngine, *, owns_engine: bool = False) -> None:
        super().__init__(engine, owns_engine=owns_engine)
        self._path = _file_of(engine)
        self._lock = asyncio.Lock()  # only for the in-memory path through the engine
        self._writer: _WriterThread | None = None
        self._has_engine = True

    @classmethod
    def open(cls, path: str | Path) -> SqliteEventStore:
        """The log in the SQLite file at ``path``, through `sqlite3` alone (no engine).

        The file must hold this release's schema (made by ``promptline db upgrade`` or an
        app that opened it); otherwise `SchemaVersionError` says what to do. `engine`
        raises `AttributeError` on this store.
        """
        from promptline.storage.database import private_database
        from promptline.storage.migrate import HEAD_REVISION

        file = Path(path)
        _check_schema(file, HEAD_REVISION)
        private_database(file)
        store = cls.__new__(cls)
        # No engine, so not the base class's initialiser: only what its methods read.
        store._owns_engine = False
        store._paramstyle = "qmark"
        store._insert_sql = _INSERT_SQL
        store._content_sql = CONTENT_INSERT_SQL
        store._prompts = PromptIndex()
        store._path = file
        store._lock = asyncio.Lock()
        store._writer = None
        store._has_engine = False
        return store

    @property
    def engine(self) -> AsyncEngine:
        """The engine this store reads and writes through (not there on one from `open`)."""
        if not self._has_engine:
            raise AttributeError("this event store was opened without a SQLAlchemy engine")
        return self._engine

    def _is_duplicate(self, exc: BaseException) -> bool:
        if isinstance(exc, sqlite3.IntegrityError):
            return True
        return self._has_engine and super()._is_duplicate(exc)

    async def _write(
        self,
        heads_sql: str,
        streams: Sequence[str],
        number: Callable[[Sequence[Any]], list[Row]],
        parts: list[Row],
    ) -> None:
        if self._path is None:
            await super()._write(heads_sql, streams, number, parts)
            return
        writer = self._writer or await self._start_writer(self._path)
        await writer.append(heads_sql, streams, number, parts)

    async def _start_writer(self, path: Path) -> _WriterThread:
        pragmas = await self._pragmas() if self._has_engine else None
        if self._writer is None:  # another append may have started it meanwhile
            self._writer = _WriterThread(path, pragmas, self._insert_sql)
        return self._writer

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
        if not self._has_engine:
            assert self._path is not None  # `open` always has a file
            writer = self._writer or await self._start_writer(self._path)
            return await writer.read(sql, params)
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


def _check_schema(path: Path, head: str) -> None:
    """`SchemaVersionError` unless the file at ``path`` holds the schema at ``head``."""
    from promptline.core.errors import SchemaVersionError

    current: str | None = None
    if path.is_file():
        conn = sqlite3.connect(path)
        try:
            rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
            current = str(rows[0][0]) if len(rows) == 1 else None
        except sqlite3.Error:
            current = None
        finally:
            conn.close()
    if current != head:
        raise SchemaVersionError(
            f"the database {path} is at schema {current or 'nothing'}, this release needs {head}",
            hint="run `promptline db upgrade` (or open it through an app, which migrates it)",
            current=current,
            head=head,
        )


def _file_of(engine: AsyncEngine) -> Path | None:
    """The database file, or None when another connection could not open the same database
    by its path (in memory, or a ``file:`` URI with options)."""
    database = engine.url.database
    if not database or database == ":memory:" or "uri" in engine.url.query:
        return None
    return Path(database)


class _Append:
    """One append waiting for the writer: its streams, how to number it, who to tell."""

    __slots__ = ("error", "future", "heads_sql", "loop", "number", "parts", "streams")

    def __init__(
        self,
        heads_sql: str,
        streams: Sequence[str],
        number: Callable[[Sequence[Any]], list[Row]],
        parts: list[Row],
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[None],
    ) -> None:
        self.heads_sql = heads_sql
        self.streams = streams
        self.number = number
        self.parts = parts
        """Filled by ``number``: the content rows the batch's commands need."""
        self.loop = loop
        self.future = future
        self.error: BaseException | None = None


class _Read:
    """A query waiting for the writer's connection (a store opened without an engine)."""

    __slots__ = ("future", "loop", "params", "sql")

    def __init__(
        self,
        sql: str,
        params: Sequence[Any],
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[list[Row]],
    ) -> None:
        self.sql = sql
        self.params = params
        self.loop = loop
        self.future = future


class _Close:
    """Put on the writer's queue to end its thread; ``future`` is told once it has."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future


_Job = _Append | _Read | _Close
"""What the writer's queue holds."""


class _WriterThread:
    """One thread owning one SQLite connection, writing the appends queued for it.

    Each transaction takes every append waiting when it begins (group commit): one
    ``BEGIN IMMEDIATE``, one read of the last position, one savepoint and insert per
    append, one ``COMMIT`` (one sync of the WAL). Callers are told after the COMMIT, one
    wake-up of each event loop for all of its callers.
    """

    def __init__(self, path: Path, pragmas: dict[str, int] | None, insert_sql: str) -> None:
        self._path = path
        self._pragmas = pragmas
        self._insert_sql = insert_sql
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="promptline-events", daemon=True)
        self._thread.start()

    async def append(
        self,
        heads_sql: str,
        streams: Sequence[str],
        number: Callable[[Sequence[Any]], list[Row]],
        parts: list[Row],
    ) -> None:
        """Write one append (numbered by ``number`` from the heads row, which fills ``parts``
        with the content rows to insert beside it); returns once it is committed, or raises
        what refused it."""
        if self._closed:
            raise RuntimeError("the event store's writer is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put(_Append(heads_sql, streams, number, parts, loop, future))
        await future

    async def read(self, sql: str, params: Sequence[Any]) -> list[Row]:
        """The rows of a query, run on the writer's connection between its transactions."""
        if self._closed:
            raise RuntimeError("the event store's writer is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Row]] = loop.create_future()
        self._queue.put(_Read(sql, params, loop, future))
        return await future

    async def close(self) -> None:
        """Write what is queued, close the connection, end the thread."""
        if self._closed or not self._thread.is_alive():
            return  # closed already (its first close waits for the thread)
        self._closed = True
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put(_Close(done))  # one item: the thread cannot end between two puts
        # A RuntimeError: the loop is closing (the interpreter is exiting); the thread closes
        # the connection on its own, and is a daemon.
        with contextlib.suppress(RuntimeError):
            await done

    # -- on the writer thread -----------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            if self._pragmas is None:
                from promptline.storage.database import configure_sqlite

                configure_sqlite(conn)
            else:
                for name, value in self._pragmas.items():
                    conn.execute(f"PRAGMA {name} = {int(value)}")
            self._conn = conn
        return self._conn

    def _serve(self) -> None:
        get, get_nowait = self._queue.get, self._queue.get_nowait
        closing: _Close | None = None
        while closing is None:
            items = [get()]
            while True:
                try:
                    items.append(get_nowait())
                except queue.Empty:
                    break
            group: list[_Append] = []
            for item in items:  # in order: a read sees the appends queued before it
                if isinstance(item, _Append):
                    group.append(item)
                    continue
                if group:
                    self._commit(group)
                    group = []
                if isinstance(item, _Read):
                    self._read(item)
                elif closing is None:
                    closing = item  # what was queued before the close is written first
                else:
                    _tell(item.future.get_loop(), [(item.future, None)])
            if group:
                self._commit(group)
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
        _tell(closing.future.get_loop(), [(closing.future, None)])

    def _read(self, read: _Read) -> None:
        try:
            rows = self._connection().execute(read.sql, tuple(read.params)).fetchall()
        except Exception as exc:
            _tell(read.loop, [(read.future, exc)])
            return
        _settle(read.loop, read.future, rows)

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
                if append.parts:
                    conn.executemany(CONTENT_INSERT_SQL, append.parts)
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


def _settle(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], value: Any) -> None:
    """Set ``future``'s result on ``loop`` (unless its caller gave up)."""

    def settle() -> None:
        if not future.done():
            future.set_result(value)

    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(settle)


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
