"""The model router: choosing models by name, rule and capability; retries, fallback, breakers,
balancing, limits and the streaming failover rule. Providers here are small in-test
implementations of the `ModelProvider` protocol; one test at the end goes through real HTTP."""

from __future__ import annotations

import asyncio
import random
import re
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fakes.openai_server import FakeOpenAI, ServerError, TextReply, running_fake_openai
from promptline.core.clock import ManualClock
from promptline.core.errors import (
    CapabilityError,
    ConfigError,
    ModelNotFoundError,
    ProviderAuthError,
    ProviderBadResponse,
    ProviderError,
    ProviderRateLimited,
    ProviderRequestRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from promptline.core.messages import ImagePart, Message, TextPart, Usage
from promptline.models.breaker import BreakerPolicy, BreakerState
from promptline.models.capabilities import ModelCapabilities
from promptline.models.http import SharedHttpTransport
from promptline.models.openai_chat import OpenAIChatProvider
from promptline.models.retry import RetryPolicy
from promptline.models.router import (
    Deployment,
    ModelGroup,
    ModelRouter,
    RouterConfig,
    RouteRule,
)
from promptline.models.types import ModelRequest, ModelResponse, StreamDelta, ToolSpec

# --- a scriptable provider ------------------------------------------------------------------


@dataclass
class Gate:
    """An outcome that holds the call until the test opens it."""

    opened: asyncio.Event


@dataclass
class CutAfter:
    """A stream that yields ``deltas`` text pieces, then fails with ``error``."""

    deltas: int
    error: ProviderError


Outcome = str | ProviderError | Gate | CutAfter


class FakeProvider:
    """Answers ``ok`` (text ``from <name>``) unless an outcome was queued; records requests."""

    def __init__(self, name: str = "openai", *outcomes: Outcome, usage: Usage | None = None):
        self._name = name
        self.outcomes: deque[Outcome] = deque(outcomes)
        self.calls: list[ModelRequest] = []
        self.usage = usage or Usage(input_tokens=10, output_tokens=5)
        self.closed = 0
        self.called = asyncio.Event()

    @property
    def name(self) -> str:
        return self._name

    def _response(self, request: ModelRequest) -> ModelResponse:
        message = Message(role="assistant", content=f"from {self._name}")
        return ModelResponse(
            message=message, model=request.model, provider=self._name, usage=self.usage
        )

    async def _outcome(self, request: ModelRequest) -> Outcome:
        self.calls.append(request)
        self.called.set()
        outcome = self.outcomes.popleft() if self.outcomes else "ok"
        if isinstance(outcome, Gate):
            await outcome.opened.wait()
        if isinstance(outcome, ProviderError):
            raise outcome
        return outcome

    async def complete(self, request: ModelRequest) -> ModelResponse:
        await self._outcome(request)
        return self._response(request)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamDelta | ModelResponse]:
        outcome = await self._outcome(request)
        text = f"from {self._name}"
        pieces = [text[:4], text[4:]]
        if isinstance(outcome, CutAfter):
            for piece in pieces[: outcome.deltas]:
                yield StreamDelta(text=piece)
            raise outcome.error
        for piece in pieces:
            yield StreamDelta(text=piece)
        yield self._response(request)

    async def aclose(self) -> None:
        self.closed += 1


def e500(provider: str = "openai") -> ProviderUnavailable:
    return ProviderUnavailable("HTTP 500", provider=provider, model="m", status=500)


def e429(retry_after: float | None = None) -> ProviderRateLimited:
    return ProviderRateLimited("HTTP 429", provider="openai", model="m", retry_after=retry_after)


def timeout() -> ProviderTimeout:
    return ProviderTimeout("no answer in 60s", provider="openai", model="m")


def e400() -> ProviderRequestRejected:
    return ProviderRequestRejected("HTTP 400 bad param", provider="openai", model="m", status=400)


def ask(model: str = "", **kwargs: object) -> ModelRequest:
    return ModelRequest(model=model, messages=[Message(role="user", content="hi")], **kwargs)  # type: ignore[arg-type]


class Harness:
    """A router on a manual clock whose sleeps are recorded (and move the clock)."""

    def __init__(
        self,
        groups: list[ModelGroup],
        config: RouterConfig | None = None,
        *,
        seed: int = 7,
    ) -> None:
        self.clock = ManualClock()
        self.sleeps: list[float] = []
        self.router = ModelRouter(
            groups,
            config or RouterConfig(retry=RetryPolicy(jitter=0.0)),
            clock=self.clock,
            sleep=self._sleep,
            rng=random.Random(seed),
        )

    async def _sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.clock.advance(delay)


