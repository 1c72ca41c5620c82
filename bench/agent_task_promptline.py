"""PromptLine's row of the agent benchmark: the ``add`` task through `Runtime`.

`make_runner` builds a runtime against an OpenAI-compatible server: the built-in HTTP/1.1
transport, the OpenAI chat provider, the tool executor, and an event store that keeps every
event of every run (in memory, or SQLite on a temporary file).

The SQLite file is made as a deployment makes it, by a migration in a process of its own
(``promptline db upgrade``), and opened by the runtime as an up-to-date database is
opened: by `SqliteEventStore.open` where the tree has it (no SQLAlchemy), otherwise through
an engine (older trees). ``store="sqlite-engine"`` always goes through an engine, as the
gateway does (it shares the engine with its state).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

# Imported here, not in the function, so the benchmark's import-time column counts them.
from promptline.events.bus import InProcessEventBus
from promptline.events.protocols import EventStore
from promptline.models.http11 import Http11Transport
from promptline.models.openai_chat import OpenAIChatProvider
from promptline.runtime import Agent, RunServices, Runtime
from promptline.tools import ToolRegistry, tool
from promptline.tools.executor import ToolExecutor

_MIGRATE = """
import asyncio, sys
from promptline.storage.database import create_engine
from promptline.storage.migrate import upgrade

async def main():
    engine = create_engine(sys.argv[1])
    await upgrade(engine)
    await engine.dispose()

asyncio.run(main())
"""
"""Makes the database at ``argv[1]`` with this release's schema (what `promptline db
upgrade` does)."""


def _add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


async def make_runner(
    base_url: str, *, store: str, add: Callable[[int, int], int] = _add
) -> tuple[Callable[[], Awaitable[str]], Callable[[], Awaitable[None]]]:
    """``(run_once, aclose)``: ``run_once`` answers "What is 2+3? Use the add tool".

    ``add`` is the tool's function (the benchmark passes one that counts its calls).
    """
    add_tool = tool(name="add", description="Add two integers.", read_only=True, inline=True)(add)

    tmp = tempfile.TemporaryDirectory()
    events: EventStore
    engine = None
    if store == "memory":
        from promptline.events.memory import InMemoryEventStore

        events = InMemoryEventStore()
    else:
        path = Path(tmp.name) / "bench.db"
        migrate = await asyncio.create_subprocess_exec(sys.executable, "-c", _MIGRATE, str(path))
        if await migrate.wait():
            raise RuntimeError(f"migrating {path} failed")
        from promptline.events import sqlite

        if store == "sqlite" and hasattr(sqlite.SqliteEventStore, "open"):
            events = sqlite.SqliteEventStore.open(path)
        else:
            from promptline.events.factory import create_event_store
            from promptline.storage.database import create_engine
            from promptline.storage.migrate import ensure_schema

            engine = create_engine(str(path))
            await ensure_schema(engine)
            events = create_event_store(engine)
    bus = InProcessEventBus(events, default_max_queue=100_000)
    transport = Http11Transport(max_connections_per_host=200)
    provider = OpenAIChatProvider("openai", base_url=base_url, api_key="bench", transport=transport)
    runtime = Runtime(
        RunServices(
            bus=bus,
            store=events,
            models=provider,
            executor=ToolExecutor(ToolRegistry([add_tool]), bus),
            workspaces_dir=Path(tmp.name),
        ),
        # Not streamed, as every framework's row of the benchmark is (streaming is the default).
        {"bench": Agent(name="bench", model="gpt-4o-mini", tools=("add",), stream=False)},
    )
    agent = runtime.agent("bench")

    async def run_once() -> str:
        result = await runtime.run("What is 2+3? Use the add tool", agent=agent)
        if not result.ok:
            raise RuntimeError(f"run {result.status}: {result.error}")
        return result.text

    async def aclose() -> None:
        await runtime.shutdown()
        await provider.aclose()
        await transport.aclose()
        await bus.close()
        await events.close()
        if engine is not None:
            await engine.dispose()
        tmp.cleanup()

    return run_once, aclose
