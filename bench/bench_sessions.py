"""Cost of appending to one session as its history grows (target: flat from message 10 to 10,000).

For windows of appends starting at message 10, 1,000 and 10,000 of one session on SQLite,
prints the median and p90 time per `SessionManager.append_message` and the bytes the database
grows per append (file size with the WAL checkpointed, before and after the window). The
history between windows is filled through the log and `recover`, which projects it with
the same code as live appends, only faster.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from promptline.core.events import MessageReceived, MessageReceivedEvent
from promptline.core.messages import Message
from promptline.events.bus import InProcessEventBus
from promptline.events.factory import create_event_store
from promptline.events.protocols import EventStore
from promptline.sessions import Principal, SessionManager
from promptline.storage.database import create_engine
from promptline.storage.migrate import upgrade

WINDOW = 100
STARTS = (10, 1_000, 10_000)
FILL_BATCH = 1_000
TEXT = (
    "Could you summarise the quarterly report and list the three largest cost items, "
    "with a short note on each? Keep it under a hundred words, please."
)
FLAT_RATIO = 1.5  # the 10,000th-message window may be at most this much slower than the 10th

USER = Principal(tenant_id="bench", user_id="bench")


async def _checkpointed_size(engine: AsyncEngine, path: Path) -> int:
    async with engine.connect() as conn:
        await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        await conn.commit()
    return _file_sizes(path)


def _file_sizes(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


async def _fill(manager: SessionManager, store: EventStore, sid: str, upto: int, have: int) -> int:
    """Add messages through the log (batched) and project them with `recover`."""
    while have < upto:
        count = min(FILL_BATCH, upto - have)
        events = [
            MessageReceivedEvent(
                stream=sid,
                session_id=sid,
                tenant_id=USER.tenant_id,
                user_id=USER.user_id,
                data=MessageReceived(message=Message(role="user", content=f"{TEXT} #{have + i}")),
            )
            for i in range(count)
        ]
        await store.append_batch(events)
        await manager.recover()
        have += count
    return have


async def run() -> list[tuple[int, float, float, float]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        engine = create_engine(f"sqlite+aiosqlite:///{path}")
        await upgrade(engine)
        store = create_event_store(engine)
        bus = InProcessEventBus(store)
        manager = SessionManager(engine, bus, store=store, default_ttl=None)
        session = await manager.create(USER, channel="bench", context={"k": "v" * 2000})
        have = 0
        for start in STARTS:
            have = await _fill(manager, store, session.id, start, have)
            before = await _checkpointed_size(engine, path)
            times = []
            for i in range(WINDOW):
                message = Message(role="user", content=f"{TEXT} #{have + i}")
                t0 = time.perf_counter()
                await manager.append_message(session.id, message, USER)
                times.append((time.perf_counter() - t0) * 1000)
            have += WINDOW
            after = await _checkpointed_size(engine, path)
            p90 = sorted(times)[int(WINDOW * 0.9)]
            rows.append((start, statistics.median(times), p90, (after - before) / WINDOW))
        got = await manager.get(session.id, USER, history_limit=1)
        assert got.message_count == have, (got.message_count, have)
        await bus.close()
        await engine.dispose()
    return rows


def main() -> int:
    rows = asyncio.run(run())
    print(f"appending to one session on SQLite, {WINDOW} appends per window")
    print(f"{'from message':>13}{'median ms':>11}{'p90 ms':>9}{'bytes/append':>14}")
    for start, median, p90, size in rows:
        print(f"{start:>13,}{median:>11.2f}{p90:>9.2f}{size:>14,.0f}")
    first, last = rows[0][1], rows[-1][1]
    flat = last <= first * FLAT_RATIO
    print(f"flat (10,000th window within {FLAT_RATIO}x of the 10th): {'yes' if flat else 'NO'}")
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