def group(
    model_id: str,
    *providers: FakeProvider,
    caps: ModelCapabilities | None = None,
    local: bool = False,
    **deployment: object,
) -> ModelGroup:
    bare = model_id.partition("/")[2] or model_id
    return ModelGroup(
        model_id,
        [
            Deployment(f"{model_id}#{i}", p, bare, **deployment)  # type: ignore[arg-type]
            for i, p in enumerate(providers)
        ],
        capabilities=caps or ModelCapabilities(),
        local=local,
    )


def configured(model_id: str, provider: FakeProvider) -> ModelGroup:
    """A model served by one provider, its deployment named after the provider as the
    settings name it."""
    return ModelGroup(model_id, [Deployment(provider.name, provider, model_id.partition("/")[2])])


def config(**kwargs: object) -> RouterConfig:
    kwargs.setdefault("retry", RetryPolicy(jitter=0.0))
    return RouterConfig(**kwargs)  # type: ignore[arg-type]


# --- choosing the model ---------------------------------------------------------------------


async def test_router_explicit_model_reaches_provider_as_bare_name_with_deployment_set() -> None:
    openai = FakeProvider("openai")
    h = Harness([group("openai/gpt-4", openai)])
    response = await h.router.complete(ask("openai/gpt-4"))
    assert openai.calls[0].model == "gpt-4"
    assert response.deployment == "openai/gpt-4#0"
    assert response.message.text == "from openai"


async def test_router_bare_model_name_finds_its_group() -> None:
    kimi = FakeProvider("kimi")
    h = Harness([group("openai/gpt-4", FakeProvider()), group("kimi/kimi-9b-exp", kimi)])
    response = await h.router.complete(ask("kimi-9b-exp"))
    assert response.provider == "kimi"
    assert kimi.calls[0].model == "kimi-9b-exp"


async def test_router_unknown_model_raises_model_not_found_listing_known_models() -> None:
    h = Harness([group("openai/gpt-4", FakeProvider())])
    with pytest.raises(ModelNotFoundError) as info:
        await h.router.complete(ask("openai/gpt-5"))
    assert "openai/gpt-5" in str(info.value)
    assert "openai/gpt-4" in (info.value.hint or "")


async def test_router_uses_default_model_when_request_names_none() -> None:
    deepseek = FakeProvider("deepseek")
    h = Harness(
        [group("openai/gpt-4", FakeProvider()), group("deepseek/deepseek-chat", deepseek)],
        config(default_model="deepseek-chat"),
    )
    response = await h.router.complete(ask(""))
    assert response.provider == "deepseek"


async def test_router_without_model_or_default_says_how_to_fix() -> None:
    h = Harness([group("openai/gpt-4", FakeProvider())])
    with pytest.raises(ModelNotFoundError) as info:
        await h.router.complete(ask(""))
    assert "models.default" in (info.value.hint or "")


async def test_router_rules_route_by_task_and_by_tag() -> None:
    coder, cheap, default = FakeProvider("coder"), FakeProvider("cheap"), FakeProvider("default")
    h = Harness(
        [group("a/coder", coder), group("b/cheap", cheap), group("c/default", default)],
        config(
            default_model="c/default",
            rules=[
                RouteRule(match_task="code", models=["a/coder"]),
                RouteRule(match_tags=["cheap", "bulk"], models=["b/cheap"]),
            ],
        ),
    )
    assert (await h.router.complete(ask(task="code"))).provider == "coder"
    assert (await h.router.complete(ask(tags=["bulk"]))).provider == "cheap"
    assert (await h.router.complete(ask(task="chat"))).provider == "default"
    # An explicit model wins over the rules.
    assert (await h.router.complete(ask("b/cheap", task="code"))).provider == "cheap"


async def test_router_capability_filtering_skips_models_lacking_vision_or_tools() -> None:
    text_only = FakeProvider("text")
    vision = FakeProvider("vision")
    h = Harness(
        [
            group("a/text", text_only, caps=ModelCapabilities(supports_function_calling=False)),
            group("b/vision", vision, caps=ModelCapabilities(supports_vision=True)),
        ],
        config(rules=[RouteRule(models=["a/text", "b/vision"])]),
    )
    image = Message(role="user", content=[TextPart(text="what?"), ImagePart(url="http://x/i.png")])
    response = await h.router.complete(ModelRequest(model="", messages=[image]))
    assert response.provider == "vision"
    assert h.router.plan(ask(tools=[ToolSpec(name="search")])) == ["b/vision"]
    assert h.router.plan(ask()) == ["a/text", "b/vision"]
    assert text_only.calls == []


