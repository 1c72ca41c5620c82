"""Load-balancing strategies: round-robin, least-in-flight, smooth weighted round-robin."""

from __future__ import annotations

from collections import Counter

import pytest

from promptline.core.errors import ConfigError
from promptline.models.balancer import LoadBalancer


def test_round_robin_takes_each_in_turn() -> None:
    balancer = LoadBalancer("round_robin", [1, 1, 1])
    picks = [balancer.pick([0, 1, 2], [0, 0, 0]) for _ in range(6)]
    assert picks == [0, 1, 2, 0, 1, 2]


def test_round_robin_skips_ineligible_deployments() -> None:
    balancer = LoadBalancer("round_robin", [1, 1, 1])
    picks = [balancer.pick([0, 2], [0, 0, 0]) for _ in range(4)]
    assert picks == [0, 2, 0, 2]


def test_pick_returns_none_when_nothing_is_eligible() -> None:
    for strategy in ("round_robin", "least_in_flight", "weighted"):
        assert LoadBalancer(strategy, [1, 1]).pick([], [0, 0]) is None


def test_least_in_flight_prefers_the_idlest() -> None:
    balancer = LoadBalancer("least_in_flight", [1, 1, 1])
    assert balancer.pick([0, 1, 2], [3, 1, 2]) == 1
    assert balancer.pick([0, 2], [3, 1, 2]) == 2


def test_least_in_flight_rotates_among_ties() -> None:
    balancer = LoadBalancer("least_in_flight", [1, 1, 1])
    picks = [balancer.pick([0, 1, 2], [0, 0, 0]) for _ in range(3)]
    assert sorted(picks) == [0, 1, 2]


def test_weighted_spreads_1000_picks_within_5_percent_of_weights() -> None:
    weights = [5.0, 3.0, 2.0]
    balancer = LoadBalancer("weighted", weights)
    counts = Counter(balancer.pick([0, 1, 2], [0, 0, 0]) for _ in range(1000))
    for index, weight in enumerate(weights):
        expected = 1000 * weight / sum(weights)
        assert abs(counts[index] - expected) <= 0.05 * expected


def test_weighted_interleaves_rather_than_bursting() -> None:
    balancer = LoadBalancer("weighted", [2.0, 1.0])
    picks = [balancer.pick([0, 1], [0, 0]) for _ in range(6)]
    assert picks == [0, 1, 0, 0, 1, 0]


def test_weighted_shares_among_the_eligible_only() -> None:
    balancer = LoadBalancer("weighted", [1.0, 1.0, 2.0])
    counts = Counter(balancer.pick([0, 2], [0, 0, 0]) for _ in range(300))
    assert counts == {2: 200, 0: 100}


@pytest.mark.parametrize(
    ("strategy", "weights"),
    [("random", [1.0]), ("round_robin", []), ("weighted", [1.0, 0.0]), ("weighted", [-1.0])],
)
def test_balancer_rejects_bad_configuration(strategy: str, weights: list[float]) -> None:
    with pytest.raises(ConfigError) as info:
        LoadBalancer(strategy, weights)  # type: ignore[arg-type]
    assert info.value.hint
