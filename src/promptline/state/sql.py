"""State in the ``state_entries`` table, on SQLite or PostgreSQL, through one async engine.

Every write is a single conditional statement (an upsert or ``UPDATE … WHERE version = :v``)
whose returned row says whether it happened, so compare-and-set needs no read-then-write
window. On SQLite each write runs under ``BEGIN IMMEDIATE``, which also orders writers of
other processes sharing the file; writers of one store also queue on an asyncio lock.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, case, func, literal, not_, or_, select, update
from sqlalchemy import delete as sql_delete
from sqlalchemy.exc import SQLAlchemyError

from promptline.core.clock import Clock, SystemClock, to_micros
from promptline.state.codec import decode_value, encode_value, expiry_micros, is_live, make_entry
from promptline.state.protocols import Scope, StateEntry
from promptline.state.rules import (
    check_address,
    check_listing,
    check_namespace,
    check_write,
    version_conflict,
)
from promptline.storage.database import translate_error, write_transaction
from promptline.storage.schema import state_entries as table

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
    from sqlalchemy.sql.elements import ColumnElement

# A write that loses its condition re-checks the row; if a racing writer has just put it
# back to the expected version, the write is tried again rather than reported as a conflict.
_ATTEMPTS = 3


class SqlStateStore:
    """`StateStore` on the relational schema (SQLite or PostgreSQL)."""

    def __init__(
        self, engine: AsyncEngine, *, clock: Clock = SystemClock(), owns_engine: bool = False
    ) -> None:
        """``owns_engine``: dispose of ``engine`` on `close` (when nothing else uses it)."""
        self._engine = engine
        self._clock = clock
        self._owns_engine = owns_engine
        self._dialect = engine.dialect.name
        # SQLite has one writer at a time anyway: writers of this process queue here, in
        # order, instead of in SQLite's busy handler, which is unfair and can time out.
        self._write_lock = asyncio.Lock() if self._dialect == "sqlite" else None

    async def get(self, scope: Scope, key: str, *, namespace: str = "") -> StateEntry | None:
        """The live entry, or None (also when it has expired)."""
        check_address(scope, namespace, key)
        now = to_micros(self._clock.now())
        stmt = select(table.c.value, table.c.version, table.c.updated_at, table.c.expires_at)
        stmt = stmt.where(self._row(scope, namespace, key))
        try:
            async with self._engine.connect() as conn:
                row = (await conn.execute(stmt)).first()
        except (SQLAlchemyError, OSError) as exc:
            raise translate_error(exc, what="reading state") from exc
        if row is None or not is_live(row.expires_at, now):
            return None
        value = decode_value(row.value, key=key)
        return make_entry(scope, namespace, key, value, row.version, row.updated_at, row.expires_at)

    async def set(
        self,
        scope: Scope,
        key: str,
        value: Any,
        *,
        namespace: str = "",
        ttl: float | None = None,
        expected_version: int | None = None,
    ) -> StateEntry:
        """Write ``value``; a compare-and-set when ``expected_version`` is given."""
        check_address(scope, namespace, key)
        check_write(scope, ttl, expected_version)
        data = encode_value(key, value)
        text = data.decode("utf-8")
        now = to_micros(self._clock.now())
        expires_at = expiry_micros(now, ttl)
        try:
            async with self._writing() as conn:
                version = await self._write(
                    conn, scope, namespace, key, text, now, expires_at, expected_version
                )
        except (SQLAlchemyError, OSError) as exc:
            raise translate_error(exc, what="writing state") from exc
        return make_entry(
            scope, namespace, key, decode_value(data, key=key), version, now, expires_at
        )

    async def delete(
        self, scope: Scope, key: str, *, namespace: str = "", expected_version: int | None = None
    ) -> bool:
        """Remove the key; True if it was live. ``expected_version`` as in `set`."""
        check_address(scope, namespace, key)
        check_write(scope, None, expected_version)
        now = to_micros(self._clock.now())
        try:
            async with self._writing() as conn:
                current, exists = await self._locked_version(conn, scope, namespace, key, now)
                if expected_version is not None and expected_version != current:
                    raise version_conflict(
                        scope, namespace, key, expected=expected_version, actual=current
                    )
                if exists:
                    # Also removes an expired row, which is garbage by now.
                    await conn.execute(sql_delete(table).where(self._row(scope, namespace, key)))
        except (SQLAlchemyError, OSError) as exc:
            raise translate_error(exc, what="deleting state") from exc
        return current > 0

    async def list(
        self, scope: Scope, *, namespace: str = "", prefix: str = "", limit: int | None = None
    ) -> builtins.list[StateEntry]:
        """Live entries whose key starts with ``prefix``, sorted by key, at most ``limit``."""
        check_namespace(scope, namespace)
        check_listing(prefix, limit)
        if limit == 0:
            return []
        now = to_micros(self._clock.now())
        key_column: ColumnElement[str] = table.c.key
        if self._dialect == "postgresql":
            # Byte (code point) order whatever the database's collation; SQLite's is already.
            key_column = key_column.collate("C")
        stmt = select(
            table.c.key, table.c.value, table.c.version, table.c.updated_at, table.c.expires_at
        ).where(
            table.c.scope == scope,
            table.c.namespace == namespace,
            _live(now),
        )
        if prefix:
            # substr, not LIKE: LIKE is case-insensitive on SQLite and needs escaping.
            stmt = stmt.where(func.substr(table.c.key, 1, len(prefix)) == prefix)
        stmt = stmt.order_by(key_column)
        if limit is not None:
            stmt = stmt.limit(limit)
        try:
            async with self._engine.connect() as conn:
                rows = (await conn.execute(stmt)).all()
        except (SQLAlchemyError, OSError) as exc:
            raise translate_error(exc, what="listing state") from exc
        return [
            make_entry(
                scope,
                namespace,
                row.key,
                decode_value(row.value, key=row.key),
                row.version,
                row.updated_at,
                row.expires_at,
            )
            for row in rows
        ]

    async def close(self) -> None:
        """Dispose of the engine if this store owns it."""
        if self._owns_engine:
            await self._engine.dispose()

    # -- statements ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncConnection]:
        if self._write_lock is None:
            async with write_transaction(self._engine) as conn:
                yield conn
            return
        async with self._write_lock, write_transaction(self._engine) as conn:
            yield conn

    @staticmethod
    def _row(scope: Scope, namespace: str, key: str) -> ColumnElement[bool]:
        return and_(table.c.scope == scope, table.c.namespace == namespace, table.c.key == key)

    async def _write(
        self,
        conn: AsyncConnection,
        scope: Scope,
        namespace: str,
        key: str,
        text: str,
        now: int,
        expires_at: int | None,
        expected_version: int | None,
    ) -> int:
        """Run the conditional write; the new version, or `ConflictError`."""
        stmt = self._write_statement(scope, namespace, key, text, now, expires_at, expected_version)
        if expected_version is None:
            # An unconditional upsert always writes.
            return int((await conn.execute(stmt)).scalar_one())
        current = expected_version
        for _ in range(_ATTEMPTS):
            version = (await conn.execute(stmt)).scalar_one_or_none()
            if version is not None:
                return int(version)
            current, _ = await self._locked_version(conn, scope, namespace, key, now)
            if current != expected_version:
                break
        raise version_conflict(scope, namespace, key, expected=expected_version, actual=current)

    def _write_statement(
        self,
        scope: Scope,
        namespace: str,
        key: str,
        text: str,
        now: int,
        expires_at: int | None,
        expected_version: int | None,
    ) -> Any:
        fields = {"value": text, "updated_at": now, "expires_at": expires_at}
        if expected_version:
            return (
                update(table)
                .where(
                    self._row(scope, namespace, key),
                    table.c.version == expected_version,
                    _live(now),
                )
                .values(version=expected_version + 1, **fields)
                .returning(table.c.version)
            )
        insert = self._insert()(table).values(
            scope=scope, namespace=namespace, key=key, version=1, **fields
        )
        refreshed = {
            "value": insert.excluded.value,
            "updated_at": insert.excluded.updated_at,
            "expires_at": insert.excluded.expires_at,
        }
        if expected_version == 0:
            # "Must not exist": only an expired row may be overwritten, starting over at 1.
            upsert = insert.on_conflict_do_update(
                index_elements=[table.c.scope, table.c.namespace, table.c.key],
                set_={**refreshed, "version": literal(1)},
                where=not_(_live(now)),
            )
        else:
            upsert = insert.on_conflict_do_update(
                index_elements=[table.c.scope, table.c.namespace, table.c.key],
                set_={
                    **refreshed,
                    "version": case((_live(now), table.c.version + 1), else_=literal(1)),
                },
            )
        return upsert.returning(table.c.version)

    def _insert(self) -> Any:
        if self._dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert

    async def _locked_version(
        self, conn: AsyncConnection, scope: Scope, namespace: str, key: str, now: int
    ) -> tuple[int, bool]:
        """The live version (0 if absent or expired) and whether a row exists, row locked."""
        stmt = (
            select(table.c.version, table.c.expires_at)
            .where(self._row(scope, namespace, key))
            .with_for_update()  # PostgreSQL row lock; SQLite already holds the database lock
        )
        row = (await conn.execute(stmt)).first()
        if row is None:
            return 0, False
        return (int(row.version) if is_live(row.expires_at, now) else 0), True


def _live(now: int) -> ColumnElement[bool]:
    return or_(table.c.expires_at.is_(None), table.c.expires_at > now)
