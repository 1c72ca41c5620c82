"""Quotas in a fleet: processes sharing one PostgreSQL database together grant no more than
the requests per minute in a window and no more than the concurrent runs at once; a process
killed with runs in flight holds their slots only until its lease lapses. On SQLite each
process counts its own."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from promptline.config.settings import QuotasSettings
from promptline.core.clock import ManualClock
from promptline.core.errors import QuotaExceededError
from promptline.core.events import QuotaExceededEvent
from promptline.events.bus import InProcessEventBus
from promptline.events.factory import create_event_store
from promptline.events.protocols import EventFilter
from promptline.security.auth import Caller
from promptline.security.quotas import RUN_LEASE_SECS, Quotas
from promptline.storage.database import create_engine
from promptline.storage.schema import quota_run_leases

START = datetime(2026, 12, 7, 12, 0, 10, tzinfo=UTC)  # 10 s into a minute
ALICE = Caller(user_id="alice", tenant_id="acme", role="member")
BOB = Caller(user_id="bob", tenant_id="acme", role="member")


@dataclass
class FakeRun:
    """What the quotas read of a run: whose it is, and whether it ended."""

    tenant_id: str
    user_id: str
    done: bool = False
    envelope: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.envelope = {"tenant_id": self.tenant_id, "user_id": self.user_id}


@dataclass
class Process:
    """One gateway process's quotas, with the runs it has not ended."""

    quotas: Quotas
    runs: list[FakeRun] = field(default_factory=list)

    async def run(self, caller: Caller = ALICE) -> FakeRun:
        async with self.quotas.admission(caller.tenant_id, caller.user_id):
            run = FakeRun(caller.tenant_id, caller.user_id)
            self.runs.append(run)
        return run

    async def refused(self, call: Callable[[], Any]) -> QuotaExceededError:
        with pytest.raises(QuotaExceededError) as caught:
            await call()
        return caught.value


@asynccontextmanager
async def fleet(
    url: str, clock: ManualClock | list[ManualClock], limits: dict[str, Any], size: int = 2
) -> AsyncIterator[list[Process]]:
    """``size`` processes' quotas on the database at ``url``, each with its own engine (and
    its own clock, when given a list)."""
    settings = QuotasSettings.model_validate(limits)
    clocks = clock if isinstance(clock, list) else [clock] * size
    async with AsyncExitStack() as stack:
        processes = []
        for clock in clocks:
            engine = create_engine(url)
            stack.push_async_callback(engine.dispose)
            store = create_event_store(engine)
            bus = InProcessEventBus(store)
            stack.push_async_callback(bus.close)
            quotas = Quotas(settings, bus, store=store, clock=clock, engine=engine)
            stack.push_async_callback(quotas.close)
            process = Process(quotas)
            quotas.bind_runs(lambda runs=process.runs: runs)
            processes.append(process)
        yield processes


async def test_a_fleet_grants_no_more_than_the_requests_per_minute_in_a_window(
    postgres_url: str,
) -> None:
    clock = ManualClock(START)
    async with fleet(postgres_url, clock, {"user": {"requests_per_minute": 3}}) as (one, two):
        assert one.quotas.shared
        assert two.quotas.shared
        await one.quotas.take_request(ALICE)
        await two.quotas.take_request(ALICE)
        await one.quotas.take_request(ALICE)

        refused = await two.refused(lambda: two.quotas.take_request(ALICE))

        assert (refused.quota, refused.scope, refused.limit) == (
            "requests_per_minute",
            "user:alice",
            3,
        )
        assert refused.retry_after == pytest.approx(50)  # the window ends at 12:01:00
        await one.refused(lambda: one.quotas.take_request(ALICE))
        await two.quotas.take_request(BOB)  # bob's count is his own
        clock.advance(50)  # a new window
        await two.quotas.take_request(ALICE)
        await one.quotas.take_request(ALICE)
        await one.quotas.take_request(ALICE)
        await two.refused(lambda: two.quotas.take_request(ALICE))
        engine = create_engine(postgres_url)
        try:
            hits = await create_event_store(engine).read_all(
                EventFilter(types=frozenset({"quota_exceeded"}))
            )
        finally:
            await engine.dispose()
        assert {
            (h.data.quota, h.data.scope) for h in hits if isinstance(h, QuotaExceededEvent)
        } == {("requests_per_minute", "user:alice")}


