"""The circuit breaker: closed -> open -> half-open -> closed (or open again), on a manual clock."""

from __future__ import annotations

import pytest

from promptline.core.clock import ManualClock
from promptline.core.errors import ConfigError
from promptline.models.breaker import BreakerPolicy, BreakerState, CircuitBreaker


def _breaker(threshold: int = 3, cooldown: float = 30.0) -> tuple[CircuitBreaker, ManualClock]:
    clock = ManualClock()
    return CircuitBreaker(BreakerPolicy(threshold, cooldown), clock), clock


def _fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        breaker.begin()
        breaker.record_failure()


def test_breaker_stays_closed_below_threshold() -> None:
    breaker, _ = _breaker(threshold=3)
    _fail(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.available()
    assert breaker.consecutive_failures == 2


def test_breaker_opens_after_threshold_consecutive_failures() -> None:
    breaker, _ = _breaker(threshold=3, cooldown=30)
    _fail(breaker, 3)
    assert breaker.state is BreakerState.OPEN
    assert not breaker.available()
    assert breaker.retry_in() == pytest.approx(30)


def test_breaker_success_resets_the_consecutive_count() -> None:
    breaker, _ = _breaker(threshold=3)
    _fail(breaker, 2)
    breaker.begin()
    breaker.record_success()
    _fail(breaker, 2)
    assert breaker.state is BreakerState.CLOSED


def test_breaker_half_opens_after_cooldown_and_lets_one_probe_through() -> None:
    breaker, clock = _breaker(threshold=1, cooldown=30)
    _fail(breaker, 1)
    clock.advance(29.9)
    assert breaker.state is BreakerState.OPEN
    clock.advance(0.1)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.available()
    breaker.begin()
    assert not breaker.available()  # the probe is under way: nobody else


def test_breaker_probe_success_closes() -> None:
    breaker, clock = _breaker(threshold=1, cooldown=30)
    _fail(breaker, 1)
    clock.advance(30)
    breaker.begin()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 0


def test_breaker_probe_failure_reopens_for_a_new_cooldown() -> None:
    breaker, clock = _breaker(threshold=1, cooldown=30)
    _fail(breaker, 1)
    clock.advance(45)
    breaker.begin()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_in() == pytest.approx(30)
    clock.advance(30)
    assert breaker.state is BreakerState.HALF_OPEN


def test_breaker_released_probe_frees_the_probe_slot() -> None:
    breaker, clock = _breaker(threshold=1, cooldown=30)
    _fail(breaker, 1)
    clock.advance(30)
    breaker.begin()
    breaker.release()
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.available()


@pytest.mark.parametrize(("threshold", "cooldown"), [(0, 30.0), (3, -1.0)])
def test_breaker_policy_rejects_nonsense(threshold: int, cooldown: float) -> None:
    with pytest.raises(ConfigError) as info:
        BreakerPolicy(threshold, cooldown)
    assert info.value.hint
