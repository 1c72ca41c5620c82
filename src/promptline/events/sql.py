"""The event log on a relational database: the SQL and the rules that SQLite and PostgreSQL share.

Dialect files add how the global write lock is taken and how the driver is spoken to directly.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from promptline.core.clock import to_micros
from promptline.core.errors import PromptLineError, StorageError
from promptline.core.events import (
    Event,
    decode_event,
    encode_event,
    stamped,
)
from promptline.events.checks import (
    already_stored,
    check_cursor,
    check_expected,
    check_filter,
    check_limit,
    check_name,
    checked_batch,
    checked_event,
    stream_moved,
)
from promptline.events.content import (
    CONTENT_INSERT_SQL,
    PromptIndex,
    content_select_sql,
    tenant_key,
)
from promptline.events.protocols import EventFilter
from promptline.storage.database import translate_error, write_transaction

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

# Column widths of the `events` table, checked up front so that both databases refuse the
# same values (SQLite would store an over-long string, PostgreSQL would not).

_GC_PAUSE_MIN_ROWS = 200

_INSERT_SQL = (
    "INSERT INTO events (position, id, stream, seq, type, ts, tenant_id, user_id, session_id,"
    " run_id, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

Row = tuple[Any, ...]


class AppendSession(Protocol):
    """The database side of one append, inside a transaction that holds the write lock."""

    async def heads(self, sql: str, streams: Sequence[str]) -> Sequence[Any]:
        """Run the heads query: one row of (last position, last seq of each stream)."""
        ...

    async def insert(self, sql: str, rows: list[Row]) -> None:
        """Insert the prepared rows."""
        ...


class SqlEventStore:
    """`EventStore` on a relational database: one row per event, ``seq`` and ``position`` ours.

    Every append runs in one transaction that first takes a global write lock, then reads
    the current maxima and inserts (`_write`, by default through `_locked_transaction`). So
    positions follow commit order and seqs have no gaps, whatever the number of writers or
    processes. Validation, numbering, queries and error mapping live here; the hooks
    (`_write`, `_locked_transaction`, `_fetch`, `_is_duplicate`) are what a dialect changes.

    This base class speaks through SQLAlchemy and takes the lock with ``BEGIN IMMEDIATE``,
    which is enough for SQLite only. Use `create_event_store`: `SqliteEventStore` and
    `PostgresEventStore` talk to their driver directly, which makes an append one hand-off
    to a writer thread (SQLite) or four round trips (PostgreSQL) instead of a dozen. The
    engine is shared: `close` disposes it only when ``owns_engine`` is true.
    """

    _storage_errors: tuple[type[BaseException], ...] = (OSError,)
    """Exceptions that mean the database failed (translated by `translate_error`); with an
    engine, SQLAlchemy's are added."""

    def __init__(self, engine: AsyncEngine, *, owns_engine: bool = False) -> None:
        # Imported here, not with the module: a store without an engine (the CLI's local
        # one) does not load SQLAlchemy, and one with an engine has loaded it already.
        from sqlalchemy.exc import SQLAlchemyError

        self._storage_errors = (*type(self)._storage_errors, SQLAlchemyError)
        self._engine = engine
        self._owns_engine = owns_engine
        self._paramstyle = engine.dialect.paramstyle
        self._insert_sql = self._sql(_INSERT_SQL)
        self._content_sql = self._sql(CONTENT_INSERT_SQL)
        self._prompts = PromptIndex()

    @property
    def engine(self) -> AsyncEngine:
        """The engine this store reads and writes through."""
        return self._engine

    # -- dialect hooks ----------------------------------------------------------------------

    def _locked_transaction(self) -> contextlib.AbstractAsyncContextManager[AppendSession]:
        """A transaction holding the log's global write lock from its first statement.

        Commits when the block ends, rolls back when it raises.
        """
        return _sqlalchemy_transaction(self._engine)

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Row]:
        """Run a read-only query (SQL already in the driver's parameter style)."""
        async with self._engine.connect() as conn:
            result = await conn.exec_driver_sql(sql, tuple(params))
            return [tuple(row) for row in result.all()]

    def _is_duplicate(self, exc: BaseException) -> bool:
        """True when ``exc`` is a unique-constraint violation."""
        from sqlalchemy.exc import IntegrityError

        return isinstance(exc, IntegrityError)

    def _sql(self, sql: str) -> str:
        """Rewrite ``?`` placeholders into the driver's parameter style."""
        return _driver_sql(self._paramstyle, sql)

    # -- writing ----------------------------------------------------------------------------

    async def append(
        self, event: Event | Mapping[str, Any], *, expected_seq: int | None = None
    ) -> Event:
        """Store one event; returns it with ``stream``, ``seq`` and ``position`` filled in.

        ``expected_seq``: fail with `ConflictError` unless the stream's last seq is exactly
        this (0 for a stream that must not exist yet). An event whose ``id`` is already in
        the log is refused with `ConflictError`, so a retried append cannot store twice.
        """
        checked = checked_event(event, 0)
        expected = None if expected_seq is None else {checked.stream_name: expected_seq}
        stored = await self._append([checked], expected)
        return stored[0]

    async def append_batch(
        self,
        events: Sequence[Event | Mapping[str, Any]],
        *,
        expected_seqs: Mapping[str, int] | None = None,
    ) -> list[Event]:
        """Store several events (of one or many streams) in one transaction: all or none.

        ``expected_seqs`` maps a stream to the last seq it must have before the batch.
        """
        checked = checked_batch(events)
        if not checked:
            return []
        return await self._append(checked, dict(expected_seqs) if expected_seqs else None)

    async def _append(self, batch: list[Event], expected: dict[str, int] | None) -> list[Event]:
        if expected:
            check_expected(expected)
        streams = list(dict.fromkeys([*(e.stream_name for e in batch), *(expected or ())]))
        heads_sql = self._sql(
            "SELECT (SELECT max(position) FROM events)"
            + ", (SELECT max(seq) FROM events WHERE stream = ?)" * len(streams)
        )
        stored: list[Event] = []
        staging = self._prompts.begin()  # llm_command events are stored compact

        def number(heads: Sequence[Any]) -> list[Row]:
            stored[:] = staging.apply(_numbered(batch, streams, heads, expected))
            parts[:] = staging.rows
            return [_row(event) for event in stored]

        parts: list[Row] = []
        try:
            await self._write(heads_sql, streams, number, parts)
        except PromptLineError:
            raise
        except Exception as exc:
            if self._is_duplicate(exc):
                raise await self._duplicate_error(exc, batch) from None
            if isinstance(exc, self._storage_errors):
                raise translate_error(exc, what="appending events") from exc
            raise
        staging.commit()
        return stored

    async def _write(
        self,
        heads_sql: str,
        streams: Sequence[str],
        number: Callable[[Sequence[Any]], list[Row]],
        parts: list[Row],
    ) -> None:
        """One append transaction: take the lock, read the heads, number the batch, insert.

        ``heads_sql`` with ``streams`` as parameters yields one row: the last position and
        each stream's last seq. ``number`` turns that row into the rows to insert (it raises
        `ConflictError` when an expected seq does not match; the transaction then rolls back)
        and fills ``parts`` with the content rows its commands need (`events.content`),
        inserted with ``_content_sql`` in the same transaction.
        """
        async with self._locked_transaction() as session:
            heads = await session.heads(heads_sql, streams)
            await session.insert(self._insert_sql, number(heads))
            if parts:
                await session.insert(self._content_sql, parts)

    async def _duplicate_error(self, exc: BaseException, batch: list[Event]) -> PromptLineError:
        """Name the ids that are already stored; any other violation is a storage error."""
        ids = [e.id for e in batch]
        marks = ", ".join("?" for _ in ids)
        try:
            rows = await self._fetch(self._sql(f"SELECT id FROM events WHERE id IN ({marks})"), ids)
        except self._storage_errors:
            rows = []
        if rows:
            return already_stored([str(row[0]) for row in rows])
        return translate_error(exc, what="appending events")

    # -- reading ----------------------------------------------------------------------------

    async def read_stream(
        self, stream: str, *, from_seq: int = 0, limit: int | None = None
    ) -> list[Event]:
        """Events of ``stream`` with seq > ``from_seq``, in seq order (at most ``limit``)."""
        check_name(stream, "stream")
        check_cursor(from_seq, "from_seq")
        check_limit(limit)
        sql = "SELECT body FROM events WHERE stream = ? AND seq > ? ORDER BY seq"
        params: list[Any] = [stream, from_seq]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return await self._read_bodies(sql, params, what=f"reading stream {stream!r}")

    async def read_all(
        self,
        filter: EventFilter | None = None,
        *,
        from_position: int = 0,
        limit: int | None = None,
        descending: bool = False,
    ) -> list[Event]:
        """Events matching ``filter`` with position > ``from_position``, in position order.

        With ``descending`` the newest come first, and a non-zero ``from_position`` means
        position < ``from_position`` (pass the last position seen to page backwards).
        """
        check_cursor(from_position, "from_position")
        check_limit(limit)
        where, params = _where(filter)
        if from_position:
            where.append("position < ?" if descending else "position > ?")
            params.append(from_position)
        sql = "SELECT body FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY position DESC" if descending else " ORDER BY position"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return await self._read_bodies(sql, params, what="reading events")

    async def read_content(self, tenant_id: str | None, hashes: Collection[str]) -> dict[str, str]:
        """The bodies of ``tenant_id``'s content parts with these hashes (the system prompts
        and tool lists compact ``llm_command`` events refer to; see `events.content`)."""
        keys = list(hashes)
        if not keys:
            return {}
        sql = content_select_sql(len(keys))
        rows = await self._query(sql, [tenant_key(tenant_id), *keys], what="reading content")
        return {str(row[0]): str(row[1]) for row in rows}

    async def _read_bodies(self, sql: str, params: list[Any], *, what: str) -> list[Event]:
        rows = await self._query(sql, params, what=what)
        return _decode_rows(rows)

    async def count(self, filter: EventFilter | None = None) -> int:
        """How many stored events match ``filter``."""
        where, params = _where(filter)
        sql = "SELECT count(*) FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = await self._query(sql, params, what="counting events")
        return int(rows[0][0])

    async def last_seq(self, stream: str) -> int:
        """The seq of the newest event of ``stream`` (0 when it has none)."""
        check_name(stream, "stream")
        sql = "SELECT max(seq) FROM events WHERE stream = ?"
        rows = await self._query(sql, [stream], what=f"reading the last seq of {stream!r}")
        return int(rows[0][0] or 0)

    async def last_position(self) -> int:
        """The position of the newest event in the log (0 when it is empty)."""
        rows = await self._query(
            "SELECT max(position) FROM events", [], what="reading the last position"
        )
        return int(rows[0][0] or 0)

    async def _query(self, sql: str, params: list[Any], *, what: str) -> list[Row]:
        try:
            return await self._fetch(self._sql(sql), params)
        except self._storage_errors as exc:
            raise translate_error(exc, what=what) from exc

    async def close(self) -> None:
        """Dispose the engine if this store owns it; a shared engine is left to its owner."""
        if self._owns_engine:
            await self._engine.dispose()


