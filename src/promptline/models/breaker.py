"""A circuit breaker per deployment: take a failing endpoint out, probe it back in later."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from promptline.core.clock import Clock
from promptline.core.errors import ConfigError

__all__ = ["BreakerPolicy", "BreakerState", "CircuitBreaker"]


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """Open after ``failure_threshold`` consecutive failures; probe after ``cooldown_secs``."""

    failure_threshold: int = 5
    cooldown_secs: float = 30.0

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ConfigError(
                f"breaker.failure_threshold must be at least 1, got {self.failure_threshold}",
                hint="the number of consecutive failures that takes a deployment out, such as 5",
            )
        if self.cooldown_secs < 0:
            raise ConfigError(
                f"breaker.cooldown_secs must not be negative, got {self.cooldown_secs}",
                hint="seconds before a failed deployment is probed again, such as 30",
            )


class BreakerState(StrEnum):
    """``closed``: calls flow. ``open``: calls are refused. ``half_open``: one probe may go."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """closed -> open after N consecutive failures -> half-open after the cool-down (one probe)
    -> closed on the probe's success, or open again (a new cool-down) on its failure.

    Time comes from the injected `Clock`, so tests move a ``ManualClock`` instead of sleeping.
    Callers ask `available`, then `begin` a call and end it with exactly one of
    `record_success`, `record_failure` or `release` (the call said nothing about health, for
    example it was cancelled or the request itself was rejected).
    """

    __slots__ = ("_clock", "_failures", "_opened_at", "_policy", "_probing")

    def __init__(self, policy: BreakerPolicy, clock: Clock) -> None:
        """A closed breaker."""
        self._policy = policy
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    def _now(self) -> float:
        return self._clock.now().timestamp()

    @property
    def state(self) -> BreakerState:
        """The state now (an open breaker whose cool-down is over reads as half-open)."""
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._now() - self._opened_at >= self._policy.cooldown_secs:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    @property
    def consecutive_failures(self) -> int:
        """Failures since the last success."""
        return self._failures

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when it would now)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self._policy.cooldown_secs - self._now())

    def available(self) -> bool:
        """Whether a call may start now (half-open: only while no probe is under way)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        return state is BreakerState.HALF_OPEN and not self._probing

    def begin(self) -> None:
        """A call starts; in the half-open state it is the one probe."""
        if self.state is BreakerState.HALF_OPEN:
            self._probing = True

    def record_success(self) -> None:
        """A call succeeded: the deployment is healthy, close the breaker."""
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def record_failure(self) -> None:
        """A call failed in a way that says the deployment is unhealthy."""
        self._failures += 1
        if self._probing:
            # The probe failed: out again for a whole new cool-down.
            self._probing = False
            self._opened_at = self._now()
        elif self._opened_at is None and self._failures >= self._policy.failure_threshold:
            self._opened_at = self._now()

    def release(self) -> None:
        """A call ended without telling anything about health; a probe slot is freed."""
        self._probing = False
