"""How long to wait between reconnection attempts: exponential, capped, with jitter, and a
bounded number of tries."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """``attempts`` tries; the first waits ``initial`` seconds, each next one ``factor`` times
    longer, never more than ``maximum``; each wait is shortened by up to ``jitter`` (a
    fraction) so that many clients cut at once do not come back at once."""

    attempts: int = 8
    initial: float = 0.1
    factor: float = 2.0
    maximum: float = 5.0
    jitter: float = 0.5

    def delays(self) -> Iterator[float]:
        """The wait before each attempt."""
        delay = self.initial
        for _ in range(self.attempts):
            yield delay * (1 - self.jitter * random.random())
            delay = min(self.maximum, delay * self.factor)
