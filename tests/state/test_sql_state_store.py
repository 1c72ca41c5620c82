"""What only the SQL backend promises: one row per live key, errors mapped to our hierarchy."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from promptline.core.clock import ManualClock
from promptline.core.errors import SchemaVersionError, StorageError
from promptline.state.sql import SqlStateStore
from promptline.storage.database import create_engine
from promptline.storage.schema import state_entries


async def test_rewriting_an_expired_row_reuses_it_and_delete_removes_it(db_url: str) -> None:
    engine = create_engine(db_url)
    clock = ManualClock()
    store = SqlStateStore(engine, clock=clock)
    try:
        await store.set("local", "k", 1, namespace="run", ttl=1)
        clock.advance(2)
        await store.set("local", "k", 2, namespace="run")
        async with engine.connect() as conn:
            count = (await conn.execute(select(func.count()).select_from(state_entries))).scalar()
            row = (await conn.execute(select(state_entries))).one()
        assert count == 1
        assert (row.version, row.expires_at, row.value) == (1, None, "2")
        await store.set("local", "gone", 1, namespace="run", ttl=1)
        clock.advance(2)
        assert await store.delete("local", "gone", namespace="run") is False
        async with engine.connect() as conn:
            keys = (await conn.execute(select(state_entries.c.key))).scalars().all()
        assert keys == ["k"]
    finally:
        await engine.dispose()


async def test_a_damaged_stored_value_is_a_storage_error(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    store = SqlStateStore(engine, clock=ManualClock())
    try:
        await store.set("global", "k", 1)
        async with engine.begin() as conn:
            await conn.execute(update(state_entries).values(value="{oops"))
        with pytest.raises(StorageError, match="not valid JSON"):
            await store.get("global", "k")
    finally:
        await engine.dispose()


async def test_a_database_without_the_schema_asks_for_an_upgrade(tmp_path: Path) -> None:
    store = SqlStateStore(create_engine(str(tmp_path / "empty.db")), owns_engine=True)
    try:
        with pytest.raises(SchemaVersionError) as caught:
            await store.set("global", "k", 1)
        assert "promptline db upgrade" in (caught.value.hint or "")
        with pytest.raises(SchemaVersionError):
            await store.list("global")
    finally:
        await store.close()
