"""Requests per minute per API key: a token bucket for each key, in the process."""

from __future__ import annotations

import time
from collections.abc import Callable

from promptline.core.errors import RateLimitedError
from promptline.core.keys import join_key
from promptline.security.auth import Caller

__all__ = ["RateLimiter", "bucket_of"]


def bucket_of(caller: Caller) -> str:
    """The bucket a caller's requests count in: its API key's, or (a caller without a key)
    its user's in its tenant. The ids are escaped, so no two callers ever share a bucket."""
    if caller.key_id is not None:
        return join_key("key", caller.key_id)
    return join_key("user", caller.tenant_id, caller.user_id)


class RateLimiter:
    """``per_minute`` requests a minute per key, with bursts up to the same number."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def take_for(self, caller: Caller) -> None:
        """Count one request of ``caller`` in its bucket (see `bucket_of`)."""
        self.take(bucket_of(caller))

    def take(self, key: str) -> None:
        """Count one request of ``key``; `RateLimitedError` when its bucket is empty."""
        wait = self.try_take(key)
        if wait > 0:
            raise RateLimitedError(
                f"too many requests: at most {round(self.capacity)} a minute for this key",
                retry_after=wait,
            )

    def try_take(self, key: str) -> float:
        """Count one request of ``key`` and return 0, or (its bucket empty) count nothing and
        return the seconds until the bucket holds a request again."""
        now = self._clock()
        tokens, last = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > 100_000:  # forget idle keys rather than grow without bound
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 60}
        return 0.0
