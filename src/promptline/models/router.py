"""The model router: which model and which deployment serve a request, and what happens when
one fails (retries with backoff, failover, circuit breakers, load balancing, limits)."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from promptline.core.clock import Clock
from promptline.core.errors import (
    CapabilityError,
    ConfigError,
    ModelNotFoundError,
    ProviderBadResponse,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from promptline.core.messages import ImagePart, Usage
from promptline.models.balancer import LoadBalancer, Strategy
from promptline.models.breaker import BreakerPolicy, BreakerState, CircuitBreaker
from promptline.models.capabilities import ModelCapabilities
from promptline.models.limits import (
    DeploymentLimits,
    LimitLease,
    estimate_prompt_tokens,
    estimate_tokens,
)
from promptline.models.provider import ModelProvider
from promptline.models.retry import RetryPolicy
from promptline.models.types import ModelRequest, ModelResponse, StreamDelta

__all__ = [
    "Deployment",
    "DeploymentHealth",
    "ModelGroup",
    "ModelRouter",
    "RouteRule",
    "RouterConfig",
]

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
AUTO_MODEL = "auto"


@dataclass(slots=True)
class Deployment:
    """One endpoint serving a model: a provider (its base URL and API key) and the bare model
    name it is called with, with its share of the traffic and its own limits."""

    name: str
    provider: ModelProvider
    model: str
    weight: float = 1.0
    max_concurrency: int | None = None
    rpm: int | None = None
    tpm: int | None = None


@dataclass(slots=True)
class ModelGroup:
    """A model as requests name it (``provider/model`` or an alias such as ``fast``), served
    by one or more interchangeable deployments."""

    model_id: str
    deployments: list[Deployment]
    capabilities: ModelCapabilities = field(default_factory=ModelCapabilities)
    strategy: Strategy = "round_robin"
    local: bool = False


@dataclass(slots=True)
class RouteRule:
    """For requests without a model: which models serve a task or tag, in order of preference.

    A rule matches when ``match_task`` (if set) equals the request's task and, if
    ``match_tags`` is not empty, the request carries at least one of them; a rule with neither
    matches every request. ``max_cost_usd`` drops models whose estimated cost for the request
    is higher; ``prefer_local`` moves local models to the front.
    """

    match_task: str | None = None
    match_tags: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    max_cost_usd: float | None = None
    prefer_local: bool = False

    def matches(self, request: ModelRequest) -> bool:
        """Whether this rule applies to ``request``."""
        if self.match_task is not None and request.task != self.match_task:
            return False
        return not self.match_tags or any(tag in request.tags for tag in self.match_tags)


@dataclass(slots=True)
class RouterConfig:
    """Routing rules, fallbacks, retry and breaker policies (converted from the settings)."""

    default_model: str | None = None
    rules: list[RouteRule] = field(default_factory=list)
    fallbacks: dict[str, list[str]] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)


@dataclass(frozen=True, slots=True)
class DeploymentHealth:
    """A snapshot of one deployment, for status pages and metrics."""

    model_id: str
    name: str
    state: BreakerState
    consecutive_failures: int
    in_flight: int


@dataclass(slots=True)
class _DeploymentState:
    group: ModelGroup
    deployment: Deployment
    breaker: CircuitBreaker
    limits: DeploymentLimits


@dataclass(slots=True)
class _GroupState:
    group: ModelGroup
    balancer: LoadBalancer
    deployments: list[_DeploymentState]


class _Lease:
    """One call on one deployment: ends exactly once, as a success, a failure or neither."""

    __slots__ = ("_done", "_limit", "_router", "state")

    def __init__(self, router: ModelRouter, state: _DeploymentState, limit: LimitLease) -> None:
        self._router = router
        self.state = state
        self._limit = limit
        self._done = False
        state.breaker.begin()

    def succeed(self, usage: Usage) -> None:
        if self._end(usage.total_tokens or None):
            self.state.breaker.record_success()

    def fail(self) -> None:
        if self._end(None):
            self.state.breaker.record_failure()

    def release(self) -> None:
        if self._end(None):
            self.state.breaker.release()

    def _end(self, tokens: int | None) -> bool:
        if self._done:
            return False
        self._done = True
        self._limit.release(tokens)
        self._router._capacity_freed()
        return True


def _split(model_id: str, fallback_provider: str) -> tuple[str, str]:
    provider, slash, model = model_id.partition("/")
    return (provider, model) if slash else (fallback_provider, model_id)


async def _close(stream: AsyncIterator[object]) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()


class ModelRouter:
    """Serves `ModelRequest`s from a set of model groups.

    Choosing the model: an explicit ``provider/model`` or alias names its group; a bare model
    name (``gpt-4``) names every group that serves it; an empty model (or ``auto``) goes to the
    first matching `RouteRule`, else to ``default_model``. The fallbacks of each chosen model
    follow it. Candidates that cannot serve the request are dropped: images need vision, tools
    need function calling, streaming needs streaming, the prompt estimate plus ``max_tokens``
    must fit the context window, and a rule's cost ceiling must hold. If none is left a
    `CapabilityError` says what each one lacked.

    Calling: each candidate model in turn; within a model the load balancer picks a
    deployment, skipping open circuit breakers and deployments at their rate limits (a
    deployment at its concurrency limit is waited for). A retryable `ProviderError` (429, 5xx,
    timeouts, dropped connections, garbage answers) is tried again on a deployment the request
    has not used yet, at once, or after an exponential backoff with jitter when every
    deployment has been tried (a Retry-After wins, capped by the policy's ``max_delay``);
    after ``retry.max_attempts`` calls the next model is tried. A deployment that timed out is
    not called again for the request: each such call costs a whole time limit, so the request
    moves on to another deployment or model at once. A non-retryable error (400, 401/403) is
    the request's or the configuration's fault and is raised at once. When every candidate
    has failed, one error says what each deployment did and how often (not every attempt's
    text), and which fallbacks were tried.

    Streaming: a stream that fails before its first item reached the caller fails over like a
    call does. Once an item has been yielded, a failure is raised to the caller and never
    retried, so text already streamed is never streamed twice.

    ``clock`` drives breakers and rate limits; ``sleep`` and ``rng`` are injectable so tests
    record the backoff delays instead of waiting them out.
    """

    def __init__(
        self,
        groups: Sequence[ModelGroup],
        config: RouterConfig,
        *,
        clock: Clock,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        """Build the router; a config naming unknown models raises `ConfigError`."""
        self._config = config
        self._clock = clock
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        self._capacity_event: asyncio.Event | None = None
        self._groups: dict[str, _GroupState] = {}
        self._by_name: dict[str, list[str]] = {}
        for group in groups:
            self._add_group(group)
        self._fallbacks: dict[str, list[str]] = {}
        for key, targets in config.fallbacks.items():
            for source in self._lookup_config(key, f"fallbacks[{key!r}]"):
                chain = self._fallbacks.setdefault(source, [])
                for i, target in enumerate(targets):
                    chain.extend(self._lookup_config(target, f"fallbacks[{key!r}][{i}]"))
        for i, rule in enumerate(config.rules):
            if not rule.models:
                raise ConfigError(
                    f"routing rule {i} lists no models",
                    hint="give each rule the models to use, in order of preference",
                    key=f"rules[{i}].models",
                )
            for j, name in enumerate(rule.models):
                self._lookup_config(name, f"rules[{i}].models[{j}]")
        if config.default_model:
            self._lookup_config(config.default_model, "default_model")

    def _add_group(self, group: ModelGroup) -> None:
        if group.model_id in self._groups:
            raise ConfigError(
                f"model {group.model_id!r} is configured twice",
                hint="list its deployments under one model group",
            )
        if not group.deployments:
            raise ConfigError(
                f"model {group.model_id!r} has no deployment",
                hint="give it at least one deployment (a provider and a model name)",
            )
        names = [d.name for d in group.deployments]
        if len(set(names)) != len(names):
            raise ConfigError(
                f"model {group.model_id!r} has two deployments with the same name",
                hint="name each deployment uniquely, for example by host or key",
                deployments=names,
            )
        states = [
            _DeploymentState(
                group,
                d,
                CircuitBreaker(self._config.breaker, self._clock),
                DeploymentLimits(
                    self._clock, max_concurrency=d.max_concurrency, rpm=d.rpm, tpm=d.tpm
                ),
            )
            for d in group.deployments
        ]
        balancer = LoadBalancer(group.strategy, [d.weight for d in group.deployments])
        self._groups[group.model_id] = _GroupState(group, balancer, states)
        aliases = {group.model_id}
        _, bare = _split(group.model_id, "")
        aliases.add(bare)
        for d in group.deployments:
            aliases.update((d.model, f"{d.provider.name}/{d.model}"))
        for alias in aliases:
            ids = self._by_name.setdefault(alias, [])
            if group.model_id not in ids:
                ids.append(group.model_id)

    # --- choosing the model -------------------------------------------------------------

    @property
    def model_ids(self) -> list[str]:
        """The configured models, in configuration order."""
        return list(self._groups)

    def _lookup(self, name: str) -> list[str]:
        if name in self._groups:
            return [name]
        found = self._by_name.get(name)
        if found:
            return list(found)
        raise ModelNotFoundError(
            f"no configured provider serves model {name!r}",
            hint=f"use one of: {', '.join(self._groups) or '(none configured)'}",
            model=name,
        )

    def _lookup_config(self, name: str, key: str) -> list[str]:
        try:
            return self._lookup(name)
        except ModelNotFoundError as exc:
            raise ConfigError(
                f"{key} names model {name!r}, which no model group serves",
                hint=exc.hint,
                key=key,
            ) from None

    def plan(self, request: ModelRequest, *, stream: bool = False) -> list[str]:
        """The model ids that would be tried for ``request``, in order.

        Raises `ModelNotFoundError` for an unknown model and `CapabilityError` when no
        candidate can serve the request.
        """
        rule: RouteRule | None = None
        name = request.model.strip()
        if name and name != AUTO_MODEL:
            primary = self._lookup(name)
        else:
            rule = next((r for r in self._config.rules if r.matches(request)), None)
            if rule is not None:
                primary = [i for n in rule.models for i in self._lookup(n)]
            elif self._config.default_model:
                primary = self._lookup(self._config.default_model)
            else:
                raise ModelNotFoundError(
                    "the request names no model and there is no default model",
                    hint="name a model in the request, or set models.default in the config",
                )
        candidates = _unique([*primary, *(f for p in primary for f in self._fallbacks.get(p, []))])
        prompt = estimate_prompt_tokens(request)
        rejected: dict[str, str] = {}
        kept: list[str] = []
        for model_id in candidates:
            caps = self._groups[model_id].group.capabilities
            reason = _why_not(caps, request, stream, prompt, rule)
            if reason is None:
                kept.append(model_id)
            else:
                rejected[model_id] = reason
        if not kept:
            raise CapabilityError(
                "no configured model can serve this request: "
                + "; ".join(f"{m} {why}" for m, why in rejected.items()),
                hint="name a model that has what the request needs, or change the request",
                rejected=rejected,
            )
        if rule is not None and rule.prefer_local:
            kept.sort(key=lambda m: not self._groups[m].group.local)
        return kept

    # --- calling ------------------------------------------------------------------------

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """The whole answer, from the first candidate that gives one (``deployment`` set)."""
        ids = self.plan(request)

        async def call(provider: ModelProvider, req: ModelRequest) -> ModelResponse:
            return await provider.complete(req)

        response, lease = await self._run(request, ids, call)
        lease.succeed(response.usage)
        return self._finish(response, lease)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamDelta | ModelResponse]:
        """Deltas as they arrive, then the final `ModelResponse` (``deployment`` set).

        Fails over only while nothing has been yielded: an error after the first item is
        raised to the caller, because retrying would stream text the caller already has.
        """
        ids = self.plan(request, stream=True)

        async def start(
            provider: ModelProvider, req: ModelRequest
        ) -> tuple[StreamDelta | ModelResponse, AsyncIterator[StreamDelta | ModelResponse]]:
            items = provider.stream(req)
            try:
                first = await anext(items)
            except StopAsyncIteration:
                await _close(items)
                raise ProviderBadResponse(
                    "the stream ended before it sent anything",
                    provider=provider.name,
                    model=req.model,
                    hint="the provider closed the stream early; check its logs",
                ) from None
            except BaseException:
                await _close(items)
                raise
            return first, items

        (item, items), lease = await self._run(request, ids, start)
        deployment = lease.state.deployment
        try:
            while True:
                if isinstance(item, ModelResponse):
                    lease.succeed(item.usage)
                    yield self._finish(item, lease)
                    return
                yield item
                try:
                    item = await anext(items)
                except StopAsyncIteration:
                    raise ProviderBadResponse(
                        "the stream ended without its final response",
                        provider=deployment.provider.name,
                        model=deployment.model,
                        hint="the provider cut the stream; ask again",
                    ) from None
        except ProviderError as exc:
            if exc.retryable:
                lease.fail()
            raise
        finally:
            lease.release()
            await _close(items)

    async def _run(
        self,
        request: ModelRequest,
        ids: Sequence[str],
        call: Callable[[ModelProvider, ModelRequest], Awaitable[T]],
    ) -> tuple[T, _Lease]:
        policy = self._config.retry
        tokens = estimate_tokens(request)
        errors: list[_Failure] = []
        for model_id in ids:
            group = self._groups[model_id]
            tried: set[int] = set()
            silent: set[int] = set()  # timed out: not called again for this request
            backoffs = 0
            for attempt in range(1, policy.max_attempts + 1):
                last = attempt == policy.max_attempts
                if len(silent) == len(group.deployments):
                    break
                try:
                    index, lease = await self._acquire(group, tokens, tried, silent)
                except (ProviderRateLimited, ProviderUnavailable) as exc:
                    # Every deployment is out (breakers) or over its budget for longer than
                    # the policy waits: the next model, at once.
                    errors.append(_Failure(model_id, None, exc))
                    break
                deployment = lease.state.deployment
                # Copied only when the name changes: the copy costs more than routing does.
                req = (
                    request
                    if request.model == deployment.model
                    else replace(request, model=deployment.model)
                )
                try:
                    result = await call(deployment.provider, req)
                except ProviderError as exc:
                    if not exc.retryable:
                        lease.release()
                        raise
                    lease.fail()
                    errors.append(_Failure(model_id, deployment.name, exc))
                    tried.add(index)
                    if isinstance(exc, ProviderTimeout):
                        silent.add(index)
                        if len(silent) == len(group.deployments):
                            break
                    if not last and not self._has_untried(group, tokens, tried):
                        await self._sleep(policy.delay_after(exc, backoffs, self._rng))
                        backoffs += 1
                    continue
                except BaseException:
                    lease.release()
                    raise
                return result, lease
        raise self._exhausted(ids, errors)

    async def _acquire(
        self, group: _GroupState, tokens: int, tried: set[int], excluded: set[int]
    ) -> tuple[int, _Lease]:
        while True:
            eligible: list[int] = []
            busy = False
            rate_waits: list[float] = []
            for i, state in enumerate(group.deployments):
                if i in excluded or not state.breaker.available():
                    continue
                reason = state.limits.blocked_by(tokens)
                if reason is None:
                    eligible.append(i)
                elif reason == "concurrency":
                    busy = True
                else:
                    rate_waits.append(state.limits.wait_time(tokens))
            if eligible:
                fresh = [i for i in eligible if i not in tried] or eligible
                index = group.balancer.pick(fresh, [s.limits.in_flight for s in group.deployments])
                assert index is not None  # fresh is not empty
                state = group.deployments[index]
                return index, _Lease(self, state, state.limits.acquire(tokens))
            provider, model = _split(group.group.model_id, group.group.deployments[0].provider.name)
            if busy:
                # A concurrency limit is a queue: wait for a call on this model to end.
                if self._capacity_event is None:
                    self._capacity_event = asyncio.Event()
                await self._capacity_event.wait()
                continue
            if rate_waits:
                # Our own budget: the wait is known exactly, so wait it out when it is short.
                # Rounded up to the millisecond so that the budget has surely refilled after it.
                wait = math.ceil(min(rate_waits) * 1000) / 1000
                if wait <= self._config.retry.max_delay:
                    await self._sleep(wait)
                    continue
                raise ProviderRateLimited(
                    "every deployment is at its requests- or tokens-per-minute limit",
                    provider=provider,
                    model=model,
                    retry_after=wait,
                )
            retry_in = min(s.breaker.retry_in() for s in group.deployments)
            raise ProviderUnavailable(
                "every deployment is taken out after repeated failures (circuit open)",
                provider=provider,
                model=model,
                hint=f"it is probed again in {retry_in:.0f}s; check the provider's status",
                retry_in=retry_in,
            )

    def _has_untried(self, group: _GroupState, tokens: int, tried: set[int]) -> bool:
        return any(
            i not in tried and s.breaker.available() and s.limits.blocked_by(tokens) is None
            for i, s in enumerate(group.deployments)
        )

    def _capacity_freed(self) -> None:
        if self._capacity_event is not None:
            self._capacity_event.set()
            self._capacity_event = None

    def _finish(self, response: ModelResponse, lease: _Lease) -> ModelResponse:
        cost = response.cost_usd
        if cost is None:
            cost = lease.state.group.capabilities.cost(response.usage)
        return replace(response, deployment=lease.state.deployment.name, cost_usd=cost)

    def _exhausted(self, ids: Sequence[str], failures: list[_Failure]) -> ProviderError:
        first = self._groups[ids[0]].group
        provider, model = _split(first.model_id, first.deployments[0].provider.name)
        errors = [f.error for f in failures]
        summary = _summary(failures)
        fallbacks = [f for f in self._fallbacks.get(ids[0], []) if f != ids[0]]
        if len(ids) > 1:
            tried = f"; fallbacks tried: {', '.join(ids[1:])}"
        elif fallbacks:
            tried = f"; its fallbacks ({', '.join(fallbacks)}) could not serve this request"
        else:
            tried = f"; no fallback model is configured for {ids[0]}"
        hints = list(dict.fromkeys(e.hint for e in errors if e.hint))
        if errors and all(isinstance(e, ProviderRateLimited) for e in errors):
            waits = [e.retry_after for e in errors if isinstance(e, ProviderRateLimited)]
            known = [w for w in waits if w is not None]
            error: ProviderError = ProviderRateLimited(
                f"every candidate is rate limited: {summary}{tried}",
                provider=provider,
                model=model,
                retry_after=min(known) if known else None,
                attempts=len(errors),
            )
        else:
            hint = hints[0] if len(hints) == 1 else "see what each candidate did above"
            if len(ids) == 1 and not fallbacks:
                hint += f"; models.fallbacks can name models to try when {ids[0]} fails"
            error = ProviderUnavailable(
                f"{summary}{tried}"
                if len(ids) == 1
                else f"every candidate failed: {summary}{tried}",
                provider=provider,
                model=model,
                hint=hint,
                attempts=len(errors),
                tried=list(ids),
            )
        error.__cause__ = errors[-1] if errors else None
        return error

    # --- status -------------------------------------------------------------------------

    def health(self) -> list[DeploymentHealth]:
        """Breaker state and load of every deployment."""
        return [
            DeploymentHealth(
                g.group.model_id,
                s.deployment.name,
                s.breaker.state,
                s.breaker.consecutive_failures,
                s.limits.in_flight,
            )
            for g in self._groups.values()
            for s in g.deployments
        ]

    async def aclose(self) -> None:
        """Close every provider (each once, even when it serves several deployments)."""
        seen: set[int] = set()
        for group in self._groups.values():
            for state in group.deployments:
                provider = state.deployment.provider
                if id(provider) not in seen:
                    seen.add(id(provider))
                    await provider.aclose()


def _unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


@dataclass(frozen=True, slots=True)
class _Failure:
    """One failed try: the model, the deployment called (None: none could be), the error."""

    model_id: str
    deployment: str | None
    error: ProviderError


def _reason(error: ProviderError) -> str:
    """The error's message without the ``provider/model:`` it starts with."""
    prefix = f"{error.provider}/{error.model}: " if error.model else f"{error.provider}: "
    return error.message.removeprefix(prefix)


def _summary(failures: Sequence[_Failure]) -> str:
    """What each deployment did, said once with how often: the same failure three times is
    one phrase with "3 attempts", not the same text three times."""
    seen: dict[tuple[str, str | None, str], int] = {}
    for failure in failures:
        key = (failure.model_id, failure.deployment, _reason(failure.error))
        seen[key] = seen.get(key, 0) + 1
    many_models = len({model_id for model_id, _, _ in seen}) > 1
    parts = []
    for (model_id, deployment, reason), count in seen.items():
        where = []
        if many_models:
            where.append(model_id)
        if deployment is not None and deployment != model_id.partition("/")[0]:
            where.append(f"deployment {deployment}")
        tries = f" — {count} attempts" if count > 1 else " — 1 attempt"
        if deployment is None:
            tries = ""
        parts.append((f"{' '.join(where)}: " if where else "") + reason + tries)
    return "; ".join(parts)


def _why_not(
    caps: ModelCapabilities,
    request: ModelRequest,
    stream: bool,
    prompt_tokens: int,
    rule: RouteRule | None,
) -> str | None:
    """Why a model with ``caps`` cannot serve ``request`` (None if it can)."""
    if not caps.supports_vision and any(
        isinstance(part, ImagePart) for message in request.messages for part in message.content
    ):
        return "has no vision (the request has images)"
    if request.tools and not caps.supports_function_calling:
        return "has no function calling (the request has tools)"
    if stream and not caps.supports_streaming:
        return "cannot stream (the request streams)"
    if (
        request.response_format is not None
        and request.response_format.type == "json_schema"
        and not caps.supports_json_schema
    ):
        return "has no JSON-schema output (the request asks for one)"
    if request.max_tokens is not None and request.max_tokens > caps.max_tokens:
        return (
            f"answers at most {caps.max_tokens} tokens (the request asks for {request.max_tokens})"
        )
    answer = request.max_tokens or 0
    if prompt_tokens + answer > caps.context_window:
        return (
            f"has a context window of {caps.context_window} tokens (the request needs about "
            f"{prompt_tokens + answer})"
        )
    if rule is not None and rule.max_cost_usd is not None:
        output = request.max_tokens if request.max_tokens is not None else caps.max_tokens
        cost = caps.cost(Usage(input_tokens=prompt_tokens, output_tokens=output))
        if cost is None:
            return f"has no known price (the rule allows at most ${rule.max_cost_usd})"
        if cost > rule.max_cost_usd:
            return f"would cost about ${cost:.4f} (the rule allows at most ${rule.max_cost_usd})"
    return None