async def test_router_capability_error_names_what_is_missing_and_who_was_rejected() -> None:
    h = Harness(
        [
            group("a/small", FakeProvider(), caps=ModelCapabilities(context_window=100)),
            group("b/blind", FakeProvider(), caps=ModelCapabilities(supports_vision=False)),
        ],
        config(rules=[RouteRule(models=["a/small", "b/blind"])]),
    )
    long_image = Message(role="user", content=[TextPart(text="x" * 2000), ImagePart(url="u")])
    with pytest.raises(CapabilityError) as info:
        await h.router.complete(ModelRequest(model="", messages=[long_image]))
    message = str(info.value)
    assert "a/small" in message
    assert "b/blind" in message
    assert "vision" in message
    assert set(info.value.details["rejected"]) == {"a/small", "b/blind"}
    assert info.value.hint


async def test_router_filters_by_context_window_and_max_tokens() -> None:
    h = Harness(
        [
            group("a/tiny", FakeProvider(), caps=ModelCapabilities(context_window=50)),
            group("b/big", FakeProvider(), caps=ModelCapabilities(context_window=100_000)),
        ],
        config(rules=[RouteRule(models=["a/tiny", "b/big"])]),
    )
    long = ModelRequest(model="", messages=[Message(role="user", content="y" * 400)])
    assert h.router.plan(long) == ["b/big"]
    with pytest.raises(CapabilityError, match="answers at most 4096"):
        h.router.plan(ask("b/big", max_tokens=10_000))


async def test_router_rule_max_cost_drops_expensive_and_unpriced_models() -> None:
    cheap = ModelCapabilities(input_price_per_mtok=0.1, output_price_per_mtok=0.4)
    dear = ModelCapabilities(input_price_per_mtok=30.0, output_price_per_mtok=60.0)
    h = Harness(
        [
            group("a/dear", FakeProvider(), caps=dear),
            group("b/unpriced", FakeProvider()),
            group("c/cheap", FakeProvider(), caps=cheap),
        ],
        config(rules=[RouteRule(models=["a/dear", "b/unpriced", "c/cheap"], max_cost_usd=0.01)]),
    )
    assert h.router.plan(ask(max_tokens=1000)) == ["c/cheap"]


async def test_router_prefer_local_moves_local_models_first() -> None:
    h = Harness(
        [group("openai/gpt-4", FakeProvider()), group("ollama/llama2", FakeProvider(), local=True)],
        config(rules=[RouteRule(models=["openai/gpt-4", "ollama/llama2"], prefer_local=True)]),
    )
    assert h.router.plan(ask()) == ["ollama/llama2", "openai/gpt-4"]


async def test_router_fills_cost_from_capability_prices() -> None:
    caps = ModelCapabilities(input_price_per_mtok=1.0, output_price_per_mtok=2.0)
    provider = FakeProvider(usage=Usage(input_tokens=1_000_000, output_tokens=500_000))
    h = Harness([group("openai/gpt-4", provider, caps=caps)])
    response = await h.router.complete(ask("openai/gpt-4"))
    assert response.cost_usd == pytest.approx(2.0)


@pytest.mark.parametrize(
    "build",
    [
        lambda: config(default_model="nope"),
        lambda: config(rules=[RouteRule(models=["nope"])]),
        lambda: config(rules=[RouteRule(models=[])]),
        lambda: config(fallbacks={"openai/gpt-4": ["nope"]}),
    ],
    ids=["default", "rule", "empty-rule", "fallback"],
)
def test_router_config_naming_unknown_models_is_rejected(build: object) -> None:
    with pytest.raises(ConfigError) as info:
        Harness([group("openai/gpt-4", FakeProvider())], build())  # type: ignore[operator]
    assert info.value.hint
    assert info.value.details["key"]


