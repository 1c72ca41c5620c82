"""Compare-and-set holds across OS processes sharing one file tree or one SQLite file."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from promptline.state.factory import create_state_store
from promptline.storage.database import create_engine

WORKER = Path(__file__).with_name("cas_worker.py")
PROCESSES = 3
INCREMENTS = 25


async def _run_workers(backend: str, location: str) -> list[int]:
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            backend,
            location,
            "counter",
            str(INCREMENTS),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(PROCESSES)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert (await proc.stdout.readline()).strip() == b"ready"
        for proc in procs:  # release them together
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        conflicts = []
        for proc in procs:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
            assert proc.returncode == 0
            word, count = out.decode().split()
            assert word == "done"
            conflicts.append(int(count))
        return conflicts
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def _final_count(backend: str, location: str) -> tuple[int, int]:
    engine = create_engine(location) if backend == "sqlite" else None
    store = create_state_store(backend, engine=engine, file_dir=location)
    try:
        entry = await store.get("global", "counter")
        assert entry is not None
        return entry.value, entry.version
    finally:
        await store.close()
        if engine is not None:
            await engine.dispose()


async def test_file_store_processes_incrementing_by_cas_lose_no_update(tmp_path: Path) -> None:
    location = str(tmp_path / "state")
    await _run_workers("file", location)
    total = PROCESSES * INCREMENTS
    assert await _final_count("file", location) == (total, total)


async def test_sqlite_store_processes_incrementing_by_cas_lose_no_update(sqlite_url: str) -> None:
    await _run_workers("sqlite", sqlite_url)
    total = PROCESSES * INCREMENTS
    assert await _final_count("sqlite", sqlite_url) == (total, total)
