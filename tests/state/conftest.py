"""Fixtures for the state suites: every `StateStore` backend on real storage, one clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pytest

from promptline.core.clock import ManualClock
from promptline.state.file import FileStateStore
from promptline.state.protocols import StateStore
from promptline.state.redis import RedisStateStore
from promptline.state.sql import SqlStateStore
from promptline.storage.database import create_engine

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

StoreFactory = Callable[[], Awaitable[StateStore]]


class Backend(NamedTuple):
    """Which backend a test runs on and where its storage lives."""

    name: str
    location: str
    redis_prefix: str = ""


BACKENDS = [
    pytest.param("file", id="file"),
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]


@pytest.fixture
def clock() -> ManualClock:
    """The time every store of a test reads; move it with ``advance``."""
    return ManualClock()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """A backend name and where its fresh storage is (directory, database URL, Redis URL)."""
    name = str(request.param)
    if name == "file":
        return Backend(name, str(tmp_path / "state"))
    if name == "sqlite":
        return Backend(name, str(request.getfixturevalue("sqlite_url")))
    if name == "postgres":
        return Backend(name, str(request.getfixturevalue("postgres_url")))
    url = str(request.getfixturevalue("redis_url"))
    return Backend(name, url, str(request.getfixturevalue("redis_prefix")))


@pytest.fixture
async def open_store(backend: Backend, clock: ManualClock) -> AsyncIterator[StoreFactory]:
    """Opens another store on the same storage (another client of it); all closed afterwards."""
    name, location, prefix = backend
    opened: list[StateStore] = []
    engines: list[AsyncEngine] = []

    async def open_one() -> StateStore:
        store: StateStore
        if name == "file":
            store = FileStateStore(location, clock=clock)
        elif name in ("sqlite", "postgres"):
            engine = create_engine(location)
            engines.append(engine)
            store = SqlStateStore(engine, clock=clock)
        else:
            store = RedisStateStore(location, prefix=prefix, clock=clock)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        await store.close()
    for engine in engines:
        await engine.dispose()


@pytest.fixture
async def state_store(open_store: StoreFactory) -> StateStore:
    """Each backend in turn, on fresh storage, with the test's `ManualClock`."""
    return await open_store()