def test_router_rejects_duplicate_groups_and_deployment_names() -> None:
    with pytest.raises(ConfigError, match="twice"):
        Harness([group("a/m", FakeProvider()), group("a/m", FakeProvider())])
    dup = ModelGroup(
        "a/m", [Deployment("x", FakeProvider(), "m"), Deployment("x", FakeProvider(), "m")]
    )
    with pytest.raises(ConfigError, match="same name"):
        Harness([dup])


# --- retries and fallback -------------------------------------------------------------------


@pytest.mark.parametrize("error", [e429, e500], ids=["429", "5xx"])
async def test_router_falls_back_to_next_model_on_retryable_errors(error: object) -> None:
    primary = FakeProvider("openai", error(), error(), error())  # type: ignore[operator]
    backup = FakeProvider("deepseek")
    h = Harness(
        [group("openai/gpt-4", primary), group("deepseek/deepseek-chat", backup)],
        config(fallbacks={"openai/gpt-4": ["deepseek/deepseek-chat"]}),
    )
    response = await h.router.complete(ask("openai/gpt-4"))
    assert response.provider == "deepseek"
    assert len(primary.calls) == 3  # retry.max_attempts
    assert h.sleeps == [0.5, 1.0]  # backoff between the tries, none before the fallback


async def test_a_deployment_that_timed_out_is_not_called_again_and_the_fallback_answers() -> None:
    primary = FakeProvider("openai", timeout(), timeout(), timeout())
    backup = FakeProvider("deepseek")
    h = Harness(
        [group("openai/gpt-4", primary), group("deepseek/deepseek-chat", backup)],
        config(fallbacks={"openai/gpt-4": ["deepseek/deepseek-chat"]}),
    )

    response = await h.router.complete(ask("openai/gpt-4"))

    assert response.provider == "deepseek"
    assert len(primary.calls) == 1  # each call costs a whole time limit: once is enough
    assert h.sleeps == []


async def test_a_timeout_moves_on_to_another_deployment_of_the_same_model() -> None:
    silent = FakeProvider("openai", timeout(), timeout())
    healthy = FakeProvider("openai", e500(), "ok")
    h = Harness([group("openai/gpt-4", silent, healthy)])

    response = await h.router.complete(ask("openai/gpt-4"))

    # The 5xx is retried (after a backoff) on the deployment that answered, not the silent one.
    assert response.deployment == "openai/gpt-4#1"
    assert (len(silent.calls), len(healthy.calls)) == (1, 2)
    assert h.sleeps == [0.5]


async def test_a_failure_repeated_on_every_attempt_is_reported_once_with_its_count() -> None:
    refused = ProviderUnavailable(
        "could not connect to http://127.0.0.1:1/v1/chat/completions: connection refused",
        provider="local",
        model="m",
        hint="check that the server at http://127.0.0.1:1 is running",
    )
    h = Harness([configured("local/m", FakeProvider("local", refused, refused, refused))])

    with pytest.raises(ProviderUnavailable) as info:
        await h.router.complete(ask("local/m"))

    message = info.value.message
    assert message == (
        "local/m: could not connect to http://127.0.0.1:1/v1/chat/completions: connection "
        "refused — 3 attempts; no fallback model is configured for local/m"
    )
    assert info.value.hint is not None
    assert info.value.hint.startswith("check that the server at http://127.0.0.1:1 is running")
    assert "models.fallbacks" in info.value.hint
    assert info.value.details["attempts"] == 3


async def test_an_exhausted_request_names_each_candidate_and_what_it_did() -> None:
    silent = ProviderTimeout(
        "http://a/v1/chat/completions accepted the connection but sent no answer within 60 s",
        provider="a",
        model="m",
    )
    h = Harness(
        [
            configured("a/m", FakeProvider("a", silent)),
            configured("b/m", FakeProvider("b", e500("b"), e500("b"), e500("b"))),
        ],
        config(fallbacks={"a/m": ["b/m"]}),
    )

    with pytest.raises(ProviderUnavailable) as info:
        await h.router.complete(ask("a/m"))

    assert info.value.message == (
        "a/m: every candidate failed: a/m: http://a/v1/chat/completions accepted the "
        "connection but sent no answer within 60 s — 1 attempt; b/m: HTTP 500 — 3 attempts; "
        "fallbacks tried: b/m"
    )
    assert info.value.details["tried"] == ["a/m", "b/m"]


