"""Load balancing across the deployments of one model: round-robin, least-in-flight, weighted."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

from promptline.core.errors import ConfigError

__all__ = ["LoadBalancer", "Strategy"]

Strategy = Literal["round_robin", "least_in_flight", "weighted"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)


class LoadBalancer:
    """Chooses one deployment (by index) among those that may take a call now.

    - ``round_robin``: each in turn, skipping the ones that cannot take a call.
    - ``least_in_flight``: the one with the fewest calls under way; ties go round-robin, so
      sequential traffic still spreads.
    - ``weighted``: smooth weighted round-robin (as in nginx): over any window each
      deployment gets its weight's share, interleaved rather than in bursts, and without
      randomness, so the spread is exact instead of only likely.

    The balancer only holds the rotation state; which deployments are eligible (breaker,
    limits) and how busy they are is the caller's knowledge, passed to `pick`.
    """

    __slots__ = ("_current", "_cursor", "_strategy", "_weights")

    def __init__(self, strategy: Strategy, weights: Sequence[float]) -> None:
        """A balancer over ``len(weights)`` deployments."""
        if strategy not in STRATEGIES:
            raise ConfigError(
                f"unknown load-balancing strategy {strategy!r}",
                hint=f"use one of: {', '.join(STRATEGIES)}",
            )
        if not weights:
            raise ConfigError(
                "a model group needs at least one deployment", hint="add a deployment"
            )
        for weight in weights:
            if not weight > 0:
                raise ConfigError(
                    f"deployment weights must be positive, got {weight}",
                    hint="give every deployment a weight above 0 (the default is 1)",
                )
        self._strategy: Strategy = strategy
        self._weights = [float(w) for w in weights]
        self._current = [0.0] * len(weights)
        self._cursor = 0

    @property
    def strategy(self) -> Strategy:
        """The strategy in use."""
        return self._strategy

    def pick(self, eligible: Sequence[int], in_flight: Sequence[int]) -> int | None:
        """The index to call among ``eligible`` (None if it is empty). ``in_flight[i]`` is the
        number of calls under way on deployment ``i``."""
        if not eligible:
            return None
        if self._strategy == "weighted":
            return self._pick_weighted(eligible)
        if self._strategy == "least_in_flight":
            fewest = min(in_flight[i] for i in eligible)
            eligible = [i for i in eligible if in_flight[i] == fewest]
        return self._pick_round_robin(eligible)

    def _pick_round_robin(self, eligible: Sequence[int]) -> int:
        size = len(self._weights)
        chosen = min(eligible, key=lambda i: (i - self._cursor) % size)
        self._cursor = (chosen + 1) % size
        return chosen

    def _pick_weighted(self, eligible: Sequence[int]) -> int:
        total = 0.0
        best = eligible[0]
        for i in eligible:
            self._current[i] += self._weights[i]
            total += self._weights[i]
            if self._current[i] > self._current[best]:
                best = i
        self._current[best] -= total
        return best
