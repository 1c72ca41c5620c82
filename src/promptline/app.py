"""The one place that builds PromptLine's object graph from `Settings`.

Everything else receives its collaborators as arguments; nothing is a module-level singleton.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from promptline.core.clock import Clock, SystemClock

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from promptline.config.settings import Settings
    from promptline.events.protocols import EventBus, EventStore
    from promptline.models.instrumented import InstrumentedModel
    from promptline.models.registry import ProviderRegistry
    from promptline.sessions.manager import SessionManager
    from promptline.state.protocols import StateStore


@dataclass
class App:
    """The services of one PromptLine process."""

    settings: Settings
    engine: AsyncEngine
    events: EventStore
    bus: EventBus
    state: StateStore
    sessions: SessionManager
    registry: ProviderRegistry
    clock: Clock
    _llm: InstrumentedModel | None = field(default=None, repr=False)

    @property
    def llm(self) -> InstrumentedModel:
        """Model calls through the router (rules, failover, balancing), each recorded in the
        event log as llm_command / llm_delta / llm_result. Built on first use, so commands
        that never call a model do not depend on the models configuration."""
        if self._llm is None:
            from promptline.models.instrumented import InstrumentedModel
            from promptline.models.routing_setup import build_router

            router = build_router(self.settings, self.registry, clock=self.clock)
            self._llm = InstrumentedModel(router, self.bus)
        return self._llm


async def open_engine(settings: Settings, *, migrate: bool | None = None) -> AsyncEngine:
    """Open the event-log/session database, bringing its schema up to date if allowed."""
    from promptline.storage.database import create_engine
    from promptline.storage.migrate import ensure_schema

    engine = create_engine(settings.database_url())
    try:
        auto = settings.state.auto_migrate if migrate is None else migrate
        await ensure_schema(engine, auto_upgrade=auto)
    except BaseException:
        await engine.dispose()
        raise
    return engine


@contextlib.asynccontextmanager
async def build_app(
    settings: Settings, *, clock: Clock | None = None, migrate: bool | None = None
) -> AsyncIterator[App]:
    """Build every service from ``settings``; closes them all on exit."""
    from promptline.events.bus import InProcessEventBus
    from promptline.events.factory import create_event_store
    from promptline.models.registry import ProviderRegistry
    from promptline.sessions.manager import SessionManager
    from promptline.state.evented import EventedStateStore
    from promptline.state.factory import create_state_store

    clock = clock or SystemClock()
    engine = await open_engine(settings, migrate=migrate)
    store = create_event_store(engine)
    bus = InProcessEventBus(store, default_max_queue=settings.events.subscriber_queue)
    state_backend = settings.state.backend
    inner = create_state_store(
        state_backend,
        engine=engine,
        redis_url=settings.require("state.redis_url") if state_backend == "redis" else None,
        file_dir=settings.state.file_dir,
        clock=clock,
    )
    state = EventedStateStore(inner, bus)
    sessions = SessionManager(
        engine,
        bus,
        clock=clock,
        default_ttl=timedelta(seconds=settings.sessions.ttl_secs),
        store=store,
    )
    registry = ProviderRegistry(settings)
    try:
        await sessions.recover()
        yield App(settings, engine, store, bus, state, sessions, registry, clock)
    finally:
        await registry.aclose()
        await bus.close()
        await state.close()
        await store.close()
        await engine.dispose()
