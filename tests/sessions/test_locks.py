"""Per-session locks serialize work on one key, leave other keys alone, and vanish when idle."""

from __future__ import annotations

import asyncio

from promptline.sessions.locks import KeyedLocks


async def test_work_on_one_key_is_serialized_and_other_keys_run_meanwhile() -> None:
    locks = KeyedLocks()
    order: list[str] = []
    release = asyncio.Event()

    async def hold_a() -> None:
        async with locks.hold("a"):
            order.append("a1 in")
            await release.wait()
            order.append("a1 out")

    async def second_a() -> None:
        async with locks.hold("a"):
            order.append("a2 in")

    async def other_b() -> None:
        async with locks.hold("b"):
            order.append("b in")

    first = asyncio.create_task(hold_a())
    await asyncio.sleep(0)  # let it take the lock
    waiting = asyncio.create_task(second_a())
    await other_b()
    assert order == ["a1 in", "b in"]
    release.set()
    await asyncio.gather(first, waiting)
    assert order == ["a1 in", "b in", "a1 out", "a2 in"]


async def test_locks_are_dropped_when_nobody_holds_or_waits() -> None:
    locks = KeyedLocks()
    async with locks.hold("a"):
        assert len(locks) == 1
    assert len(locks) == 0


async def test_a_failing_holder_releases_the_lock() -> None:
    locks = KeyedLocks()
    try:
        async with locks.hold("a"):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    async with locks.hold("a"):
        pass
    assert len(locks) == 0
