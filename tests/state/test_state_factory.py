"""`create_state_store` builds the backend a configuration names, or says which key is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptline.core.clock import ManualClock
from promptline.core.errors import ConfigError
from promptline.state.factory import create_state_store
from promptline.state.file import FileStateStore
from promptline.state.redis import RedisStateStore
from promptline.state.sql import SqlStateStore
from promptline.storage.database import create_engine, sqlite_path


async def test_file_backend_uses_file_dir(tmp_path: Path) -> None:
    clock = ManualClock()
    store = create_state_store("file", file_dir=tmp_path / "st", clock=clock)
    assert isinstance(store, FileStateStore)
    entry = await store.set("global", "k", 1)
    assert entry.updated_at == clock.now()
    assert (tmp_path / "st" / "global").is_dir()
    await store.close()


async def test_sqlite_backend_opens_and_disposes_its_own_engine(sqlite_url: str) -> None:
    path = sqlite_path(sqlite_url)
    store = create_state_store("SQLite", sqlite_path=path)
    assert isinstance(store, SqlStateStore)
    await store.set("global", "k", "v")
    await store.close()
    again = create_state_store("sqlite", sqlite_path=str(path))
    got = await again.get("global", "k")
    assert got is not None
    assert got.value == "v"
    await again.close()


async def test_an_engine_passed_in_stays_open_after_close(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    store = create_state_store("sqlite", engine=engine)
    await store.set("global", "k", 1)
    await store.close()
    reopened = create_state_store("sqlite", engine=engine)
    assert await reopened.get("global", "k") is not None
    await engine.dispose()


@pytest.mark.postgres
async def test_postgres_backend_accepts_its_aliases(postgres_url: str) -> None:
    for name in ("postgres", "postgresql"):
        store = create_state_store(name, postgres_url=postgres_url)
        assert isinstance(store, SqlStateStore)
        await store.set("global", name, name)
        await store.close()


@pytest.mark.redis
async def test_redis_backend_uses_url_and_prefix(redis_url: str, redis_prefix: str) -> None:
    store = create_state_store("redis", redis_url=redis_url, redis_prefix=redis_prefix)
    assert isinstance(store, RedisStateStore)
    await store.set("global", "k", 1)
    assert [e.key for e in await store.list("global")] == ["k"]
    await store.close()


@pytest.mark.parametrize(
    ("backend", "key"),
    [
        ("file", "state.file_dir"),
        ("sqlite", "state.sqlite_path"),
        ("postgres", "state.postgres_url"),
        ("redis", "state.redis_url"),
    ],
)
def test_a_missing_setting_names_its_config_key(backend: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        create_state_store(backend)
    assert key in caught.value.message
    assert caught.value.details["key"] == key
    assert caught.value.hint


def test_an_unknown_backend_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        create_state_store("mongodb")
    assert "state.backend" in (caught.value.hint or "")
    assert "redis" in (caught.value.hint or "")


async def test_an_engine_of_the_wrong_database_is_refused(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        with pytest.raises(ConfigError, match="sqlite"):
            create_state_store("postgres", engine=engine)
        with pytest.raises(ConfigError):
            create_state_store("postgres", postgres_url=sqlite_url)
    finally:
        await engine.dispose()