async def test_router_does_not_retry_or_fall_back_on_400() -> None:
    primary = FakeProvider("openai", e400())
    backup = FakeProvider("deepseek")
    h = Harness(
        [group("openai/gpt-4", primary), group("deepseek/deepseek-chat", backup)],
        config(fallbacks={"openai/gpt-4": ["deepseek/deepseek-chat"]}),
    )
    with pytest.raises(ProviderRequestRejected):
        await h.router.complete(ask("openai/gpt-4"))
    assert len(primary.calls) == 1
    assert backup.calls == []
    assert h.sleeps == []


async def test_router_auth_error_propagates_at_once() -> None:
    primary = FakeProvider("openai", ProviderAuthError("HTTP 401", provider="openai", status=401))
    second = FakeProvider("openai")
    h = Harness([group("openai/gpt-4", primary, second)])
    with pytest.raises(ProviderAuthError):
        await h.router.complete(ask("openai/gpt-4"))
    assert second.calls == []


async def test_router_honours_retry_after() -> None:
    provider = FakeProvider("openai", e429(retry_after=7))
    h = Harness([group("openai/gpt-4", provider)])
    response = await h.router.complete(ask("openai/gpt-4"))
    assert response.provider == "openai"
    assert h.sleeps == [7.0]  # the provider's figure, not the 0.5 s backoff


async def test_router_caps_retry_after_at_max_delay() -> None:
    provider = FakeProvider("openai", e429(retry_after=3600))
    h = Harness([group("openai/gpt-4", provider)], config(retry=RetryPolicy(max_delay=20)))
    await h.router.complete(ask("openai/gpt-4"))
    assert h.sleeps == [20.0]


async def test_router_backoff_is_exponential_with_bounded_jitter() -> None:
    provider = FakeProvider("openai", e500(), e500(), e500())
    policy = RetryPolicy(max_attempts=4, base_delay=1.0, jitter=0.2)
    h = Harness([group("openai/gpt-4", provider)], config(retry=policy))
    await h.router.complete(ask("openai/gpt-4"))
    assert len(h.sleeps) == 3
    for n, delay in enumerate(h.sleeps):
        assert 0.8 * 2**n <= delay <= 1.2 * 2**n
    assert len(set(h.sleeps)) == 3


async def test_router_retries_on_another_deployment_without_waiting() -> None:
    failing = FakeProvider("openai", e500())
    healthy = FakeProvider("openai")
    h = Harness([group("openai/gpt-4", failing, healthy)])
    response = await h.router.complete(ask("openai/gpt-4"))
    assert response.deployment == "openai/gpt-4#1"
    assert h.sleeps == []


async def test_router_exhausted_raises_unavailable_naming_candidates() -> None:
    h = Harness(
        [group("openai/gpt-4", FakeProvider("openai", *[e500()] * 3))],
    )
    with pytest.raises(ProviderUnavailable) as info:
        await h.router.complete(ask("openai/gpt-4"))
    assert "openai/gpt-4" in str(info.value)
    assert "3 attempts" in str(info.value)
    assert isinstance(info.value.__cause__, ProviderUnavailable)
    assert info.value.hint


async def test_router_exhausted_by_rate_limits_stays_a_rate_limit() -> None:
    h = Harness([group("openai/gpt-4", FakeProvider("openai", *[e429(2.0)] * 3))])
    with pytest.raises(ProviderRateLimited) as info:
        await h.router.complete(ask("openai/gpt-4"))
    assert info.value.retry_after == 2.0


# --- circuit breaker ------------------------------------------------------------------------


async def test_router_circuit_breaker_opens_and_recovers() -> None:
    flaky = FakeProvider("openai", e500(), e500())
    steady = FakeProvider("openai")
    h = Harness(
        [group("openai/gpt-4", flaky, steady)],
        config(breaker=BreakerPolicy(failure_threshold=2, cooldown_secs=30)),
    )
    for _ in range(2):  # each fails on `flaky` then succeeds on `steady`
        assert (await h.router.complete(ask("openai/gpt-4"))).deployment == "openai/gpt-4#1"
    states = {d.name: d.state for d in h.router.health()}
    assert states["openai/gpt-4#0"] is BreakerState.OPEN
    for _ in range(5):  # while open, `flaky` gets nothing
        assert (await h.router.complete(ask("openai/gpt-4"))).deployment == "openai/gpt-4#1"
    assert len(flaky.calls) == 2

    h.clock.advance(30)  # cool-down over: one probe goes to `flaky`, which now answers
    deployments = [(await h.router.complete(ask("openai/gpt-4"))).deployment for _ in range(4)]
    assert deployments[0] == "openai/gpt-4#0"  # the probe
    assert len(flaky.calls) == 2 + 2
    assert {d.name: d.state for d in h.router.health()}["openai/gpt-4#0"] is BreakerState.CLOSED
    assert Counter(deployments) == {"openai/gpt-4#0": 2, "openai/gpt-4#1": 2}


