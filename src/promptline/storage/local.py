"""The SQLite database of a home through the standard library's `sqlite3`, for one-shot commands.

A command such as ``promptline sessions show`` does its work in a few milliseconds; loading
SQLAlchemy, aiosqlite and asyncio to do it would cost several times that. Here the same file
is reached through `sqlite3`, synchronously, with the connection settings of every other
connection to it (`configure_sqlite`) and the event store's own SQL and checks
(`LocalEventStore` is a `SqlEventStore`).

`open_local` answers None wherever this path could not stand in for the full one exactly: a
PostgreSQL database, an in-memory or URI one, a file not created yet, a schema that is not
this release's (the full path migrates it, or says why not), a file that is not a database
(the full path says what is wrong). The caller then builds the full app.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from promptline.core.errors import ConfigError
from promptline.events.content import CONTENT_INSERT_SQL, PromptIndex
from promptline.events.sql import _INSERT_SQL, Row, SqlEventStore
from promptline.storage.database import (
    configure_sqlite,
    normalize_url,
    private_database,
    sqlite_path,
)
from promptline.storage.migrate import HEAD_REVISION

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["LocalDatabase", "LocalEventStore", "complete", "open_local"]

T = TypeVar("T")


def open_local(url: str) -> LocalDatabase | None:
    """The SQLite database at ``url`` through `sqlite3`, or None when only the full path can
    open it as it must be opened (see the module's docstring)."""
    try:
        normalized = normalize_url(url)
    except ConfigError:
        return None  # the full path refuses the URL in its words
    if not normalized.startswith("sqlite") or "?" in normalized:
        return None
    path = sqlite_path(normalized)
    if path is None or not path.is_file():
        return None
    # As the full path does on every open: a file of an older version is narrowed to 0600.
    private_database(path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        configure_sqlite(conn)
        rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.Error:
        conn.close()
        return None
    if rows != [(HEAD_REVISION,)]:
        conn.close()
        return None
    return LocalDatabase(conn)


def complete(call: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never waits, run without an event loop.

    The local store's methods are coroutines (they are the `EventStore` protocol's) whose work
    is all synchronous, so they finish on their first step. Making a loop for them would cost
    importing asyncio, a sizeable part of a local command's time.
    """
    try:
        call.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    call.close()
    raise RuntimeError("a call on the local database waited for something; it must not")


class LocalDatabase:
    """One `sqlite3` connection to a home's database, and the event log on it (`events`)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.events = LocalEventStore(conn)

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every read in the block sees the same moment."""
        with self._transaction("BEGIN DEFERRED"):
            yield self.conn

    @contextlib.contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding the database's write lock from its first statement
        (``BEGIN IMMEDIATE``, as every writer of the file takes it): what the block writes is
        committed together, or not at all when it raises."""
        with self._transaction("BEGIN IMMEDIATE"):
            yield self.conn

    @contextlib.contextmanager
    def _transaction(self, begin: str) -> Iterator[None]:
        self.conn.execute(begin)
        try:
            yield
        except BaseException:
            # A failed ROLLBACK must not hide the error that caused it.
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __enter__(self) -> LocalDatabase:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class LocalEventStore(SqlEventStore):
    """`SqlEventStore` on a `sqlite3` connection: its queries, numbering and checks, run
    synchronously (drive its coroutines with `complete`).

    An append must run inside `LocalDatabase.writing`, whose ``BEGIN IMMEDIATE`` is the
    write lock the numbering needs; what the caller writes in the same block (a session's
    record) commits with the events.
    """

    _storage_errors = (sqlite3.Error, OSError)

    def __init__(self, conn: sqlite3.Connection) -> None:
        # No engine, so not the base class's initialiser: only what its methods read.
        self._conn = conn
        self._owns_engine = False
        self._paramstyle = "qmark"
        self._insert_sql = _INSERT_SQL
        self._content_sql = CONTENT_INSERT_SQL
        self._prompts = PromptIndex()

    @property
    def engine(self) -> AsyncEngine:
        """Not there: this store reads and writes through `sqlite3` alone."""
        raise AttributeError("the local event store has no SQLAlchemy engine")

    def _is_duplicate(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError)

    async def _write(
        self,
        heads_sql: str,
        streams: Sequence[str],
        number: Callable[[Sequence[Any]], list[Row]],
        parts: list[Row],
    ) -> None:
        if not self._conn.in_transaction:
            _outside_transaction()
        heads = self._conn.execute(heads_sql, tuple(streams)).fetchone()
        self._conn.executemany(self._insert_sql, number(heads))
        if parts:
            self._conn.executemany(self._content_sql, parts)

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Row]:
        return [tuple(row) for row in self._conn.execute(sql, tuple(params)).fetchall()]

    async def close(self) -> None:
        """Nothing to close: the connection is the `LocalDatabase`'s."""


def _outside_transaction() -> NoReturn:
    raise RuntimeError("append to the local event store inside LocalDatabase.writing()")
