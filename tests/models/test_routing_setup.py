"""The router built from settings: groups, lazy providers, balancing and fallbacks over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.openai_server import FakeOpenAI, ServerError, TextReply, running_fake_openai
from promptline.config import load_settings
from promptline.config.settings import Settings
from promptline.core.clock import ManualClock
from promptline.core.errors import ProviderAuthError, ProviderUnavailable
from promptline.core.messages import Message
from promptline.models.registry import ProviderRegistry
from promptline.models.router import ModelRouter
from promptline.models.routing_setup import build_router
from promptline.models.types import ModelRequest

SEED = Path(__file__).parents[1] / "fixtures" / "seed_config.yaml"


def _settings(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_settings(path, environ={"PROMPTLINE_HOME": str(tmp_path)})


def _ask(model: str | None = None) -> ModelRequest:
    return ModelRequest(model=model or "", messages=[Message(role="user", content="hello")])


@pytest.fixture
def two_servers() -> Iterator[tuple[FakeOpenAI, FakeOpenAI]]:
    with running_fake_openai() as first, running_fake_openai() as second:
        yield first, second


async def test_seed_config_builds_and_a_missing_key_is_reported_on_use(tmp_path: Path) -> None:
    settings = load_settings(SEED, environ={"PROMPTLINE_HOME": str(tmp_path)})
    registry = ProviderRegistry(settings)
    router = build_router(settings, registry, clock=ManualClock())
    assert {"openai/gpt-4", "kimi/kimi-9b-exp", "deepseek/deepseek-chat", "ollama/llama2"} <= set(
        router.model_ids
    )
    with pytest.raises(ProviderAuthError, match="KIMI_API_KEY"):
        await router.complete(_ask("kimi/kimi-9b-exp"))
    await registry.aclose()


async def test_default_model_and_scripted_demo_work_offline(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "models:\n  default: scripted/demo\n")
    registry = ProviderRegistry(settings)
    router = build_router(settings, registry, clock=ManualClock())
    answer = await router.complete(_ask())
    assert answer.provider == "scripted"
    assert answer.message.text
    await registry.aclose()


async def test_a_model_listed_by_two_providers_is_one_weighted_group(
    tmp_path: Path, two_servers: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    heavy, light = two_servers
    heavy.script(*[TextReply("from heavy")] * 30)
    light.script(*[TextReply("from light")] * 10)
    settings = _settings(
        tmp_path,
        f"""
models:
  routing:
    strategy: weighted
  providers:
    local_a:
      base_url: "{heavy.base_url}"
      models: ["llama2"]
      weight: 3
    local_b:
      base_url: "{light.base_url}"
      models: ["llama2"]
      weight: 1
""",
    )
    registry = ProviderRegistry(settings)
    router: ModelRouter = build_router(settings, registry, clock=ManualClock())
    assert "llama2" in router.model_ids
    deployments = [(await router.complete(_ask("llama2"))).deployment for _ in range(40)]
    assert deployments.count("local_a") == 30
    assert deployments.count("local_b") == 10
    # The provider/model spelling names the same balanced group.
    assert router.plan(_ask("local_a/llama2")) == ["llama2"]
    await registry.aclose()


async def test_a_failing_model_falls_back_to_the_configured_one(
    tmp_path: Path, two_servers: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    broken, spare = two_servers
    broken.script(*[ServerError()] * 3)
    spare.script(TextReply("spare answers"))
    settings = _settings(
        tmp_path,
        f"""
models:
  fallbacks:
    main/gpt-4o: ["spare/gpt-4o-mini"]
  providers:
    main:
      base_url: "{broken.base_url}"
      models: ["gpt-4o"]
    spare:
      base_url: "{spare.base_url}"
      models: ["gpt-4o-mini"]
""",
    )
    registry = ProviderRegistry(settings)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:  # backoff delays are recorded, not waited
        slept.append(seconds)

    router = build_router(settings, registry, clock=ManualClock(), sleep=sleep)
    answer = await router.complete(_ask("main/gpt-4o"))
    assert answer.message.text == "spare answers"
    assert answer.provider == "spare"
    assert len(broken.requests) == 3
    await registry.aclose()


@pytest.mark.parametrize("name", ["http11", "aiohttp"])
async def test_the_transport_setting_picks_the_shared_http_client(
    tmp_path: Path, name: str
) -> None:
    from promptline.models.http import SharedHttpTransport
    from promptline.models.http11 import Http11Transport

    settings = _settings(tmp_path, f"models:\n  transport: {name}\n")
    registry = ProviderRegistry(settings)
    expected = Http11Transport if name == "http11" else SharedHttpTransport
    assert isinstance(registry._http(), expected)
    await registry.aclose()


async def test_a_silent_provider_with_a_refused_fallback_fails_once_each_in_one_message(
    tmp_path: Path,
) -> None:
    import socket

    silent = socket.socket()  # its listen queue takes connections; nobody ever answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        refused_port = probe.getsockname()[1]
    silent_url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
    settings = _settings(
        tmp_path,
        f"""
models:
  providers:
    slow:
      base_url: "{silent_url}"
      models: ["m1"]
      first_byte_timeout_secs: 0.2
    down:
      base_url: "http://127.0.0.1:{refused_port}/v1"
      models: ["m2"]
  fallbacks:
    slow/m1: ["down/m2"]
""",
    )
    registry = ProviderRegistry(settings)
    clock = ManualClock()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.advance(seconds)

    router = build_router(settings, registry, clock=clock, sleep=sleep)
    try:
        with pytest.raises(ProviderUnavailable) as caught:
            await router.complete(_ask("slow/m1"))
    finally:
        await registry.aclose()
        silent.close()

    assert caught.value.message == (
        f"slow/m1: every candidate failed: slow/m1: {silent_url}/chat/completions accepted the "
        "connection but sent no answer within 0.2 s (first_byte_timeout_secs) — 1 attempt; "
        f"down/m2: could not connect to http://127.0.0.1:{refused_port}/v1/chat/completions: "
        "connection refused: nothing listens on that port — 3 attempts; fallbacks tried: down/m2"
    )
    assert len(waits) == 2  # the backoffs between the refused tries; none for the silent one