# -- the SQLAlchemy-only transaction of the base class ----------------------------------------


class _ConnectionSession:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def heads(self, sql: str, streams: Sequence[str]) -> Sequence[Any]:
        result = await self._conn.exec_driver_sql(sql, tuple(streams))
        return tuple(result.one())

    async def insert(self, sql: str, rows: list[Row]) -> None:
        await self._conn.exec_driver_sql(sql, rows)


@contextlib.asynccontextmanager
async def _sqlalchemy_transaction(engine: AsyncEngine) -> AsyncIterator[AppendSession]:
    async with write_transaction(engine) as conn:
        yield _ConnectionSession(conn)


# -- helpers ----------------------------------------------------------------------------------


async def driver_connection(conn: AsyncConnection) -> Any:
    """The driver's own connection (aiosqlite, asyncpg) behind a SQLAlchemy connection."""
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    if driver is None:  # only after the pool has invalidated it, which a checkout never returns
        raise StorageError("the database connection was closed", hint="retry the operation")
    return driver


def _driver_sql(paramstyle: str, sql: str) -> str:
    """SQL here is written with ``?``; rewrite it for the driver's parameter style."""
    if paramstyle == "qmark":
        return sql
    parts = sql.split("?")
    out = [parts[0]]
    for number, part in enumerate(parts[1:], start=1):
        if paramstyle == "numeric_dollar":
            out.append(f"${number}")
        elif paramstyle == "numeric":
            out.append(f":{number}")
        else:
            out.append("%s")
        out.append(part)
    return "".join(out)


