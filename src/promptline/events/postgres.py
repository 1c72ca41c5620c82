"""The event log on PostgreSQL: appends serialize on one transaction-scoped advisory lock."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
from sqlalchemy.exc import SQLAlchemyError

from promptline.events.sql import AppendSession, Row, SqlEventStore, driver_connection

APPEND_LOCK_KEY = 0x504C4556  # "PLEV": any constant, the same in every PromptLine process
"""The advisory lock every append holds until it commits."""


class PostgresEventStore(SqlEventStore):
    """`EventStore` on PostgreSQL.

    Each append transaction starts with ``pg_advisory_xact_lock``: appends from every
    connection and process run one after another, so ``max()+1`` is safe and positions are
    handed out in commit order (a reader never sees position N+1 before N). COMMIT or
    ROLLBACK releases the lock, and so does a dropped connection. Statements go straight to
    the asyncpg connection (prepared and cached by it).
    """

    _storage_errors = (asyncpg.PostgresError, asyncpg.InterfaceError, SQLAlchemyError, OSError)

    def _is_duplicate(self, exc: BaseException) -> bool:
        return isinstance(exc, asyncpg.UniqueViolationError) or super()._is_duplicate(exc)

    @contextlib.asynccontextmanager
    async def _locked_transaction(self) -> AsyncIterator[AppendSession]:
        async with self._engine.connect() as conn:
            driver = await driver_connection(conn)
            async with driver.transaction():
                # A statement of its own: READ COMMITTED takes a snapshot per statement, so
                # the maxima read next already see every append that held the lock before us.
                # (Sending BEGIN and the lock as one multi-statement query measured slower.)
                await driver.execute(f"SELECT pg_advisory_xact_lock({APPEND_LOCK_KEY})")
                yield _DriverSession(driver)

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Row]:
        async with self._engine.connect() as conn:
            driver = await driver_connection(conn)
            return list(await driver.fetch(sql, *params))


class _DriverSession:
    def __init__(self, driver: Any) -> None:
        self._driver = driver  # an asyncpg.Connection

    async def heads(self, sql: str, streams: Sequence[str]) -> Sequence[Any]:
        row = await self._driver.fetchrow(sql, *streams)
        return tuple(row)

    async def insert(self, sql: str, rows: list[Row]) -> None:
        await self._driver.executemany(sql, rows)
