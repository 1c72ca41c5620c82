"""Latency of the state backends: set, get, compare-and-set, list, and contended CAS.

``cas 16w``: 16 coroutines each add one to a shared counter ten times by CAS retry loops;
its ops/s counts successful increments.

File and SQLite always run; Redis and PostgreSQL run when ``PROMPTLINE_TEST_REDIS_URL`` /
``PROMPTLINE_TEST_POSTGRES_URL`` are set (a throw-away database and key prefix are used).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from promptline.core.errors import ConflictError
from promptline.state.protocols import StateStore

N = 300
WORKERS = 16


@contextlib.asynccontextmanager
async def open_backend(name: str, scratch: Path) -> AsyncIterator[StateStore]:
    from promptline.state.file import FileStateStore
    from promptline.state.redis import RedisStateStore
    from promptline.state.sql import SqlStateStore
    from promptline.storage.database import create_engine
    from promptline.storage.migrate import upgrade

    if name == "file":
        yield FileStateStore(scratch / "files")
    elif name == "sqlite":
        engine = create_engine(str(scratch / "bench.db"))
        await upgrade(engine)
        yield SqlStateStore(engine, owns_engine=True)
        await engine.dispose()
    elif name == "redis":
        import redis.asyncio as aioredis

        url = os.environ["PROMPTLINE_TEST_REDIS_URL"]
        prefix = f"plbench:{uuid.uuid4().hex[:8]}:"
        store = RedisStateStore(url, prefix=prefix)
        yield store
        await store.close()
        client = aioredis.Redis.from_url(url)
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    else:
        import asyncpg

        base = os.environ["PROMPTLINE_TEST_POSTGRES_URL"]
        db = f"promptline_bench_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(base)
        await admin.execute(f'CREATE DATABASE "{db}"')
        engine = create_engine(f"{base.rsplit('/', 1)[0]}/{db}")
        try:
            await upgrade(engine)
            yield SqlStateStore(engine)
        finally:
            await engine.dispose()
            await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            await admin.close()


async def timed(op: Callable[[int], Awaitable[object]]) -> list[float]:
    times = []
    for i in range(N):
        start = time.perf_counter()
        await op(i)
        times.append((time.perf_counter() - start) * 1e6)
    return times


async def increment(store: StateStore) -> None:
    while True:
        entry = await store.get("global", "contended")
        version = 0 if entry is None else entry.version
        try:
            await store.set("global", "contended", version + 1, expected_version=version)
            return
        except ConflictError:
            continue


async def run(name: str) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        async with open_backend(name, Path(scratch)) as store:
            value = {"text": "x" * 200, "n": list(range(20))}
            rows = {
                "set": await timed(lambda i: store.set("global", f"k{i:05d}", value)),
                "get": await timed(lambda i: store.get("global", f"k{i:05d}")),
                "cas set": await timed(
                    lambda i: store.set("global", f"k{i:05d}", i, expected_version=1)
                ),
                "list 50": await timed(
                    lambda i: store.list("global", prefix=f"k{i % 3:01d}", limit=50)
                ),
            }
            start = time.perf_counter()
            per_worker = 10

            async def worker() -> None:
                for _ in range(per_worker):
                    await increment(store)

            await asyncio.gather(*(worker() for _ in range(WORKERS)))
            contended_ms = (time.perf_counter() - start) * 1000
            for op, t in rows.items():
                print(
                    f"{name:<9}{op:<10}{statistics.median(t):>10.0f}"
                    f"{sorted(t)[int(len(t) * 0.9)]:>10.0f}{1e6 / statistics.mean(t):>10.0f}"
                )
            total = WORKERS * per_worker
            print(f"{name:<9}{f'cas {WORKERS}w':<10}{'':>20}{total / contended_ms * 1000:>10.0f}")


async def main() -> None:
    backends = ["file", "sqlite"]
    if os.environ.get("PROMPTLINE_TEST_REDIS_URL"):
        backends.append("redis")
    if os.environ.get("PROMPTLINE_TEST_POSTGRES_URL"):
        backends.append("postgres")
    print(f"{'backend':<9}{'op':<10}{'p50 us':>10}{'p90 us':>10}{'ops/s':>10}")
    for name in backends:
        await run(name)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
