"""Pick the event store that fits an engine's database."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from promptline.core.errors import ConfigError
from promptline.events.protocols import EventStore


def create_event_store(engine: AsyncEngine, *, owns_engine: bool = False) -> EventStore:
    """The `EventStore` for ``engine``'s dialect (SQLite or PostgreSQL).

    With ``owns_engine`` the store disposes the engine when it is closed.
    """
    # Each store is imported only for its own database (asyncpg is not loaded for SQLite).
    dialect = engine.dialect.name
    if dialect == "sqlite":
        from promptline.events.sqlite import SqliteEventStore

        return SqliteEventStore(engine, owns_engine=owns_engine)
    if dialect == "postgresql":
        from promptline.events.postgres import PostgresEventStore

        return PostgresEventStore(engine, owns_engine=owns_engine)
    raise ConfigError(
        f"no event store for the {dialect!r} database",
        hint="use a sqlite:/// or postgresql:// database URL",
    )
