"""Per-deployment limits: concurrent calls, requests per minute and tokens per minute."""

from __future__ import annotations

from typing import Literal

import orjson

from promptline.core.clock import Clock
from promptline.core.errors import ConfigError
from promptline.core.messages import FilePart, ImagePart, TextPart
from promptline.models.types import ModelRequest

__all__ = ["DeploymentLimits", "LimitLease", "LimitReason", "TokenBucket", "estimate_tokens"]

LimitReason = Literal["concurrency", "rpm", "tpm"]

_CHARS_PER_TOKEN = 4
_TOKENS_PER_MESSAGE = 4
# A high-detail 1024x1024 image on OpenAI models; other providers are in the same range.
_TOKENS_PER_IMAGE = 765
_TOKENS_PER_FILE = 1000


def estimate_prompt_tokens(request: ModelRequest) -> int:
    """A rough count of the tokens ``request`` sends (about four characters a token).

    Good enough for admission decisions (limits, context window, cost ceiling); the real
    figure arrives with the answer's usage.
    """
    chars = 0
    tokens = 0
    for message in request.messages:
        tokens += _TOKENS_PER_MESSAGE
        for part in message.content:
            if isinstance(part, TextPart):
                chars += len(part.text)
            elif isinstance(part, ImagePart):
                tokens += _TOKENS_PER_IMAGE
            elif isinstance(part, FilePart):
                tokens += _TOKENS_PER_FILE
        for call in message.tool_calls:
            chars += len(call.name) + len(orjson.dumps(call.arguments))
    for spec in request.tools:
        chars += len(spec.name) + len(spec.description) + len(orjson.dumps(spec.parameters))
    return tokens + -(-chars // _CHARS_PER_TOKEN)


def estimate_tokens(request: ModelRequest) -> int:
    """Tokens charged to a tokens-per-minute budget before the call: the prompt estimate plus
    ``max_tokens`` when the request caps its answer."""
    return estimate_prompt_tokens(request) + (request.max_tokens or 0)


class TokenBucket:
    """``capacity`` units refilled evenly over ``per_seconds``; starts full.

    The level may go below zero when a correction (real usage larger than the estimate) is
    charged after the fact; new calls then wait until it has refilled.
    """

    __slots__ = ("_capacity", "_clock", "_level", "_rate", "_updated")

    def __init__(self, capacity: float, clock: Clock, *, per_seconds: float = 60.0) -> None:
        """A full bucket."""
        if capacity <= 0 or per_seconds <= 0:
            raise ConfigError(
                f"a rate limit needs a positive amount and period, got {capacity}/{per_seconds}s",
                hint="set rpm / tpm to a positive number, or leave it unset for no limit",
            )
        self._capacity = float(capacity)
        self._rate = capacity / per_seconds
        self._clock = clock
        self._level = float(capacity)
        self._updated = clock.now().timestamp()

    @property
    def capacity(self) -> float:
        """The most the bucket holds."""
        return self._capacity

    def level(self) -> float:
        """Units available now."""
        now = self._clock.now().timestamp()
        elapsed = now - self._updated
        if elapsed > 0:
            self._level = min(self._capacity, self._level + elapsed * self._rate)
        self._updated = now
        return self._level

    def wait_time(self, amount: float) -> float:
        """Seconds until ``amount`` can be taken (0 if now). An amount above the capacity
        only needs a full bucket, or it could never pass."""
        need = min(amount, self._capacity) - self.level()
        return 0.0 if need <= 0 else need / self._rate

    def take(self, amount: float) -> None:
        """Remove ``amount`` (callers check `wait_time` first)."""
        self._level = self.level() - min(amount, self._capacity)

    def adjust(self, delta: float) -> None:
        """Charge ``delta`` more (or give back a negative ``delta``) after the fact."""
        self._level = min(self._capacity, self.level() - delta)


class LimitLease:
    """What one admitted call holds; `release` it exactly once, with the real token count."""

    __slots__ = ("_charged", "_limits", "_released")

    def __init__(self, limits: DeploymentLimits, charged: int) -> None:
        self._limits = limits
        self._charged = charged
        self._released = False

    def release(self, actual_tokens: int | None = None) -> None:
        """Free the concurrency slot; correct the token budget when usage is known."""
        if self._released:
            return
        self._released = True
        self._limits._in_flight -= 1
        if actual_tokens is not None and self._limits._tpm is not None:
            self._limits._tpm.adjust(actual_tokens - self._charged)


class DeploymentLimits:
    """Admission control for one deployment: at most ``max_concurrency`` calls at once, and
    ``rpm`` requests and ``tpm`` tokens per minute as token buckets on the injected clock.

    Tokens are estimated from the request on admission and corrected from usage on release.
    ``None`` means no limit of that kind.
    """

    __slots__ = ("_in_flight", "_max_concurrency", "_rpm", "_tpm")

    def __init__(
        self,
        clock: Clock,
        *,
        max_concurrency: int | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
    ) -> None:
        """Limits with nothing in flight and full budgets."""
        if max_concurrency is not None and max_concurrency < 1:
            raise ConfigError(
                f"max_concurrency must be at least 1, got {max_concurrency}",
                hint="leave it unset for no limit",
            )
        self._max_concurrency = max_concurrency
        self._rpm = TokenBucket(rpm, clock) if rpm is not None else None
        self._tpm = TokenBucket(tpm, clock) if tpm is not None else None
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        """Calls admitted and not yet released."""
        return self._in_flight

    def blocked_by(self, tokens: int) -> LimitReason | None:
        """Which limit keeps a call of ``tokens`` from starting now, if any."""
        if self._max_concurrency is not None and self._in_flight >= self._max_concurrency:
            return "concurrency"
        if self._rpm is not None and self._rpm.wait_time(1) > 0:
            return "rpm"
        if self._tpm is not None and self._tpm.wait_time(tokens) > 0:
            return "tpm"
        return None

    def wait_time(self, tokens: int) -> float:
        """Seconds until the rate budgets admit a call of ``tokens`` (concurrency aside)."""
        waits = [0.0]
        if self._rpm is not None:
            waits.append(self._rpm.wait_time(1))
        if self._tpm is not None:
            waits.append(self._tpm.wait_time(tokens))
        return max(waits)

    def acquire(self, tokens: int) -> LimitLease:
        """Admit a call of ``tokens`` (callers check `blocked_by` first)."""
        self._in_flight += 1
        if self._rpm is not None:
            self._rpm.take(1)
        if self._tpm is not None:
            tokens = min(tokens, int(self._tpm.capacity))
            self._tpm.take(tokens)
        return LimitLease(self, tokens)
