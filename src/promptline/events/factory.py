"""Pick the event store that fits an engine's database."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from promptline.core.errors import ConfigError
from promptline.events.postgres import PostgresEventStore
from promptline.events.protocols import EventStore
from promptline.events.sql import SqlEventStore
from promptline.events.sqlite import SqliteEventStore


def create_event_store(engine: AsyncEngine, *, owns_engine: bool = False) -> EventStore:
    """The `EventStore` for ``engine``'s dialect (SQLite or PostgreSQL).

    With ``owns_engine`` the store disposes the engine when it is closed.
    """
    kinds: dict[str, type[SqlEventStore]] = {
        "sqlite": SqliteEventStore,
        "postgresql": PostgresEventStore,
    }
    kind = kinds.get(engine.dialect.name)
    if kind is None:
        raise ConfigError(
            f"no event store for the {engine.dialect.name!r} database",
            hint="use a sqlite:/// or postgresql:// database URL",
        )
    return kind(engine, owns_engine=owns_engine)
