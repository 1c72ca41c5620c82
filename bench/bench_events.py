"""Event log and bus throughput: appends, stream reads, and fan-out to many subscribers.

Prints one table of medians over several rounds, each row with its target and whether it is
met. PostgreSQL rows use PROMPTLINE_TEST_POSTGRES_URL (a scratch database is created on that
server and dropped afterwards); without it they are skipped with a note.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from promptline.core.events import ErrorData, ErrorEvent, Event
from promptline.events.bus import InProcessEventBus
from promptline.events.factory import create_event_store
from promptline.events.protocols import EventStore
from promptline.storage.database import create_engine
from promptline.storage.migrate import upgrade

ROUNDS = 5
BATCH = 100
BATCHES_PER_ROUND = 20
SINGLE_APPENDS = 1000
READ_EVENTS = 10_000
SUBSCRIBERS = 100
BUS_EVENTS = 2_000


@dataclass
class Row:
    name: str
    target: str
    measured: str
    met: bool | None


def event(stream: str, n: int = 0) -> ErrorEvent:
    return ErrorEvent(
        stream=stream, session_id=stream, data=ErrorData(code="bench", message=f"event {n}")
    )


async def rounds(fn: Callable[[int], Awaitable[float]]) -> float:
    """Median of ``fn(round)`` over the rounds, after one warm-up round."""
    await fn(-1)
    return statistics.median([await fn(r) for r in range(ROUNDS)])


async def bench_batched_append(store: EventStore, label: str, target: float) -> Row:
    async def one(r: int) -> float:
        batches = [[event(f"batch-{r}", i) for i in range(BATCH)] for _ in range(BATCHES_PER_ROUND)]
        start = time.perf_counter()
        for batch in batches:
            await store.append_batch(batch)
        return BATCH * BATCHES_PER_ROUND / (time.perf_counter() - start)

    rate = await rounds(one)
    return Row(
        f"{label} append, batches of {BATCH}",
        f">= {target:,.0f} ev/s",
        f"{rate:,.0f} ev/s",
        rate >= target,
    )


async def bench_single_append(
    store: EventStore, label: str, target_p99_ms: float | None
) -> list[Row]:
    p50s: list[float] = []
    p99s: list[float] = []
    maxes: list[float] = []

    async def one(r: int) -> float:
        events = [event(f"single-{r}", i) for i in range(SINGLE_APPENDS)]
        times = []
        for e in events:
            start = time.perf_counter()
            await store.append(e)
            times.append((time.perf_counter() - start) * 1000)
        times.sort()
        if r >= 0:
            p50s.append(times[len(times) // 2])
            p99s.append(times[int(len(times) * 0.99)])
            maxes.append(times[-1])
        return 0.0

    await rounds(one)
    p50, p99 = statistics.median(p50s), statistics.median(p99s)
    worst = max(maxes)
    return [
        Row(f"{label} single append p50", "", f"{p50:.2f} ms", None),
        Row(
            f"{label} single append p99",
            "" if target_p99_ms is None else f"< {target_p99_ms:.0f} ms",
            f"{p99:.2f} ms",
            None if target_p99_ms is None else p99 < target_p99_ms,
        ),
        Row(f"{label} single append max (all rounds)", "", f"{worst:.2f} ms", None),
    ]


async def bench_read_stream(store: EventStore, label: str, target: float) -> Row:
    stream = f"read-{uuid.uuid4().hex[:6]}"
    for start in range(0, READ_EVENTS, 1000):
        await store.append_batch([event(stream, start + i) for i in range(1000)])

    async def one(_r: int) -> float:
        begin = time.perf_counter()
        events = await store.read_stream(stream)
        elapsed = time.perf_counter() - begin
        assert len(events) == READ_EVENTS
        return READ_EVENTS / elapsed

    rate = await rounds(one)
    return Row(
        f"{label} read_stream, typed events",
        f">= {target:,.0f} ev/s",
        f"{rate:,.0f} ev/s",
        rate >= target,
    )


async def bench_decode_only() -> Row:
    """The floor under any read: pydantic decoding of the stored JSON, no database."""
    from promptline.core.events import decode_event, encode_event

    bodies = [
        encode_event(event("s", i).model_copy(update={"seq": i + 1, "position": i + 1}))
        for i in range(READ_EVENTS)
    ]

    async def one(_r: int) -> float:
        begin = time.perf_counter()
        for body in bodies:
            decode_event(body, lenient=True)
        return READ_EVENTS / (time.perf_counter() - begin)

    rate = await rounds(one)
    return Row("decode_event alone (no database)", "", f"{rate:,.0f} ev/s", None)


async def bench_bus(store: EventStore, batch: int, target: float | None) -> Row:
    async def one(r: int) -> float:
        bus = InProcessEventBus(store, default_max_queue=BUS_EVENTS)
        subs = [bus.subscribe() for _ in range(SUBSCRIBERS)]
        done = 0

        async def consume(sub: object) -> None:
            nonlocal done
            got = 0
            async for _ in sub:  # type: ignore[attr-defined]
                got += 1
                if got == BUS_EVENTS:
                    break
            done += got

        tasks = [asyncio.create_task(consume(s)) for s in subs]
        events: list[Event] = [event(f"bus-{r}", i) for i in range(BUS_EVENTS)]
        start = time.perf_counter()
        if batch == 1:
            for e in events:
                await bus.publish(e)
        else:
            for i in range(0, BUS_EVENTS, batch):
                await bus.publish_batch(events[i : i + batch])
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
        await bus.close()
        assert done == SUBSCRIBERS * BUS_EVENTS
        return done / elapsed

    rate = await rounds(one)
    how = "publish" if batch == 1 else f"publish_batch({batch})"
    return Row(
        f"bus 1 publisher x {SUBSCRIBERS} subscribers, {how}",
        f">= {target:,.0f} deliv/s" if target else "",
        f"{rate:,.0f} deliv/s",
        None if target is None else rate >= target,
    )


async def sqlite_rows(folder: Path) -> list[Row]:
    engine = create_engine(f"sqlite+aiosqlite:///{folder / 'bench.db'}")
    try:
        await upgrade(engine)
        store = create_event_store(engine)
        rows = [await bench_batched_append(store, "SQLite", 20_000)]
        rows += await bench_single_append(store, "SQLite", 2.0)
        rows.append(await bench_read_stream(store, "SQLite", 100_000))
        rows.append(await bench_decode_only())
        rows.append(await bench_bus(store, BATCH, 100_000))
        rows.append(await bench_bus(store, 1, None))
        return rows
    finally:
        await engine.dispose()


async def postgres_rows() -> list[Row]:
    base = os.environ.get("PROMPTLINE_TEST_POSTGRES_URL")
    if not base:
        return [Row("PostgreSQL rows", "", "skipped: PROMPTLINE_TEST_POSTGRES_URL unset", None)]
    import asyncpg

    name = f"promptline_bench_{uuid.uuid4().hex[:8]}"
    admin = base.replace("+asyncpg", "")
    conn = await asyncpg.connect(admin, timeout=5)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    engine = create_engine(f"{base.rsplit('/', 1)[0]}/{name}")
    try:
        await upgrade(engine)
        store = create_event_store(engine)
        rows = [await bench_batched_append(store, "PostgreSQL", 5_000)]
        rows += await bench_single_append(store, "PostgreSQL", None)
        rows.append(await bench_read_stream(store, "PostgreSQL", 100_000))
        return rows
    finally:
        await engine.dispose()
        conn = await asyncpg.connect(admin, timeout=5)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def print_table(rows: list[Row]) -> None:
    width = max(len(r.name) for r in rows) + 2
    print(
        f"{'benchmark (median of ' + str(ROUNDS) + ' rounds)':<{width}}{'target':>20}"
        f"{'measured':>22}  met"
    )
    for r in rows:
        met = "" if r.met is None else ("yes" if r.met else "NO")
        print(f"{r.name:<{width}}{r.target:>20}{r.measured:>22}  {met}")


async def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        rows = await sqlite_rows(Path(folder))
    rows += await postgres_rows()
    print_table(rows)
    return 0 if all(r.met is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
