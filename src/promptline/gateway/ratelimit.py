"""Requests per minute per API key: a token bucket for each key, in the process."""

from __future__ import annotations

import time
from collections.abc import Callable

from promptline.core.errors import RateLimitedError

__all__ = ["RateLimiter"]


class RateLimiter:
    """``per_minute`` requests a minute per key, with bursts up to the same number."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> None:
        """Count one request of ``key``; `RateLimitedError` when its bucket is empty."""
        now = self._clock()
        tokens, last = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            raise RateLimitedError(
                f"too many requests: at most {round(self.capacity)} a minute for this key",
                retry_after=(1.0 - tokens) / self.rate,
            )
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > 100_000:  # forget idle keys rather than grow without bound
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 60}
