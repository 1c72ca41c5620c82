"""Quotas per tenant and per user (``quotas:``): `Quotas` counts what each user and each
tenant does and refuses what goes past a quota with `QuotaExceededError` (HTTP 429).

Requests per minute are token buckets (the rate limiter's), one per user (in its tenant)
and one per tenant, counted in each process.

Tokens and dollars per day are checked as a message is taken (`Runtime.submit`), against what
the log's ``llm_result`` events of the user (or tenant) since midnight UTC used: a running
total per subject, read from the log at the subject's first check of the day, then brought
up to date at each check by reading only the events after the last one counted (the log is
the source, so processes sharing a database share the totals). Concurrent runs are the runs
of the user (or tenant) this process has not ended, counted as a message is taken. Sessions
are the user's (or tenant's) sessions neither deleted nor expired, counted in the database as
one is created.

Each refusal is recorded as a ``quota_exceeded`` event, at most once a minute per quota and
subject: the first refusal in a minute is recorded at once, the refusals after it in that
minute are carried by the subject's next record as its ``count``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from promptline.core.errors import PromptLineError, QuotaExceededError
from promptline.core.events import LlmResultEvent, QuotaExceeded, QuotaExceededEvent
from promptline.core.keys import join_key
from promptline.events.protocols import EventFilter
from promptline.gateway.ratelimit import RateLimiter
from promptline.runtime.budget import Spent, start_of_day
from promptline.security.audit import AUDIT_STREAM

if TYPE_CHECKING:
    from promptline.config.settings import QuotasSettings
    from promptline.core.clock import Clock
    from promptline.events.protocols import EventBus, EventStore
    from promptline.runtime.run import Run
    from promptline.security.auth import Caller

__all__ = ["CONCURRENCY_RETRY_SECS", "RECORD_WINDOW_SECS", "SESSIONS_RETRY_SECS", "Quotas"]

SESSIONS_RETRY_SECS = 60.0
"""The Retry-After of a session refused for ``max_sessions``: sessions end when they are
deleted or expire."""

CONCURRENCY_RETRY_SECS = 5.0
"""The Retry-After of a message refused for ``concurrent_runs``: runs end at no known time."""

RECORD_WINDOW_SECS = 60.0
"""The refusals of one quota and subject are recorded at most once per this many seconds."""

_MAX_SUBJECTS = 10_000
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
    """The quotas of ``settings``, counted against ``clock``; refusals go to ``bus``."""

    def __init__(
        self, settings: QuotasSettings, bus: EventBus, *, store: EventStore, clock: Clock
    ) -> None:
        self.settings = settings
        self._bus = bus
        self._store = store
        self._clock = clock
        self._tallies: dict[tuple[Kind, str, str | None], _Tally] = {}
        self._limiters: dict[int, RateLimiter] = {}
        self._refusals: dict[tuple[str, str], _Refusals] = {}

    def _seconds(self) -> float:
        return self._clock.now().timestamp()

    async def take_request(self, caller: Caller) -> None:
        """Count one request of ``caller`` against the requests per minute of its user and
        of its tenant; `QuotaExceededError` (recorded) when either is used up."""
        subjects: tuple[tuple[Literal["user", "tenant"], str, str], ...] = (
            ("user", caller.user_id, join_key("user", caller.tenant_id, caller.user_id)),
            ("tenant", caller.tenant_id, join_key("tenant", caller.tenant_id)),
        )
        for kind, ident, bucket in subjects:
            limits = self.settings.limits(kind, ident)
            per_minute = limits.requests_per_minute
            if per_minute is None:
                continue
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

    async def admit_run(self, tenant_id: str, user_id: str, runs: Iterable[Run]) -> None:
        """Check a message of ``user_id`` of ``tenant_id`` against the concurrent runs
        (``runs``: those not ended), tokens and dollars per day of the user and of its
        tenant; `QuotaExceededError` (recorded) for the first used up."""
        try:
            self._check_concurrency(tenant_id, user_id, runs)
            for kind in ("user", "tenant"):
                await self._check_spending(kind, tenant_id, user_id)
        except QuotaExceededError as error:
            await self.record(error, tenant_id, user_id)
            raise

    async def admit_session(
        self,
        tenant_id: str,
        user_id: str,
        count: Callable[[str, str | None], Awaitable[int]],
    ) -> None:
        """Check a new session of ``user_id`` of ``tenant_id`` against the ``max_sessions``
        of the user and of its tenant (``count(tenant_id, user_id or None)``: their sessions
        now); `QuotaExceededError` (recorded) for the first used up."""
        subjects: tuple[tuple[Kind, str, str | None], ...] = (
            ("user", user_id, user_id),
            ("tenant", tenant_id, None),
        )
        for kind, ident, of_user in subjects:
            limit = self.settings.limits(kind, ident).max_sessions
            if limit is None:
                continue
            used = await count(tenant_id, of_user)
            if used >= limit:
                error = QuotaExceededError(
                    "max_sessions",
                    f"{kind}:{ident}",
                    limit=limit,
                    used=used,
                    retry_after=SESSIONS_RETRY_SECS,
                )
                await self.record(error, tenant_id, user_id)
                raise error

    def _check_concurrency(self, tenant_id: str, user_id: str, runs: Iterable[Run]) -> None:
        user_limit = self.settings.limits("user", user_id).concurrent_runs
        tenant_limit = self.settings.limits("tenant", tenant_id).concurrent_runs
        if user_limit is None and tenant_limit is None:
            return
        of_tenant = [r.envelope for r in runs if not r.done]
        of_tenant = [e for e in of_tenant if e.get("tenant_id") == tenant_id]
        of_user = [e for e in of_tenant if e.get("user_id") == user_id]
        for scope, limit, used in (
            (f"user:{user_id}", user_limit, len(of_user)),
            (f"tenant:{tenant_id}", tenant_limit, len(of_tenant)),
        ):
            if limit is not None and used >= limit:
                raise QuotaExceededError(
                    "concurrent_runs",
                    scope,
                    limit=limit,
                    used=used,
                    retry_after=CONCURRENCY_RETRY_SECS,
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
