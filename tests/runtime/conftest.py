"""Fixtures for the runtime tests: runtimes built by hand, in memory or over a SQLite session
store (a copy of one migrated database, since migrating is slow)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest
from runtime_support import DEFAULT, Harness, HarnessFactory, build_services

from promptline.events.bus import InProcessEventBus
from promptline.events.factory import create_event_store
from promptline.events.memory import InMemoryEventStore
from promptline.models.instrumented import ModelCaller
from promptline.runtime import Agent, Runtime
from promptline.sessions import SessionManager
from promptline.storage.database import create_engine
from promptline.storage.migrate import upgrade
from promptline.tools.base import Tool


@pytest.fixture(scope="session")
def _migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("runtime-template") / "promptline.db"

    async def migrate() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{path}")
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(migrate())
    return path


@pytest.fixture
async def make_runtime(tmp_path: Path) -> AsyncIterator[HarnessFactory]:
    """Builds a runtime over an in-memory event log: ``make_runtime(models, tools, ...)``;
    extra keywords go to `RunServices`."""
    made: list[Harness] = []

    def make(
        models: ModelCaller,
        tools: Iterable[Tool] = (),
        *,
        agents: Iterable[Agent] = (DEFAULT,),
        runtime_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> Harness:
        store = InMemoryEventStore()
        bus = InProcessEventBus(store)
        services = build_services(store, bus, models, tools, tmp_path / "workspaces", **options)
        runtime = Runtime(services, {a.name: a for a in agents}, **(runtime_options or {}))
        harness = Harness(store=store, bus=bus, services=services, runtime=runtime)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        await harness.close()


@pytest.fixture
async def make_session_runtime(
    tmp_path: Path, _migrated_template: Path
) -> AsyncIterator[HarnessFactory]:
    """Like `make_runtime`, with a `SessionManager` on SQLite sharing the runtime's event
    store and bus."""
    made: list[Harness] = []

    def make(
        models: ModelCaller,
        tools: Iterable[Tool] = (),
        *,
        agents: Iterable[Agent] = (DEFAULT,),
        runtime_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> Harness:
        path = tmp_path / f"promptline-{len(made)}.db"
        shutil.copyfile(_migrated_template, path)
        engine = create_engine(f"sqlite+aiosqlite:///{path}")
        store = create_event_store(engine)
        bus = InProcessEventBus(store)
        sessions = SessionManager(engine, bus, store=store)
        services = build_services(store, bus, models, tools, tmp_path / "workspaces", **options)
        runtime = Runtime(
            services, {a.name: a for a in agents}, sessions=sessions, **(runtime_options or {})
        )
        harness = Harness(
            store=store,
            bus=bus,
            services=services,
            runtime=runtime,
            sessions=sessions,
            engine=engine,
        )
        made.append(harness)
        return harness

    yield make
    for harness in made:
        await harness.close()