async def test_router_failed_probe_reopens_the_breaker() -> None:
    flaky = FakeProvider("openai", e500(), e500())
    steady = FakeProvider("openai")
    h = Harness(
        [group("openai/gpt-4", flaky, steady)],
        config(breaker=BreakerPolicy(failure_threshold=1, cooldown_secs=30)),
    )
    await h.router.complete(ask("openai/gpt-4"))
    h.clock.advance(30)
    await h.router.complete(ask("openai/gpt-4"))  # the probe fails, `steady` answers
    assert len(flaky.calls) == 2
    assert {d.name: d.state for d in h.router.health()}["openai/gpt-4#0"] is BreakerState.OPEN
    for _ in range(3):
        await h.router.complete(ask("openai/gpt-4"))
    assert len(flaky.calls) == 2


async def test_router_skips_a_model_whose_breakers_are_all_open() -> None:
    primary = FakeProvider("openai", e500())
    backup = FakeProvider("deepseek")
    h = Harness(
        [group("openai/gpt-4", primary), group("deepseek/deepseek-chat", backup)],
        config(
            fallbacks={"openai/gpt-4": ["deepseek/deepseek-chat"]},
            breaker=BreakerPolicy(failure_threshold=1, cooldown_secs=30),
        ),
    )
    assert (await h.router.complete(ask("openai/gpt-4"))).provider == "deepseek"
    h.sleeps.clear()
    assert (await h.router.complete(ask("openai/gpt-4"))).provider == "deepseek"
    assert len(primary.calls) == 1  # not called while its breaker is open
    assert h.sleeps == []  # and no waiting for it either


async def test_router_all_breakers_open_and_no_fallback_says_when_it_is_probed() -> None:
    h = Harness(
        [group("openai/gpt-4", FakeProvider("openai", e500()))],
        config(breaker=BreakerPolicy(failure_threshold=1, cooldown_secs=30)),
    )
    with pytest.raises(ProviderUnavailable):
        await h.router.complete(ask("openai/gpt-4"))
    with pytest.raises(ProviderUnavailable, match="circuit open") as info:
        await h.router.complete(ask("openai/gpt-4"))
    assert "30s" in (info.value.__cause__.hint or "")  # type: ignore[union-attr]


# --- load balancing and limits --------------------------------------------------------------


async def test_router_weighted_spreads_1000_requests_within_5_percent_of_weights() -> None:
    providers = [FakeProvider(f"p{i}") for i in range(3)]
    weights = [6.0, 3.0, 1.0]
    g = ModelGroup(
        "openai/gpt-4",
        [
            Deployment(f"d{i}", p, "gpt-4", weight=w)
            for i, (p, w) in enumerate(zip(providers, weights, strict=False))
        ],
        strategy="weighted",
    )
    h = Harness([g])
    counts: Counter[str | None] = Counter()
    for _ in range(1000):
        counts[(await h.router.complete(ask("openai/gpt-4"))).deployment] += 1
    for i, weight in enumerate(weights):
        expected = 1000 * weight / sum(weights)
        assert abs(counts[f"d{i}"] - expected) <= 0.05 * expected


async def test_router_round_robin_alternates_deployments() -> None:
    h = Harness([group("openai/gpt-4", FakeProvider(), FakeProvider())])
    picks = [(await h.router.complete(ask("openai/gpt-4"))).deployment for _ in range(4)]
    assert picks == ["openai/gpt-4#0", "openai/gpt-4#1"] * 2


async def test_router_least_in_flight_sends_to_the_idle_deployment() -> None:
    gate = Gate(asyncio.Event())
    busy = FakeProvider("a", gate)
    idle = FakeProvider("b")
    g = ModelGroup(
        "openai/gpt-4",
        [Deployment("busy", busy, "gpt-4"), Deployment("idle", idle, "gpt-4")],
        strategy="least_in_flight",
    )
    h = Harness([g])
    held = asyncio.create_task(h.router.complete(ask("openai/gpt-4")))
    await busy.called.wait()
    picks = [(await h.router.complete(ask("openai/gpt-4"))).deployment for _ in range(3)]
    assert picks == ["idle"] * 3
    gate.opened.set()
    assert (await held).deployment == "busy"


