"""Quotas per tenant and per user (``quotas:``): `Quotas` counts what each user and each
tenant does and refuses what goes past a quota with `QuotaExceededError` (HTTP 429).

Two modes, by where the log is. On SQLite (one process) requests per minute are token
buckets (the rate limiter's), one per user (in its tenant) and one per tenant, and concurrent
runs are the runs of the user (or tenant) this process has not ended: all in memory. On
PostgreSQL (a fleet may share it) both are counted in the database (`FleetCounters`):
requests in fixed one-minute windows, one statement per request; runs as leases each process
holds on the runs it has not ended, renewed while it lives and lapsing ``RUN_LEASE_SECS``
after it stops (a killed process holds no slot past that).

Tokens and dollars per day are checked as a message is taken (`Runtime.submit`), against what
the log's ``llm_result`` events of the user (or tenant) since midnight UTC used: a running
total per subject, read from the log at the subject's first check of the day, then brought
up to date at each check by reading only the events after the last one counted (the log is
the source, so processes sharing a database share the totals). Storage is the bytes the log
holds of the subject's sessions not deleted, kept the same way (`StorageUsage`), checked as
a message is taken, a session created and a state value written. Sessions are the user's (or
tenant's) sessions neither deleted nor expired, counted in the database as one is created.

Each refusal is recorded as a ``quota_exceeded`` event, at most once a minute per quota and
subject: the first refusal in a minute is recorded at once, the refusals after it in that
minute are carried by the subject's next record as its ``count``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from promptline.core.errors import PromptLineError, QuotaExceededError
from promptline.core.events import LlmResultEvent, QuotaExceeded, QuotaExceededEvent
from promptline.core.ids import new_id
from promptline.core.keys import join_key
from promptline.events.protocols import EventFilter
from promptline.gateway.ratelimit import RateLimiter
from promptline.runtime.budget import Spent, start_of_day
from promptline.security.audit import AUDIT_STREAM
from promptline.security.fleet_counters import FleetCounters, RunSlot
from promptline.security.storage_usage import StorageUsage
from promptline.storage.database import is_sqlite

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from promptline.config.settings import QuotasSettings
    from promptline.core.clock import Clock
    from promptline.events.protocols import EventBus, EventStore
    from promptline.runtime.run import Run
    from promptline.security.auth import Caller

__all__ = [
    "CONCURRENCY_RETRY_SECS",
    "RECORD_WINDOW_SECS",
    "RUN_LEASE_SECS",
    "SESSIONS_RETRY_SECS",
    "STORAGE_RETRY_SECS",
    "Quotas",
    "counted_in_database",
    "counting_mode",
]

SESSIONS_RETRY_SECS = 60.0
"""The Retry-After of a session refused for ``max_sessions``: sessions end when they are
deleted or expire."""

CONCURRENCY_RETRY_SECS = 5.0
"""The Retry-After of a message refused for ``concurrent_runs``: runs end at no known time."""

STORAGE_RETRY_SECS = 60.0
"""The Retry-After of a write refused for ``storage_mb``: storage frees when sessions are
deleted (the refusal's hint says so)."""

RUN_LEASE_SECS = 60.0
"""In a fleet, how long the runs a process has not ended count without it renewing them
(it renews every third of this): a process that dies holds no run slot past this."""

WINDOW_SECS = 60
"""In a fleet, the length of the fixed windows requests per minute are counted in."""

RECORD_WINDOW_SECS = 60.0
"""The refusals of one quota and subject are recorded at most once per this many seconds."""

_MAX_SUBJECTS = 10_000
_MIB = 1024 * 1024
_log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Tally:
    day: datetime
    spent: Spent
    position: int


Kind = Literal["user", "tenant"]


@dataclass(slots=True)
class _Refusals:
    window_start: float
    in_window: int
    unrecorded: int


class Quotas:
    """The quotas of ``settings``, counted against ``clock``; refusals go to ``bus``.

    With ``engine`` on PostgreSQL the requests per minute and concurrent runs are counted in
    the database, shared by every process on it (`shared`); else in this process. ``engine``
    also serves the storage quota (without one, ``storage_mb`` is not counted).
    """

    def __init__(
        self,
        settings: QuotasSettings,
        bus: EventBus,
        *,
        store: EventStore,
        clock: Clock,
        engine: AsyncEngine | None = None,
    ) -> None:
        self.settings = settings
        self._bus = bus
        self._store = store
        self._clock = clock
        self._tallies: dict[tuple[Kind, str, str | None], _Tally] = {}
        self._limiters: dict[int, RateLimiter] = {}
        self._refusals: dict[tuple[str, str], _Refusals] = {}
        self._storage = StorageUsage(engine) if engine is not None else None
        self._fleet: FleetCounters | None = None
        if engine is not None and counted_in_database(engine):
            holder = f"{socket.gethostname()}:{os.getpid()}:{new_id('q_')}"
            self._fleet = FleetCounters(engine, holder[:128])
        self._runs: Callable[[], Iterable[Run]] = tuple
        self._admitting: Counter[str] = Counter()
        self._turn = asyncio.Lock()
        self._renewer: asyncio.Task[None] | None = None
        self._renewals: set[asyncio.Task[None]] = set()

    @property
    def shared(self) -> bool:
        """True when requests per minute and concurrent runs are counted in the database,
        for every process on it; False when each process counts its own."""
        return self._fleet is not None

    def describe(self) -> str:
        """Where the requests per minute and concurrent runs are counted, in words."""
        return counting_mode(shared=self.shared)

    def bind_runs(self, runs: Callable[[], Iterable[Run]]) -> None:
        """Count concurrent runs among ``runs()``: the runs of this process not ended."""
        self._runs = runs

    def _seconds(self) -> float:
        return self._clock.now().timestamp()

    def _micros(self, seconds_from_now: float = 0.0) -> int:
        return round((self._seconds() + seconds_from_now) * 1_000_000)

    async def take_request(self, caller: Caller) -> None:
        """Count one request of ``caller`` against the requests per minute of its user and
        of its tenant; `QuotaExceededError` (recorded) when either is used up."""
        subjects: tuple[tuple[Literal["user", "tenant"], str, str], ...] = (
            ("user", caller.user_id, join_key("user", caller.tenant_id, caller.user_id)),
            ("tenant", caller.tenant_id, join_key("tenant", caller.tenant_id)),
        )
        limited = [
            (kind, ident, bucket, per_minute)
            for kind, ident, bucket in subjects
            if (per_minute := self.settings.limits(kind, ident).requests_per_minute) is not None
        ]
        if not limited:
            return
        if self._fleet is not None:
            await self._take_shared(caller, limited)
            return
        for kind, ident, bucket, per_minute in limited:
            limiter = self._limiters.get(per_minute)
            if limiter is None:
                limiter = self._limiters[per_minute] = RateLimiter(per_minute, clock=self._seconds)
            wait = limiter.try_take(bucket)
            if wait > 0:
                error = QuotaExceededError(
                    "requests_per_minute",
                    f"{kind}:{ident}",
                    limit=per_minute,
                    used=per_minute,
                    retry_after=wait,
                )
                await self.record(error, caller.tenant_id, caller.user_id)
                raise error

    async def _take_shared(self, caller: Caller, limited: list[tuple[Kind, str, str, int]]) -> None:
        assert self._fleet is not None
        now = self._seconds()
        start = int(now // WINDOW_SECS) * WINDOW_SECS
        counts = await self._fleet.count_request(
            [bucket for _, _, bucket, _ in limited], start * 1_000_000
        )
        for kind, ident, bucket, per_minute in limited:
            if counts.get(bucket, 0) > per_minute:
                error = QuotaExceededError(
                    "requests_per_minute",
                    f"{kind}:{ident}",
                    limit=per_minute,
                    used=per_minute,
                    retry_after=max(start + WINDOW_SECS - now, 0.001),
                )
                await self.record(error, caller.tenant_id, caller.user_id)
                raise error

    @contextlib.asynccontextmanager
    async def admission(self, tenant_id: str, user_id: str) -> AsyncIterator[None]:
        """Check a message of ``user_id`` of ``tenant_id`` against the concurrent runs,
        tokens and dollars per day and storage of the user and of its tenant on entry
        (`QuotaExceededError`, recorded, for the first used up); leave the block once the
        run that answers the message is among the bound runs (or none will be)."""
        slots = self._slots(tenant_id, user_id)
        for slot in slots:
            self._admitting[slot.subject] += 1
        try:
            try:
                for kind in ("user", "tenant"):
                    await self._check_spending(kind, tenant_id, user_id)
                    await self._check_storage(kind, tenant_id, user_id)
                # Last: in a fleet, the check takes the run in the database.
                if self._fleet is not None and slots:
                    await self._admit_shared(tenant_id, slots)
                else:
                    _check_slots(slots, lambda slot: slot.local)
            except QuotaExceededError as error:
                await self.record(error, tenant_id, user_id)
                raise
            try:
                yield
            except BaseException:
                # No run came of it: give its slot back to the fleet now rather than at the
                # next renewal.
                if slots:
                    self.run_ended(None)
                raise
        finally:
            for slot in slots:
                self._admitting[slot.subject] -= 1
                if self._admitting[slot.subject] <= 0:
                    del self._admitting[slot.subject]

    def _slots(self, tenant_id: str, user_id: str) -> list[RunSlot]:
        """The concurrent-runs quotas of the user and of its tenant (none when both are
        unlimited), with the runs of each this process has not ended and the messages it is
        taking (this one aside)."""
        user_limit = self.settings.limits("user", user_id).concurrent_runs
        tenant_limit = self.settings.limits("tenant", tenant_id).concurrent_runs
        if user_limit is None and tenant_limit is None:
            return []
        local = self._local_runs()
        user, tenant = _run_subject(tenant_id, user_id), _run_subject(tenant_id, None)
        return [
            RunSlot(user, user_limit, local.get(user, 0), f"user:{user_id}"),
            RunSlot(tenant, tenant_limit, local.get(tenant, 0), f"tenant:{tenant_id}"),
        ]

    def _local_runs(self) -> Counter[str]:
        """Subject -> the runs of this process not ended, and the messages being taken."""
        counts: Counter[str] = Counter(self._admitting)
        for run in self._runs():
            if run.done:
                continue
            tenant, user = run.envelope.get("tenant_id"), run.envelope.get("user_id")
            if tenant is None:
                continue
            counts[_run_subject(tenant, None)] += 1
            if user is not None:
                counts[_run_subject(tenant, user)] += 1
        return counts

    async def _admit_shared(self, tenant_id: str, slots: list[RunSlot]) -> None:
        assert self._fleet is not None
        async with self._turn:
            refused = await self._fleet.admit_run(
                tenant_id,
                slots,
                now=self._micros(),
                expires_at=self._micros(RUN_LEASE_SECS),
            )
        self._start_renewing()
        if refused is not None:
            slot, used = refused
            _check_slots([slot], lambda _: used)

    async def renew(self) -> None:
        """Write this process's runs not ended as its leases, for another `RUN_LEASE_SECS`
        (a fleet only; each process does it every third of that, and as its runs end)."""
        if self._fleet is None:
            return
        async with self._turn:
            await self._fleet.renew(
                self._local_runs(), now=self._micros(), expires_at=self._micros(RUN_LEASE_SECS)
            )

    def run_ended(self, run: Run | None) -> None:
        """Tell the fleet a run of this process ended (or, None, a message admitted started
        none), so its slot frees at once there."""
        if self._fleet is None or self._renewer is None:
            return
        if len(self._renewals) > 1:
            return  # one renewal waits its turn: it will count this run's end too
        task = asyncio.get_running_loop().create_task(self._renew_logged())
        self._renewals.add(task)
        task.add_done_callback(self._renewals.discard)

    def _start_renewing(self) -> None:
        if self._renewer is None:
            self._renewer = asyncio.get_running_loop().create_task(
                self._renew_forever(), name="quota-run-leases"
            )

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(RUN_LEASE_SECS / 3)
            await self._renew_logged()

    async def _renew_logged(self) -> None:
        try:
            await self.renew()
        except PromptLineError as exc:
            _log.warning("could not renew the quotas' run leases: %s", exc.message)

    async def close(self) -> None:
        """Stop renewing, and give this process's run leases back."""
        tasks = [t for t in (self._renewer, *self._renewals) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._fleet is not None and self._renewer is not None:
            self._renewer = None
            try:
                await self._fleet.release()
            except PromptLineError as exc:
                _log.warning("could not give the quotas' run leases back: %s", exc.message)

    async def admit_session(
        self,
        tenant_id: str,
        user_id: str,
        count: Callable[[str, str | None], Awaitable[int]],
    ) -> None:
        """Check a new session of ``user_id`` of ``tenant_id`` against the ``max_sessions``
        and storage of the user and of its tenant (``count(tenant_id, user_id or None)``:
        their sessions now); `QuotaExceededError` (recorded) for the first used up."""
        subjects: tuple[tuple[Kind, str, str | None], ...] = (
            ("user", user_id, user_id),
            ("tenant", tenant_id, None),
        )
        try:
            for kind, ident, of_user in subjects:
                limit = self.settings.limits(kind, ident).max_sessions
                if limit is None:
                    continue
                used = await count(tenant_id, of_user)
                if used >= limit:
                    raise QuotaExceededError(
                        "max_sessions",
                        f"{kind}:{ident}",
                        limit=limit,
                        used=used,
                        retry_after=SESSIONS_RETRY_SECS,
                    )
            for kind, _, _ in subjects:
                await self._check_storage(kind, tenant_id, user_id)
        except QuotaExceededError as error:
            await self.record(error, tenant_id, user_id)
            raise

    async def admit_write(self, tenant_id: str, user_id: str) -> None:
        """Check a state write of ``user_id`` of ``tenant_id`` against the storage of the
        user and of its tenant; `QuotaExceededError` (recorded) when either is used up."""
        try:
            for kind in ("user", "tenant"):
                await self._check_storage(kind, tenant_id, user_id)
        except QuotaExceededError as error:
            await self.record(error, tenant_id, user_id)
            raise

    async def usage(
        self,
        tenant_id: str,
        user_id: str,
        count: Callable[[str, str | None], Awaitable[int]],
    ) -> dict[str, Any]:
        """The quotas of ``user_id`` of ``tenant_id`` and of its tenant, each with what it
        has used of those counted from the database (tokens and dollars today, sessions,
        storage in MiB), and where requests and runs are counted (``counting``)."""
        out: dict[str, Any] = {"counting": "shared" if self.shared else "per_process"}
        subjects: tuple[tuple[Kind, str, str | None], ...] = (
            ("user", user_id, user_id),
            ("tenant", tenant_id, None),
        )
        for kind, ident, of_user in subjects:
            spent = await self._spent_today(kind, tenant_id, of_user)
            out[kind] = {
                "scope": f"{kind}:{ident}",
                "limits": self.settings.limits(kind, ident).model_dump(),
                "used": {
                    "tokens_per_day": spent.tokens,
                    "cost_usd_per_day": round(spent.cost_usd, 6),
                    "max_sessions": await count(tenant_id, of_user),
                    "storage_mb": round(await self.storage_used_mb(tenant_id, of_user), 3),
                },
            }
        return out

    async def storage_used_mb(self, tenant_id: str, user_id: str | None = None) -> float:
        """MiB the log holds of the sessions not deleted of ``user_id`` of ``tenant_id``
        (of the whole tenant when ``user_id`` is None); 0 without a database."""
        if self._storage is None:
            return 0.0
        return await self._storage.bytes_of(tenant_id, user_id) / _MIB

    async def _check_storage(self, kind: Kind, tenant_id: str, user_id: str) -> None:
        ident = user_id if kind == "user" else tenant_id
        limit = self.settings.limits(kind, ident).storage_mb
        if limit is None or self._storage is None:
            return
        used = await self.storage_used_mb(tenant_id, user_id if kind == "user" else None)
        if used >= limit:
            raise QuotaExceededError(
                "storage_mb",
                f"{kind}:{ident}",
                limit=limit,
                used=round(used, 3),
                retry_after=STORAGE_RETRY_SECS,
                hint="delete sessions no longer needed to make room (DELETE "
                "/v1/sessions/ID; GET /v1/sessions lists them)",
            )

    async def _check_spending(self, kind: Kind, tenant_id: str, user_id: str) -> None:
        ident = user_id if kind == "user" else tenant_id
        limits = self.settings.limits(kind, ident)
        tokens, dollars = limits.tokens_per_day, limits.cost_usd_per_day
        if tokens is None and dollars is None:
            return
        spent = await self._spent_today(kind, tenant_id, user_id if kind == "user" else None)
        now = self._clock.now()
        midnight = start_of_day(now) + timedelta(days=1)
        wait = (midnight - now).total_seconds()
        scope = f"{kind}:{ident}"
        if tokens is not None and spent.tokens >= tokens:
            raise QuotaExceededError(
                "tokens_per_day", scope, limit=tokens, used=spent.tokens, retry_after=wait
            )
        if dollars is not None and spent.cost_usd >= dollars:
            raise QuotaExceededError(
                "cost_usd_per_day",
                scope,
                limit=dollars,
                used=round(spent.cost_usd, 6),
                retry_after=wait,
            )

    async def _spent_today(self, kind: Kind, tenant_id: str, user_id: str | None) -> Spent:
        """What the subject's model calls used since midnight UTC: its running total, brought
        up to date with the ``llm_result`` events after the last one counted."""
        day = start_of_day(self._clock.now())
        key = (kind, tenant_id, user_id)
        tally = self._tallies.get(key)
        if tally is None or tally.day != day:
            if len(self._tallies) >= _MAX_SUBJECTS:
                self._tallies = {k: t for k, t in self._tallies.items() if t.day == day}
            tally = self._tallies[key] = _Tally(day, Spent(), 0)
        wanted = EventFilter(
            types=frozenset({"llm_result"}), tenant_id=tenant_id, user_id=user_id, since=day
        )
        while True:
            page = await self._store.read_all(wanted, from_position=tally.position, limit=1000)
            for event in page:
                if isinstance(event, LlmResultEvent):
                    tally.spent.add(event.data.usage.total_tokens, event.data.cost_usd)
            if page:
                tally.position = page[-1].position
            if len(page) < 1000:
                return tally.spent

    async def record(
        self, error: QuotaExceededError, tenant_id: str | None, user_id: str | None
    ) -> None:
        """Write a ``quota_exceeded`` event for ``error``, unless one of the same quota and
        subject was written within the last minute (then it is counted for the next one). A
        record that cannot be written is logged; the refusal stands either way."""
        now = self._seconds()
        key = (error.quota, error.scope)
        seen = self._refusals.get(key)
        if seen is None:
            if len(self._refusals) >= _MAX_SUBJECTS:
                self._forget(now)
            seen = self._refusals[key] = _Refusals(now, 0, 0)
        if now - seen.window_start >= RECORD_WINDOW_SECS:
            seen.window_start, seen.in_window = now, 0
        seen.in_window += 1
        seen.unrecorded += 1
        if seen.in_window > 1:
            return
        count, seen.unrecorded = seen.unrecorded, 0
        event = QuotaExceededEvent(
            stream=AUDIT_STREAM,
            tenant_id=tenant_id,
            user_id=user_id,
            data=QuotaExceeded(
                quota=error.quota,
                scope=error.scope,
                limit=error.limit,
                used=error.used,
                retry_after=error.retry_after,
                count=count,
            ),
        )
        try:
            await self._bus.publish(event)
        except PromptLineError as exc:
            _log.error("could not record quota_exceeded %s: %s", event.id, exc.message)

    def _forget(self, now: float) -> None:
        stale = [k for k, r in self._refusals.items() if now - r.window_start >= 60.0]
        for key in stale or list(self._refusals)[: _MAX_SUBJECTS // 10]:
            del self._refusals[key]


def counted_in_database(database: str | AsyncEngine) -> bool:
    """True when the quotas of processes on ``database`` (a URL or an engine) count
    requests per minute and concurrent runs in it, shared: on PostgreSQL, not on SQLite."""
    return not is_sqlite(database)


def counting_mode(*, shared: bool) -> str:
    """Where requests per minute and concurrent runs are counted, in words."""
    if shared:
        return (
            "shared: requests per minute and concurrent runs are counted in the PostgreSQL "
            "database, across every process on it"
        )
    return (
        "per process: requests per minute and concurrent runs are counted in memory "
        "(SQLite serves one process)"
    )


def _run_subject(tenant_id: str, user_id: str | None) -> str:
    """The key of the runs of a user of a tenant (of the whole tenant for None)."""
    if user_id is None:
        return join_key("tenant", tenant_id)
    return join_key("user", tenant_id, user_id)


def _check_slots(slots: Iterable[RunSlot], used: Callable[[RunSlot], int]) -> None:
    """`QuotaExceededError` for the first slot whose ``used`` runs reach its limit."""
    for slot in slots:
        now = used(slot)
        if slot.limit is not None and now >= slot.limit:
            raise QuotaExceededError(
                "concurrent_runs",
                slot.scope,
                limit=slot.limit,
                used=now,
                retry_after=CONCURRENCY_RETRY_SECS,
            )
