"""The lease of an instance name: one live process holds it, on SQLite and PostgreSQL alike, and
it goes with the process however that ends (SIGKILL included)."""

from __future__ import annotations

import asyncio
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from promptline.storage.database import create_engine
from promptline.storage.lease import InstanceLease

HOLDER = """\
import asyncio, sys
from promptline.storage.database import create_engine
from promptline.storage.lease import InstanceLease

async def main():
    lease = InstanceLease(create_engine(sys.argv[1]), "gw")
    print("held" if await lease.acquire() else "refused", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_one_holder_at_a_time_and_the_lease_is_free_again_once_released(
    db_url: str,
) -> None:
    engines = [create_engine(db_url) for _ in range(3)]
    first, second, other = (
        InstanceLease(engine, name)
        for engine, name in zip(engines, ("gw", "gw", "gw-2"), strict=True)
    )
    try:
        assert await first.acquire()
        assert await first.acquire()  # taking it again is a no-op
        assert not await second.acquire()
        assert await other.acquire()  # another name is another lease
        await first.release()
        assert await second.acquire()
    finally:
        for lease in (first, second, other):
            await lease.release()
        for engine in engines:
            await engine.dispose()


async def test_a_process_killed_with_the_lease_leaves_it_free(db_url: str, tmp_path: Path) -> None:
    script = tmp_path / "holder.py"
    script.write_text(textwrap.dedent(HOLDER), encoding="utf-8")
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(script), db_url, stdout=asyncio.subprocess.PIPE
    )
    engine = create_engine(db_url)
    lease = InstanceLease(engine, "gw")
    try:
        assert child.stdout is not None
        assert (await asyncio.wait_for(child.stdout.readline(), 30)).strip() == b"held"
        assert not await lease.acquire()

        child.send_signal(signal.SIGKILL)
        await child.wait()

        for _ in range(250):  # PostgreSQL notices the lost connection at once; bound: 5 s
            if await lease.acquire():
                break
            await asyncio.sleep(0.02)
        assert lease.held
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        await lease.release()
        await engine.dispose()


@pytest.mark.parametrize("database", [":memory:", ""])
async def test_a_database_no_other_process_can_open_needs_no_lease(database: str) -> None:
    lease = InstanceLease(create_engine(f"sqlite+aiosqlite:///{database}"), "gw")
    assert await lease.acquire()
    await lease.release()
