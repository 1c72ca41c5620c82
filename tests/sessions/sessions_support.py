"""Shared pieces of the session tests: principals of two tenants and a stack opener."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from promptline.core.clock import Clock
from promptline.events.bus import InProcessEventBus
from promptline.events.factory import create_event_store
from promptline.events.protocols import EventStore
from promptline.sessions import Principal, SessionLimits, SessionManager
from promptline.sessions.manager import DEFAULT_TTL
from promptline.storage.database import create_engine
from promptline.storage.migrate import upgrade

ALICE = Principal(tenant_id="acme", user_id="alice")
BOB = Principal(tenant_id="acme", user_id="bob")
ACME_ADMIN = Principal(tenant_id="acme", user_id="root", admin=True)
# Same user id as ALICE, other tenant: must never reach acme's sessions.
GLOBEX_ALICE = Principal(tenant_id="globex", user_id="alice")
GLOBEX_ADMIN = Principal(tenant_id="globex", user_id="root", admin=True)


@dataclass
class Stack:
    """One process's worth of session machinery over one database."""

    engine: AsyncEngine
    store: EventStore
    bus: InProcessEventBus
    manager: SessionManager


class StackOpener:
    """Opens stacks on database URLs (as a restarted or second process would); closes them all."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._opened: list[Stack] = []

    def __call__(
        self,
        url: str,
        *,
        limits: SessionLimits | None = None,
        default_ttl: timedelta | None = DEFAULT_TTL,
    ) -> Stack:
        engine = create_engine(url)
        store = create_event_store(engine)
        bus = InProcessEventBus(store)
        manager = SessionManager(
            engine,
            bus,
            clock=self.clock,
            default_ttl=default_ttl,
            limits=limits or SessionLimits(),
        )
        stack = Stack(engine, store, bus, manager)
        self._opened.append(stack)
        return stack

    async def close(self) -> None:
        for stack in self._opened:
            await stack.bus.close()
            await stack.engine.dispose()


async def fresh_sqlite_url(path: Path) -> str:
    """A new, migrated SQLite database at ``path`` (another installation's database)."""
    url = f"sqlite+aiosqlite:///{path}"
    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    return url
