"""The event log on SQLite: one writer at a time, by ``BEGIN IMMEDIATE`` on a writer thread."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from promptline.events.content import CONTENT_INSERT_SQL
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
    retries among themselves. Reads go through the engine's pool and run beside it (WAL).
    An in-memory database, which another connection would not see, is written through the
    engine instead.
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
        self,
        heads_sql: str,
        streams: Sequence[str],
        number: Callable[[Sequence[Any]], list[Row]],
        parts: list[Row],
    ) -> None:
        if self._path is None:
            await super()._write(heads_sql, streams, number, parts)
            return
        if self._writer is None:
            self._writer = _WriterThread(self._path, await self._pragmas())
        await self._writer.run(
            _append_transaction, heads_sql, streams, number, self._insert_sql, parts
        )

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


def _append_transaction(
    conn: sqlite3.Connection,
    heads_sql: str,
    streams: Sequence[str],
    number: Callable[[Sequence[Any]], list[Row]],
    insert_sql: str,
    parts: list[Row],
) -> None:
    """The append transaction, run on the writer thread."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        heads = conn.execute(heads_sql, tuple(streams)).fetchone()
        conn.executemany(insert_sql, number(heads))
        if parts:
            conn.executemany(CONTENT_INSERT_SQL, parts)
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


class _WriterThread:
    """One thread owning one SQLite connection; `run` hands it a function of that connection."""

    def __init__(self, path: Path, pragmas: dict[str, int]) -> None:
        self._path = path
        self._pragmas = pragmas
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="promptline-events")
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            for name, value in self._pragmas.items():
                conn.execute(f"PRAGMA {name} = {int(value)}")
            self._conn = conn
        return self._conn

    async def run(self, fn: Callable[..., None], *args: Any) -> None:
        def call() -> None:
            fn(self._connection(), *args)

        await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def close(self) -> None:
        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, close)
        except RuntimeError:
            # The interpreter is exiting and has stopped the executor's thread already: the
            # connection is closed here (nothing else uses it any more).
            close()
        self._executor.shutdown(wait=False)


class _DriverSession:
    def __init__(self, driver: Any) -> None:
        self._driver = driver  # an aiosqlite.Connection

    async def heads(self, sql: str, streams: Sequence[str]) -> Sequence[Any]:
        rows = await self._driver.execute_fetchall(sql, streams)
        return tuple(rows[0])

    async def insert(self, sql: str, rows: list[Row]) -> None:
        await self._driver.executemany(sql, rows)