async def test_router_concurrency_limit_queues_the_excess() -> None:
    gate = Gate(asyncio.Event())
    provider = FakeProvider("openai", gate)
    h = Harness([group("openai/gpt-4", provider, max_concurrency=1)])
    first = asyncio.create_task(h.router.complete(ask("openai/gpt-4")))
    second = asyncio.create_task(h.router.complete(ask("openai/gpt-4")))
    await provider.called.wait()
    for _ in range(5):  # give the second request every chance to sneak past the limit
        await asyncio.sleep(0)
    assert len(provider.calls) == 1  # the second waits for the slot
    assert h.router.health()[0].in_flight == 1
    gate.opened.set()
    await asyncio.gather(first, second)
    assert len(provider.calls) == 2
    assert h.router.health()[0].in_flight == 0


async def test_router_rpm_limit_moves_to_another_deployment_then_waits_for_refill() -> None:
    a, b = FakeProvider("a"), FakeProvider("b")
    h = Harness([group("openai/gpt-4", a, b, rpm=6)])
    assert (await h.router.complete(ask("openai/gpt-4"))).deployment == "openai/gpt-4#0"
    assert (await h.router.complete(ask("openai/gpt-4"))).deployment == "openai/gpt-4#1"
    for _ in range(10):
        await h.router.complete(ask("openai/gpt-4"))
    assert h.sleeps == []  # 6 a minute each: twelve fit at once
    await h.router.complete(ask("openai/gpt-4"))  # waits for the first refill: 60 s / 6
    assert h.sleeps == [pytest.approx(10.0)]
    assert len(a.calls) + len(b.calls) == 13


async def test_router_rpm_wait_longer_than_max_delay_falls_back_or_rate_limits() -> None:
    h = Harness(
        [
            group("openai/gpt-4", FakeProvider("a"), rpm=1),
            group("deepseek/chat", FakeProvider("d")),
        ],
        config(fallbacks={"openai/gpt-4": ["deepseek/chat"]}),
    )
    assert (await h.router.complete(ask("openai/gpt-4"))).provider == "a"
    assert (await h.router.complete(ask("openai/gpt-4"))).provider == "d"  # 60 s > max_delay
    alone = Harness([group("openai/gpt-4", FakeProvider("a"), rpm=1)])
    await alone.router.complete(ask("openai/gpt-4"))
    with pytest.raises(ProviderRateLimited) as info:
        await alone.router.complete(ask("openai/gpt-4"))
    assert info.value.retry_after == pytest.approx(60.0)
    assert alone.sleeps == []


async def test_router_tpm_limit_is_charged_from_real_usage() -> None:
    big = FakeProvider("openai", usage=Usage(input_tokens=900, output_tokens=100))
    h = Harness([group("openai/gpt-4", big, tpm=1000)])
    await h.router.complete(ask("openai/gpt-4"))  # estimated ~6 tokens, really used 1000
    await h.router.complete(ask("openai/gpt-4"))
    assert h.sleeps
    assert h.sleeps[0] > 0


# --- streaming ------------------------------------------------------------------------------


async def _collect(
    stream: AsyncIterator[StreamDelta | ModelResponse],
) -> tuple[str, ModelResponse | None]:
    text, final = "", None
    async for item in stream:
        if isinstance(item, ModelResponse):
            final = item
        else:
            text += item.text
    return text, final


async def test_router_stream_yields_deltas_then_final_with_deployment() -> None:
    h = Harness([group("openai/gpt-4", FakeProvider("openai"))])
    text, final = await _collect(h.router.stream(ask("openai/gpt-4")))
    assert text == "from openai"
    assert final is not None
    assert final.deployment == "openai/gpt-4#0"
    assert h.router.health()[0].in_flight == 0


async def test_router_stream_fails_over_when_nothing_was_streamed_yet() -> None:
    primary = FakeProvider("openai", e500(), e500(), e500())
    backup = FakeProvider("deepseek")
    h = Harness(
        [group("openai/gpt-4", primary), group("deepseek/deepseek-chat", backup)],
        config(fallbacks={"openai/gpt-4": ["deepseek/deepseek-chat"]}),
    )
    text, final = await _collect(h.router.stream(ask("openai/gpt-4")))
    assert text == "from deepseek"
    assert final is not None
    assert final.provider == "deepseek"


