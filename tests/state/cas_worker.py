"""A separate OS process that increments a global counter by compare-and-set, for the
multi-process tests of the state stores.

Usage: ``python cas_worker.py BACKEND LOCATION KEY COUNT`` with BACKEND ``file`` (LOCATION a
directory) or ``sqlite`` (LOCATION a database URL). Prints ``ready``, waits for a line on
stdin (so every worker starts together), then prints ``done <conflicts seen>``.
"""

from __future__ import annotations

import asyncio
import sys

from promptline.core.errors import ConflictError
from promptline.state.factory import create_state_store
from promptline.storage.database import create_engine


async def main(backend: str, location: str, key: str, count: int) -> None:
    engine = create_engine(location) if backend == "sqlite" else None
    store = create_state_store(backend, engine=engine, file_dir=location)
    conflicts = 0
    try:
        await store.get("global", key)  # connect before saying ready
        print("ready", flush=True)
        sys.stdin.readline()
        for _ in range(count):
            while True:
                entry = await store.get("global", key)
                current = 0 if entry is None else entry.value
                version = 0 if entry is None else entry.version
                try:
                    await store.set("global", key, current + 1, expected_version=version)
                    break
                except ConflictError:
                    conflicts += 1
        print(f"done {conflicts}", flush=True)
    finally:
        await store.close()
        if engine is not None:
            await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
