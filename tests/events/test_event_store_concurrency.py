"""Gap-free seqs under real concurrency: many engines, many OS processes, and a writer killed -9."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from promptline.core.errors import StorageLockedError
from promptline.core.events import ErrorData, ErrorEvent
from promptline.events.factory import create_event_store
from promptline.storage.database import create_engine, sqlite_path

WRITER = Path(__file__).with_name("writer_process.py")
# Bounds a wait that should end at once; only reached if the code under test is broken.
STUCK = 60.0


def err(stream: str = "s1") -> ErrorEvent:
    return ErrorEvent(stream=stream, data=ErrorData(code="t", message="m"))


async def _seqs(url: str, stream: str) -> list[int]:
    store = create_event_store(create_engine(url), owns_engine=True)
    try:
        return [e.seq for e in await store.read_stream(stream)]
    finally:
        await store.close()


async def _positions(url: str) -> list[int]:
    store = create_event_store(create_engine(url), owns_engine=True)
    try:
        return [e.position for e in await store.read_all()]
    finally:
        await store.close()


async def _start_writer(url: str, stream: str, batch: int, batches: int) -> Any:
    """Start `writer_process.py` and wait until it is connected and waits for "go"."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WRITER),
        url,
        stream,
        str(batch),
        str(batches),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), STUCK)
    assert line == b"ready\n"
    return proc


async def test_several_engines_appending_to_one_stream_never_duplicate_or_gap(
    postgres_url: str,
) -> None:
    stores = [
        create_event_store(create_engine(postgres_url, pool_size=3), owns_engine=True)
        for _ in range(4)
    ]
    try:

        async def writer(index: int) -> None:
            store = stores[index % len(stores)]
            for n in range(10):
                if n % 3 == 0:
                    await store.append_batch([err(), err("other"), err()])
                else:
                    await store.append(err())

        await asyncio.gather(*(writer(i) for i in range(12)))
    finally:
        for store in stores:
            await store.close()
    total = 12 * (4 * 2 + 6 * 1)
    assert await _seqs(postgres_url, "s1") == list(range(1, total + 1))
    assert await _seqs(postgres_url, "other") == list(range(1, 12 * 4 + 1))
    assert await _positions(postgres_url) == list(range(1, total + 12 * 4 + 1))


async def test_two_stores_on_one_sqlite_file_interleave_without_gaps(sqlite_url: str) -> None:
    # Each store has its own writer connection; they meet on SQLite's own write lock.
    stores = [create_event_store(create_engine(sqlite_url), owns_engine=True) for _ in range(2)]
    try:

        async def writer(store: Any) -> None:
            for n in range(30):
                if n % 5 == 0:
                    await store.append_batch([err(), err()])
                else:
                    await store.append(err())

        await asyncio.gather(*(writer(s) for s in stores))
    finally:
        for store in stores:
            await store.close()
    assert await _seqs(sqlite_url, "s1") == list(range(1, 2 * 36 + 1))


async def test_processes_appending_to_one_stream_never_duplicate_or_gap(db_url: str) -> None:
    # Two writer processes plus this one; each waits for "go" so all append at the same time.
    plans = [(1, 40), (5, 12)]
    procs = await asyncio.gather(
        *(_start_writer(db_url, "shared", size, count) for size, count in plans)
    )
    store = create_event_store(create_engine(db_url), owns_engine=True)
    try:
        for proc in procs:
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        for _ in range(40):
            await store.append(err("shared"))
    finally:
        await store.close()
    for proc in procs:
        assert await asyncio.wait_for(proc.wait(), STUCK) == 0
    total = sum(size * count for size, count in plans) + 40
    assert await _seqs(db_url, "shared") == list(range(1, total + 1))
    assert await _positions(db_url) == list(range(1, total + 1))


async def test_writer_killed_mid_loop_leaves_only_whole_batches(db_url: str) -> None:
    proc = await _start_writer(db_url, "k", 100, 0)
    proc.stdin.write(b"go\n")
    await proc.stdin.drain()
    reported = 0
    while reported < 300:  # the writer says so after each commit; wait for three batches
        line = await asyncio.wait_for(proc.stdout.readline(), STUCK)
        reported = int(line.split()[1])
    proc.send_signal(signal.SIGKILL)
    assert await asyncio.wait_for(proc.wait(), STUCK) == -signal.SIGKILL
    seqs = await _seqs(db_url, "k")
    count = len(seqs)
    assert count >= reported
    assert count % 100 == 0
    assert seqs == list(range(1, count + 1))
    # The log accepts appends again right away (no lock left behind).
    store = create_event_store(create_engine(db_url), owns_engine=True)
    try:
        stored = await store.append(err("k"))
    finally:
        await store.close()
    assert stored.seq == count + 1


async def test_locked_sqlite_database_raises_storage_locked_and_stores_nothing(
    sqlite_url: str,
) -> None:
    path = sqlite_path(sqlite_url)
    assert path is not None
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process's write, held open
    store = create_event_store(create_engine(sqlite_url, busy_timeout_ms=50), owns_engine=True)
    try:
        with pytest.raises(StorageLockedError) as caught:
            await store.append(err())
        assert caught.value.hint
        holder.execute("ROLLBACK")
        assert await store.count() == 0
        assert (await store.append(err())).seq == 1
    finally:
        holder.close()
        await store.close()