def _numbered(
    batch: list[Event],
    streams: Sequence[str],
    heads: Sequence[Any],
    expected: Mapping[str, int] | None,
) -> list[Event]:
    """The batch with ``stream``, ``seq`` and ``position`` assigned after ``heads``."""
    position = int(heads[0] or 0)
    last = {s: int(v or 0) for s, v in zip(streams, heads[1:], strict=True)}
    for stream, want in (expected or {}).items():
        if last[stream] != want:
            raise stream_moved(stream, want, last[stream])
    numbered: list[Event] = []
    for event in batch:
        stream = event.stream_name
        last[stream] += 1
        position += 1
        numbered.append(stamped(event, stream, last[stream], position))
    return numbered


def _decode_rows(rows: list[Row]) -> list[Event]:
    """Decode stored bodies; the cyclic GC is paused for long reads.

    Each decoded event is a handful of new container objects, so a long read sets off the
    collector again and again, and each older-generation pass walks every event decoded so
    far: that made reading 10,000 events two to three times slower. Nothing made here is
    cyclic garbage, and no other code runs in between (the loop never awaits).
    """
    if len(rows) < _GC_PAUSE_MIN_ROWS or not gc.isenabled():
        return [decode_event(row[0], lenient=True) for row in rows]
    gc.disable()
    try:
        return [decode_event(row[0], lenient=True) for row in rows]
    finally:
        gc.enable()