async def test_a_process_whose_clock_is_behind_counts_into_the_newer_window(
    postgres_url: str,
) -> None:
    ahead = ManualClock(datetime(2026, 12, 7, 12, 1, 0, 500_000, tzinfo=UTC))
    behind = ManualClock(datetime(2026, 12, 7, 12, 0, 59, 500_000, tzinfo=UTC))
    limits = {"user": {"requests_per_minute": 2}}
    async with fleet(postgres_url, [ahead, behind], limits) as (one, two):
        await one.quotas.take_request(ALICE)  # starts the window of 12:01
        await two.quotas.take_request(ALICE)  # its clock says 12:00, yet it counts in 12:01

        await one.refused(lambda: one.quotas.take_request(ALICE))
        await two.refused(lambda: two.quotas.take_request(ALICE))


async def test_a_fleet_grants_no_more_than_the_concurrent_runs_at_once(postgres_url: str) -> None:
    clock = ManualClock(START)
    limits = {"user": {"concurrent_runs": 2}, "tenant": {"concurrent_runs": 3}}
    async with fleet(postgres_url, clock, limits) as (one, two):
        first = await one.run()
        await two.run()

        refused = await one.refused(one.run)

        assert (refused.quota, refused.scope, refused.limit, refused.used) == (
            "concurrent_runs",
            "user:alice",
            2,
            2,
        )
        assert refused.retry_after == 5
        await two.refused(two.run)
        await two.run(BOB)  # acme's third
        refused = await one.refused(lambda: one.run(BOB))
        assert (refused.scope, refused.used) == ("tenant:acme", 3)
        # A run that ends frees its slot for the whole fleet once its process says so.
        first.done = True
        one.quotas.run_ended(first)  # type: ignore[arg-type]
        await one.quotas.renew()
        await two.run()


async def test_admissions_racing_in_two_processes_take_the_last_run_once(
    postgres_url: str,
) -> None:
    clock = ManualClock(START)
    async with fleet(postgres_url, clock, {"user": {"concurrent_runs": 3}}, size=3) as procs:
        outcomes = await asyncio.gather(
            *(p.run() for p in procs for _ in range(2)), return_exceptions=True
        )

    granted = [o for o in outcomes if isinstance(o, FakeRun)]
    assert len(granted) == 3
    assert all(isinstance(o, QuotaExceededError) for o in outcomes if o not in granted)


KILLED = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import datetime
    from promptline.config.settings import QuotasSettings
    from promptline.core.clock import ManualClock
    from promptline.events.bus import InProcessEventBus
    from promptline.events.factory import create_event_store
    from promptline.security.quotas import Quotas
    from promptline.storage.database import create_engine

    class Run:
        done = False
        envelope = {"tenant_id": "acme", "user_id": "alice"}

    async def main():
        engine = create_engine(sys.argv[1])
        store = create_event_store(engine)
        settings = QuotasSettings.model_validate({"user": {"concurrent_runs": 2}})
        clock = ManualClock(datetime.fromisoformat(sys.argv[2]))
        quotas = Quotas(settings, InProcessEventBus(store), store=store, clock=clock,
                        engine=engine)
        runs = []
        quotas.bind_runs(lambda: runs)
        for _ in range(2):
            async with quotas.admission("acme", "alice"):
                runs.append(Run())
        print("running", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


async def test_a_killed_process_holds_its_runs_only_until_its_lease_lapses(
    postgres_url: str,
) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        KILLED,
        postgres_url,
        START.isoformat(),
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    assert await child.stdout.readline() == b"running\n"
    os.kill(child.pid, signal.SIGKILL)
    assert await child.wait() == -signal.SIGKILL

    clock = ManualClock(START)
    async with fleet(postgres_url, clock, {"user": {"concurrent_runs": 2}}, size=1) as [alone]:
        refused = await alone.refused(alone.run)
        assert (refused.scope, refused.used) == ("user:alice", 2)  # the dead one's two runs
        clock.advance(RUN_LEASE_SECS - 1)
        await alone.refused(alone.run)

        clock.advance(1)  # the lease lapses: nobody renewed it

        await alone.run()
        await alone.run()
        await alone.refused(alone.run)
        await alone.quotas.renew()  # which also clears the leases of processes gone
        engine = create_engine(postgres_url)
        try:
            async with engine.connect() as conn:
                holders = (await conn.execute(select(quota_run_leases.c.holder))).scalars()
                assert len(set(holders)) == 1
        finally:
            await engine.dispose()


async def test_on_sqlite_each_process_counts_its_own(sqlite_url: str) -> None:
    clock = ManualClock(START)
    async with fleet(sqlite_url, clock, {"user": {"requests_per_minute": 1}}) as (one, two):
        assert not one.quotas.shared
        assert "per process" in one.quotas.describe()
        await one.quotas.take_request(ALICE)
        await two.quotas.take_request(ALICE)
        await one.refused(lambda: one.quotas.take_request(ALICE))
