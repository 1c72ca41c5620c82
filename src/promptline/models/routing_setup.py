"""Turn the ``models`` settings into a `ModelRouter`: one model group per model name, with a
deployment for every provider that lists it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from promptline.core.clock import Clock
from promptline.models.breaker import BreakerPolicy
from promptline.models.retry import RetryPolicy
from promptline.models.router import Deployment, ModelGroup, ModelRouter, RouterConfig, RouteRule
from promptline.models.types import ModelRequest, ModelResponse, StreamDelta

if TYPE_CHECKING:
    from promptline.config.settings import Settings
    from promptline.models.provider import ModelProvider
    from promptline.models.registry import ProviderRegistry

_LOCAL_HOSTS = ("localhost", "127.", "[::1]", "0.0.0.0")


class DeferredProvider:
    """A `ModelProvider` built by the registry on its first call.

    A configuration may list providers this machine has no key for; the router is built at
    start-up, and the missing key is reported (`ProviderAuthError`) only when a request
    actually goes to that provider.
    """

    def __init__(self, registry: ProviderRegistry, name: str) -> None:
        self._registry = registry
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def _target(self, request: ModelRequest) -> ModelProvider:
        return self._registry.provider(self._name, model=request.model)

    async def complete(self, request: ModelRequest) -> ModelResponse:
        return await self._target(request).complete(request)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamDelta | ModelResponse]:
        async for item in self._target(request).stream(request):
            yield item

    async def aclose(self) -> None:
        """Nothing: the registry owns the providers it builds."""


def _is_local(registry: ProviderRegistry, name: str) -> bool:
    from promptline.models.catalogue import LOCAL_PROVIDERS

    if registry.type_of(name) == "scripted" or name in LOCAL_PROVIDERS:
        return True
    base_url = registry.settings_of(name).base_url or ""
    host = base_url.split("://", 1)[-1]
    return host.startswith(_LOCAL_HOSTS)


def build_router(
    settings: Settings,
    registry: ProviderRegistry,
    *,
    clock: Clock,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> ModelRouter:
    """The router for ``settings.models``.

    Every model a provider lists (and every script of a scripted provider) becomes a group.
    A model name listed by one provider is the group ``provider/model``; a name listed by
    several providers (several API keys, several Ollama hosts) is one group named by the bare
    model name, with one deployment per provider, balanced by ``models.routing.strategy``
    using each provider's ``weight``; ``provider/model`` then names that same group.
    """
    routing = settings.models.routing
    servers: dict[str, list[str]] = {}
    for name in registry.names:
        for model in registry.models_of(name):
            servers.setdefault(model, []).append(name)
    groups = []
    for model, names in servers.items():
        deployments = [
            Deployment(
                name=name,
                provider=DeferredProvider(registry, name),
                model=model,
                weight=float(registry.settings_of(name).weight),
                max_concurrency=registry.settings_of(name).max_concurrency,
                rpm=registry.settings_of(name).rpm,
                tpm=registry.settings_of(name).tpm,
            )
            for name in names
        ]
        group_id = f"{names[0]}/{model}" if len(names) == 1 else model
        groups.append(
            ModelGroup(
                model_id=group_id,
                deployments=deployments,
                capabilities=registry.capabilities(f"{names[0]}/{model}"),
                strategy=routing.strategy,
                local=all(_is_local(registry, name) for name in names),
            )
        )
    config = RouterConfig(
        default_model=settings.models.default,
        rules=[
            RouteRule(
                match_task=rule.task,
                match_tags=list(rule.tags),
                models=list(rule.models),
                max_cost_usd=rule.max_cost_usd,
                prefer_local=rule.prefer_local,
            )
            for rule in routing.rules
        ],
        fallbacks={k: list(v) for k, v in settings.models.fallbacks.items()},
        retry=RetryPolicy(max_attempts=routing.max_attempts),
        breaker=BreakerPolicy(
            failure_threshold=routing.breaker_failures,
            cooldown_secs=routing.breaker_cooldown_secs,
        ),
    )
    return ModelRouter(groups, config, clock=clock, sleep=sleep)