def _row(event: Event) -> Row:
    return (
        event.position,
        event.id,
        event.stream,
        event.seq,
        event.type,
        to_micros(event.ts),
        event.tenant_id,
        event.user_id,
        event.session_id,
        event.run_id,
        # Fields left empty are not written (as in the in-memory store): they decode back to
        # the same defaults, and the nulls were a sixth of a stored event.
        encode_event(event, drop_none=True).decode(),
    )


def _holds_nul(value: Any) -> bool:
    return isinstance(value, str) and "\x00" in value


def _where(filter: EventFilter | None) -> tuple[list[str], list[Any]]:
    """WHERE clauses and their parameters for ``filter``; each one uses an indexed column."""
    check_filter(filter)
    if filter is None:
        return [], []
    where: list[str] = []
    params: list[Any] = []
    # No stored name holds NUL (appends refuse it) and PostgreSQL refuses it even in a
    # query, so a filter naming one matches nothing, as it does on SQLite and in memory.
    if filter.types is not None:
        types = sorted(t for t in filter.types if not _holds_nul(t))
        if not types:
            where.append("1 = 0")
        else:
            where.append(f"type IN ({', '.join('?' for _ in types)})")
            params.extend(types)
    for column in ("stream", "session_id", "run_id", "user_id", "tenant_id"):
        value = getattr(filter, column)
        if value is None:
            continue
        if _holds_nul(value):
            where.append("1 = 0")
        else:
            where.append(f"{column} = ?")
            params.append(value)
    if filter.since is not None:
        where.append("ts >= ?")
        params.append(to_micros(filter.since))
    if filter.until is not None:
        where.append("ts < ?")
        params.append(to_micros(filter.until))
    return where, params
