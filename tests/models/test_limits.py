"""Per-deployment limits: token buckets on a manual clock, concurrency, token estimates."""

from __future__ import annotations

import pytest

from promptline.core.clock import ManualClock
from promptline.core.errors import ConfigError
from promptline.core.messages import ImagePart, Message, TextPart
from promptline.models.limits import (
    DeploymentLimits,
    TokenBucket,
    estimate_prompt_tokens,
    estimate_tokens,
)
from promptline.models.types import ModelRequest, ToolSpec


def test_token_bucket_starts_full_and_refills_evenly() -> None:
    clock = ManualClock()
    bucket = TokenBucket(60, clock)  # one a second
    bucket.take(60)
    assert bucket.wait_time(1) == pytest.approx(1.0)
    clock.advance(0.5)
    assert bucket.level() == pytest.approx(0.5)
    clock.advance(120)
    assert bucket.level() == pytest.approx(60)  # never above capacity


def test_token_bucket_amount_above_capacity_needs_only_a_full_bucket() -> None:
    clock = ManualClock()
    bucket = TokenBucket(100, clock)
    assert bucket.wait_time(500) == 0
    bucket.take(500)
    assert bucket.level() == pytest.approx(0)


def test_token_bucket_adjust_charges_after_the_fact_and_gives_back() -> None:
    clock = ManualClock()
    bucket = TokenBucket(100, clock)
    bucket.take(50)
    bucket.adjust(80)  # real usage was 80 more
    assert bucket.level() == pytest.approx(-30)
    assert bucket.wait_time(1) == pytest.approx(31 * 60 / 100)
    bucket.adjust(-1000)
    assert bucket.level() == pytest.approx(100)


def test_limits_concurrency_blocks_until_released() -> None:
    limits = DeploymentLimits(ManualClock(), max_concurrency=2)
    first = limits.acquire(10)
    limits.acquire(10)
    assert limits.blocked_by(10) == "concurrency"
    assert limits.in_flight == 2
    first.release()
    first.release()  # idempotent
    assert limits.in_flight == 1
    assert limits.blocked_by(10) is None


def test_limits_rpm_blocks_then_refills_with_the_clock() -> None:
    clock = ManualClock()
    limits = DeploymentLimits(clock, rpm=2)
    limits.acquire(1).release()
    limits.acquire(1).release()
    assert limits.blocked_by(1) == "rpm"
    assert limits.wait_time(1) == pytest.approx(30)
    clock.advance(30)
    assert limits.blocked_by(1) is None


def test_limits_tpm_is_corrected_from_real_usage() -> None:
    clock = ManualClock()
    limits = DeploymentLimits(clock, tpm=1000)
    lease = limits.acquire(100)
    lease.release(actual_tokens=900)  # the estimate was far too low
    assert limits.blocked_by(200) == "tpm"
    assert limits.wait_time(200) == pytest.approx(100 * 60 / 1000)
    clock.advance(6)
    assert limits.blocked_by(200) is None


def test_limits_tpm_gives_back_an_overestimate() -> None:
    limits = DeploymentLimits(ManualClock(), tpm=1000)
    lease = limits.acquire(900)
    assert limits.blocked_by(200) == "tpm"
    lease.release(actual_tokens=100)
    assert limits.blocked_by(200) is None


@pytest.mark.parametrize(
    "kwargs", [{"max_concurrency": 0}, {"rpm": 0}, {"tpm": -5}], ids=["conc", "rpm", "tpm"]
)
def test_limits_reject_nonsense(kwargs: dict[str, int]) -> None:
    with pytest.raises(ConfigError) as info:
        DeploymentLimits(ManualClock(), **kwargs)
    assert info.value.hint


def test_estimate_counts_text_images_tools_and_max_tokens() -> None:
    text = ModelRequest(model="m", messages=[Message(role="user", content="x" * 400)])
    assert estimate_prompt_tokens(text) == 4 + 100
    with_image = ModelRequest(
        model="m",
        messages=[Message(role="user", content=[TextPart(text="hi"), ImagePart(url="u")])],
    )
    assert estimate_prompt_tokens(with_image) > 765
    with_tool = ModelRequest(
        model="m", messages=text.messages, tools=[ToolSpec(name="t", description="d" * 40)]
    )
    assert estimate_prompt_tokens(with_tool) > estimate_prompt_tokens(text) + 10
    capped = ModelRequest(model="m", messages=text.messages, max_tokens=50)
    assert estimate_tokens(capped) == estimate_prompt_tokens(text) + 50
