"""Fixtures for the permission tests: a real event log and bus, grants on files, a manual clock."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from promptline.config import Settings
from promptline.core.clock import ManualClock
from promptline.events.bus import BusSubscription, InProcessEventBus
from promptline.events.factory import create_event_store
from promptline.events.protocols import EventFilter, EventStore
from promptline.security import PermissionManager, build_permissions
from promptline.state.file import FileStateStore
from promptline.state.protocols import StateStore
from promptline.storage.database import create_engine
from promptline.storage.migrate import upgrade


async def _migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "promptline.db"
    asyncio.run(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path, _sqlite_template: Path) -> str:
    """A fresh migrated SQLite database: a copy of one migrated once (migrating is slow)."""
    path = tmp_path / "promptline.db"
    shutil.copyfile(_sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def _memory_store() -> EventStore | None:
    try:
        from promptline.events.memory import InMemoryEventStore
    except ImportError:
        return None
    return InMemoryEventStore()


@pytest.fixture
async def store(request: pytest.FixtureRequest) -> AsyncIterator[EventStore]:
    """The event log: in memory when that store exists, else SQLite in the test's folder."""
    found = _memory_store()
    if found is None:
        url = str(request.getfixturevalue("sqlite_url"))
        found = create_event_store(create_engine(url), owns_engine=True)
    try:
        yield found
    finally:
        await found.close()


@pytest.fixture
async def bus(store: EventStore) -> AsyncIterator[InProcessEventBus]:
    b = InProcessEventBus(store)
    try:
        yield b
    finally:
        await b.close()


@pytest.fixture
async def state(tmp_path: Path, clock: ManualClock) -> AsyncIterator[StateStore]:
    s = FileStateStore(tmp_path / "state", clock=clock)
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def requests(bus: InProcessEventBus) -> BusSubscription:
    """Receives every ``permission_request`` published from now on."""
    return bus.subscribe(EventFilter(types=frozenset({"permission_request"})))


@pytest.fixture
def decisions(bus: InProcessEventBus) -> BusSubscription:
    """Receives every permission decision published from now on."""
    return bus.subscribe(EventFilter(types=frozenset({"permission_granted", "permission_denied"})))


ManagerFactory = Callable[[Settings], PermissionManager]


@pytest.fixture
async def make_manager(
    bus: InProcessEventBus, store: EventStore, state: StateStore, clock: ManualClock
) -> AsyncIterator[ManagerFactory]:
    """Builds `PermissionManager`s the way the app does; closes them afterwards."""
    made: list[PermissionManager] = []

    def make(settings: Settings) -> PermissionManager:
        manager = build_permissions(settings, bus, store, state, clock)
        made.append(manager)
        return manager

    yield make
    for manager in made:
        await manager.close()
