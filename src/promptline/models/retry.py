"""How the router waits between tries: exponential backoff with jitter, honouring Retry-After."""

from __future__ import annotations

import random
from dataclasses import dataclass

from promptline.core.errors import ConfigError, ProviderError, ProviderRateLimited

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Tries per model and the waits between them.

    ``max_attempts`` is the number of calls one request makes to one model (over all of its
    deployments) before the router falls back to the next model. The n-th backoff waits
    ``base_delay * 2**n`` seconds, spread by ``±jitter`` (a fraction) so that many clients do
    not retry in step, and never more than ``max_delay``.
    """

    max_attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 20.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(
                f"retry.max_attempts must be at least 1, got {self.max_attempts}",
                hint="use 1 to disable retries",
            )
        if self.base_delay < 0 or self.max_delay < 0:
            raise ConfigError(
                "retry.base_delay and retry.max_delay must not be negative",
                hint="give delays in seconds, such as base_delay=0.5 and max_delay=20",
                base_delay=self.base_delay,
                max_delay=self.max_delay,
            )
        if not 0 <= self.jitter <= 1:
            raise ConfigError(
                f"retry.jitter must be between 0 and 1, got {self.jitter}",
                hint="jitter is a fraction of the delay, such as 0.2 for ±20%",
            )

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Seconds to wait before backoff number ``retry`` (0 for the first one)."""
        delay = min(self.max_delay, self.base_delay * 2.0**retry)
        if self.jitter:
            delay *= 1.0 + rng.uniform(-self.jitter, self.jitter)
        return max(0.0, min(self.max_delay, delay))

    def delay_after(self, error: ProviderError, retry: int, rng: random.Random) -> float:
        """Seconds to wait after ``error`` before the same deployment is called again.

        A provider's Retry-After wins over the computed backoff (it knows when it will take
        requests again), capped by ``max_delay`` so that one answer cannot stall a request.
        """
        if isinstance(error, ProviderRateLimited) and error.retry_after is not None:
            return max(0.0, min(self.max_delay, error.retry_after))
        return self.backoff(retry, rng)