async def test_router_stream_failing_after_a_delta_raises_without_duplicating_text() -> None:
    primary = FakeProvider("openai", CutAfter(1, e500()))
    second = FakeProvider("openai")
    backup = FakeProvider("deepseek")
    h = Harness(
        [group("openai/gpt-4", primary, second), group("deepseek/deepseek-chat", backup)],
        config(fallbacks={"openai/gpt-4": ["deepseek/deepseek-chat"]}),
    )
    received: list[str] = []

    async def consume() -> None:
        async for item in h.router.stream(ask("openai/gpt-4")):
            assert isinstance(item, StreamDelta)
            received.append(item.text)

    with pytest.raises(ProviderUnavailable):
        await consume()
    assert received == ["from"]
    assert second.calls == []
    assert backup.calls == []
    assert h.router.health()[0].consecutive_failures == 1
    assert all(d.in_flight == 0 for d in h.router.health())


async def test_router_stream_without_final_response_is_a_bad_response() -> None:
    class NoFinal(FakeProvider):
        async def stream(self, request: ModelRequest) -> AsyncIterator[StreamDelta | ModelResponse]:
            yield StreamDelta(text="half")

    h = Harness([group("openai/gpt-4", NoFinal("openai"))])
    with pytest.raises(ProviderBadResponse, match="final response"):
        await _collect(h.router.stream(ask("openai/gpt-4")))


async def test_router_stream_skips_models_that_cannot_stream() -> None:
    h = Harness(
        [
            group("a/batch", FakeProvider("a"), caps=ModelCapabilities(supports_streaming=False)),
            group("b/live", FakeProvider("b")),
        ],
        config(rules=[RouteRule(models=["a/batch", "b/live"])]),
    )
    assert h.router.plan(ask(), stream=True) == ["b/live"]
    assert (await h.router.complete(ask())).provider == "a"


async def test_router_stream_closed_early_frees_the_deployment() -> None:
    h = Harness([group("openai/gpt-4", FakeProvider("openai"), max_concurrency=1)])
    stream = h.router.stream(ask("openai/gpt-4"))
    first = await anext(stream)
    assert isinstance(first, StreamDelta)
    await stream.aclose()  # type: ignore[attr-defined]
    assert h.router.health()[0].in_flight == 0
    assert h.router.health()[0].state is BreakerState.CLOSED


async def test_router_aclose_closes_each_provider_once() -> None:
    shared = FakeProvider("openai")
    h = Harness([group("openai/gpt-4", shared, shared), group("openai/gpt-3.5", shared)])
    await h.router.aclose()
    assert shared.closed == 1


# --- end to end over HTTP -------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_fakes() -> Iterator[tuple[FakeOpenAI, FakeOpenAI]]:
    with running_fake_openai(FakeOpenAI()) as healthy, running_fake_openai(FakeOpenAI()) as bad:
        yield healthy, bad


async def test_router_over_http_one_of_two_deployments_failing_all_requests_succeed(
    two_fakes: tuple[FakeOpenAI, FakeOpenAI],
) -> None:
    healthy, failing = two_fakes
    requests = 40
    healthy.script(*[TextReply("fine") for _ in range(requests)])
    failing.script(*[ServerError(500) for _ in range(requests)])
    transport = SharedHttpTransport()
    providers = [
        OpenAIChatProvider("openai", base_url=fake.base_url, api_key="sk-test", transport=transport)
        for fake in (failing, healthy)
    ]
    g = ModelGroup(
        "openai/gpt-4o-mini",
        [Deployment(f"d{i}", p, "gpt-4o-mini") for i, p in enumerate(providers)],
    )
    h = Harness([g])
    try:
        results = [await h.router.complete(ask("openai/gpt-4o-mini")) for _ in range(requests)]
    finally:
        await transport.aclose()
    assert all(r.message.text == "fine" and r.deployment == "d1" for r in results)
    assert len(healthy.requests) == requests
    assert len(failing.requests) == 5  # the breaker took it out after 5 failures
    assert h.sleeps == []  # each failure moved on to the healthy deployment at once


# --- the documentation ----------------------------------------------------------------------


def test_routing_doc_example_runs() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "routing.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.DOTALL)
    assert blocks, "docs/routing.md lost its example"
    for block in blocks:
        exec(compile(block, "docs/routing.md", "exec"), {"__name__": "docs_routing"})
