"""Quotas per tenant and per user (``quotas:``): `Quotas` counts what each user and each
tenant does and refuses what goes past a quota with `QuotaExceededError` (HTTP 429).

Requests per minute are token buckets (the rate limiter's), one per user (in its tenant)
and one per tenant, counted in each process.

Each refusal is recorded as a ``quota_exceeded`` event, at most once a minute per quota and
subject: the first refusal in a minute is recorded at once, the refusals after it in that
minute are carried by the subject's next record as its ``count``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from promptline.core.errors import PromptLineError, QuotaExceededError
from promptline.core.events import QuotaExceeded, QuotaExceededEvent
from promptline.core.keys import join_key
from promptline.gateway.ratelimit import RateLimiter
from promptline.security.audit import AUDIT_STREAM

if TYPE_CHECKING:
    from promptline.config.settings import QuotasSettings
    from promptline.core.clock import Clock
    from promptline.events.protocols import EventBus
    from promptline.security.auth import Caller

__all__ = ["RECORD_WINDOW_SECS", "Quotas"]

RECORD_WINDOW_SECS = 60.0
"""The refusals of one quota and subject are recorded at most once per this many seconds."""

_MAX_SUBJECTS = 10_000
_log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Refusals:
    window_start: float
    in_window: int
    unrecorded: int


class Quotas:
    """The quotas of ``settings``, counted against ``clock``; refusals go to ``bus``."""

    def __init__(self, settings: QuotasSettings, bus: EventBus, *, clock: Clock) -> None:
        self.settings = settings
        self._bus = bus
        self._clock = clock
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
                await self.record(error, caller)
                raise error

    async def record(self, error: QuotaExceededError, caller: Caller) -> None:
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
            tenant_id=caller.tenant_id,
            user_id=caller.user_id,
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
