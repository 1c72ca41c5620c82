"""Providers built from settings: wire format by type or name, model id resolution, missing
keys reported on use, scripts, catalogue lookups and overrides, and the routing keys."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from promptline.config import load_settings
from promptline.config.settings import Settings
from promptline.core.errors import ConfigError, ModelNotFoundError, ProviderAuthError
from promptline.core.messages import Message, Usage
from promptline.models.anthropic import AnthropicProvider
from promptline.models.gemini import GeminiProvider
from promptline.models.openai_chat import OpenAIChatProvider
from promptline.models.registry import ProviderRegistry, ResolvedModel, infer_provider_type
from promptline.models.scripted import Script, ScriptedProvider
from promptline.models.types import ModelRequest

SEED = Path(__file__).parents[1] / "fixtures" / "seed_config.yaml"


def settings_from(tmp_path: Path, text: str, **environ: str) -> Settings:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path, environ=environ)


@pytest.fixture
def seed() -> Settings:
    return load_settings(SEED, environ={"OPENAI_API_KEY": "sk-test"})


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("anthropic", "anthropic"),
        ("claude-proxy", "anthropic"),
        ("gemini", "gemini"),
        ("google", "gemini"),
        ("scripted", "scripted"),
        ("openai", "openai"),
        ("kimi", "openai"),
        ("deepseek", "openai"),
        ("ollama", "openai"),
        ("my-vllm", "openai"),
    ],
)
def test_registry_infers_the_wire_format_from_the_name(name: str, kind: str) -> None:
    assert infer_provider_type(name) == kind


def test_registry_explicit_type_wins_over_the_name() -> None:
    assert infer_provider_type("claude-compatible", "openai") == "openai"


def test_registry_resolves_seed_default_bare_name_and_full_ids(seed: Settings) -> None:
    registry = ProviderRegistry(seed)

    assert registry.resolve(None) == ResolvedModel("openai", "gpt-4")
    assert registry.resolve("mistral") == ResolvedModel("ollama", "mistral")
    assert registry.resolve("kimi/kimi-9b-exp").id == "kimi/kimi-9b-exp"
    assert registry.resolve("deepseek/deepseek-reasoner") == ResolvedModel(
        "deepseek", "deepseek-reasoner"
    )
    assert registry.resolve("scripted/demo") == ResolvedModel("scripted", "demo")


def test_registry_keeps_slashes_of_a_model_name_whose_prefix_is_no_provider(
    tmp_path: Path,
) -> None:
    settings = settings_from(
        tmp_path,
        "models:\n  providers:\n    vllm:\n      base_url: http://127.0.0.1:8000/v1\n"
        "      models: [meta-llama/Llama-3-8B]\n",
    )

    resolved = ProviderRegistry(settings).resolve("meta-llama/Llama-3-8B")

    assert resolved == ResolvedModel("vllm", "meta-llama/Llama-3-8B")


def test_registry_unknown_model_lists_what_exists(seed: Settings) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        ProviderRegistry(seed).resolve("gpt-17")

    assert "gpt-17" in info.value.message
    hint = info.value.hint or ""
    assert "openai/gpt-4" in hint
    assert "ollama/llama2" in hint
    assert "scripted/demo" in hint


def test_registry_unknown_script_lists_the_scripts(seed: Settings) -> None:
    with pytest.raises(ModelNotFoundError, match="no script 'nope'") as info:
        ProviderRegistry(seed).resolve("scripted/nope")

    assert "demo" in (info.value.hint or "")


def test_registry_no_model_and_no_default_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"models\.default is not set"):
        ProviderRegistry(settings_from(tmp_path, "")).resolve(None)


def test_registry_builds_each_wire_format_once(tmp_path: Path) -> None:
    settings = settings_from(
        tmp_path,
        """
models:
  providers:
    openai: {api_key: sk-a}
    claude: {api_key: sk-b}
    gemini: {api_key: g-c}
    ollama: {base_url: "http://localhost:11434"}
""",
    )
    registry = ProviderRegistry(settings)

    assert isinstance(registry.provider("openai"), OpenAIChatProvider)
    assert isinstance(registry.provider("claude"), AnthropicProvider)
    assert isinstance(registry.provider("gemini"), GeminiProvider)
    assert isinstance(registry.provider("ollama"), OpenAIChatProvider)
    assert isinstance(registry.provider("scripted"), ScriptedProvider)
    assert registry.provider("openai") is registry.provider("openai")
    assert registry.names == ["openai", "claude", "gemini", "ollama", "scripted"]


async def test_registry_missing_key_from_unset_variable_names_it_only_when_used(
    seed: Settings,
) -> None:
    registry = ProviderRegistry(seed)  # KIMI_API_KEY and DEEPSEEK_API_KEY are unset

    assert isinstance(registry.provider("openai"), OpenAIChatProvider)
    assert isinstance(registry.provider("ollama"), OpenAIChatProvider)  # local: no key needed
    with pytest.raises(ProviderAuthError) as info:
        registry.provider_for("deepseek/deepseek-chat")
    await registry.aclose()

    error = info.value
    assert "DEEPSEEK_API_KEY" in error.message
    assert "deepseek/deepseek-chat" in error.message
    assert error.details["env_var"] == "DEEPSEEK_API_KEY"
    assert "export DEEPSEEK_API_KEY" in (error.hint or "")
    assert error.retryable is False


def test_registry_missing_key_that_was_never_configured_says_where_to_set_it(
    tmp_path: Path,
) -> None:
    registry = ProviderRegistry(settings_from(tmp_path, "models:\n  providers:\n    anthropic:\n"))

    with pytest.raises(ProviderAuthError, match="no API key configured") as info:
        registry.provider("anthropic", model="claude-sonnet-4-0")

    assert "anthropic/claude-sonnet-4-0" in info.value.message
    assert "models.providers.anthropic.api_key" in (info.value.hint or "")


def test_registry_openai_compatible_provider_without_url_must_be_a_known_one(
    tmp_path: Path,
) -> None:
    registry = ProviderRegistry(
        settings_from(tmp_path, "models:\n  providers:\n    mystery:\n      api_key: k\n")
    )

    with pytest.raises(ConfigError, match="base_url"):
        registry.provider("mystery")


async def test_registry_scripted_provider_is_always_there_and_plays_the_demo(
    tmp_path: Path,
) -> None:
    registry = ProviderRegistry(settings_from(tmp_path, ""))

    provider, resolved = registry.provider_for("scripted/demo")
    response = await provider.complete(
        ModelRequest(resolved.model, [Message(role="user", content="hi")])
    )

    assert "offline demo" in response.message.text


async def test_registry_loads_scripts_from_the_configured_folder(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "greeter.yaml").write_text("- reply: Bonjour\n", encoding="utf-8")
    settings = settings_from(
        tmp_path,
        "models:\n  default: greeter\n  providers:\n    scripted:\n"
        "      scripts_dir: scripts\n      models: [greeter]\n",
    )
    registry = ProviderRegistry(settings)

    provider, resolved = registry.provider_for(None)
    response = await provider.complete(
        ModelRequest(resolved.model, [Message(role="user", content="hi")])
    )

    assert resolved.id == "scripted/greeter"
    assert response.message.text == "Bonjour"
    assert registry.models_of("scripted") == ["demo", "greeter"]


def test_registry_loads_scripts_from_the_home_folder_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMPTLINE_HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "scripts").mkdir(parents=True)
    (tmp_path / "home" / "scripts" / "faq.json").write_text('[{"reply": "42"}]')

    registry = ProviderRegistry(settings_from(tmp_path, ""))

    assert registry.resolve("scripted/faq").model == "faq"


def test_registry_capabilities_come_from_the_catalogue_with_config_overrides(
    tmp_path: Path,
) -> None:
    settings = settings_from(
        tmp_path,
        """
models:
  providers:
    openai: {api_key: k}
    openrouter: {base_url: "https://openrouter.ai/api/v1"}
  catalogue:
    openai/gpt-4o:
      input_price_per_mtok: 1.0
    acme/brand-new:
      context_window: 1000000
      input_price_per_mtok: 3
      output_price_per_mtok: 4
""",
    )
    registry = ProviderRegistry(settings)

    gpt4o = registry.capabilities("openai/gpt-4o")
    relayed = registry.capabilities("openrouter/openai/gpt-4o-mini")
    new = registry.capabilities("acme/brand-new")

    assert gpt4o.input_price_per_mtok == 1.0
    assert gpt4o.output_price_per_mtok == 10.0  # the built-in value stays
    assert gpt4o.supports_vision
    assert relayed.input_price_per_mtok == 0.15
    assert new.context_window == 1_000_000
    assert new.output_price_per_mtok == 4
    assert registry.capabilities("ollama/some-local-model").input_price_per_mtok == 0.0
    assert registry.capabilities("openai/unheard-of").input_price_per_mtok is None
    assert registry.capabilities("scripted/demo").cost(Usage(input_tokens=10)) == 0.0


def test_registry_catalogue_marks_configured_models(seed: Settings) -> None:
    entries = {entry.id: entry for entry in ProviderRegistry(seed).catalogue()}

    assert entries["openai/gpt-4"].configured
    assert entries["kimi/kimi-9b-exp"].configured
    assert entries["scripted/demo"].configured
    assert not entries["openai/gpt-4o"].configured  # openai lists only gpt-4 and gpt-3.5-turbo
    assert not entries["anthropic/claude-sonnet-4-0"].configured
    assert entries["ollama/llama2"].capabilities.input_price_per_mtok == 0.0


def test_registry_routing_fallbacks_and_limits_load_from_config(tmp_path: Path) -> None:
    settings = settings_from(
        tmp_path,
        """
models:
  default: gpt-4
  providers:
    openai: {api_key: k, models: [gpt-4], weight: 3, max_concurrency: 8, rpm: 500,
             tpm: 90000, timeout_secs: 12.5}
  routing:
    rules:
      - {task: code, tags: [fast], models: [openai/gpt-4], max_cost_usd: 0.05}
      - {prefer_local: true, models: [ollama/llama2]}
  fallbacks:
    gpt-4: [deepseek/deepseek-chat]
""",
    )

    openai = settings.models.providers["openai"]
    rules = settings.models.routing.rules
    assert (openai.weight, openai.max_concurrency, openai.rpm, openai.tpm) == (3, 8, 500, 90000)
    assert openai.timeout_secs == 12.5
    assert rules[0].task == "code"
    assert rules[0].max_cost_usd == 0.05
    assert rules[1].prefer_local
    assert settings.models.fallbacks == {"gpt-4": ["deepseek/deepseek-chat"]}


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        ("models:\n  routing:\n    rules:\n      - {task: code, models: []}\n", "models"),
        ("models:\n  routing:\n    rules:\n      - {models: [gpt-4]}\n", "provider/model"),
        ("models:\n  catalogue:\n    gpt-4: {max_tokens: 5}\n", "provider/model"),
        ("models:\n  catalogue:\n    openai/gpt-4: {max_tokns: 5}\n", "max_tokns"),
        ("models:\n  providers:\n    x: {type: grpc}\n", "type"),
        ("models:\n  providers:\n    x: {timeout_secs: 0}\n", "timeout_secs"),
    ],
)
def test_registry_bad_models_config_is_a_config_error_naming_the_key(
    tmp_path: Path, yaml_text: str, key: str
) -> None:
    with pytest.raises(ConfigError, match=key):
        settings_from(tmp_path, yaml_text)


# -- docs/models.md ---------------------------------------------------------------------------

DOC = Path(__file__).parents[2] / "docs" / "models.md"


def doc_blocks(first_line: str) -> list[str]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    return [b for b in blocks if b.startswith(first_line)]


def test_models_doc_config_examples_load_and_resolve(tmp_path: Path) -> None:
    examples = doc_blocks("# config.yaml")
    assert len(examples) >= 4
    for example in examples:
        registry = ProviderRegistry(settings_from(tmp_path, example))
        for name in registry.names:
            for model in registry.models_of(name):
                assert registry.resolve(f"{name}/{model}").provider == name
        if "default:" in example:
            assert registry.resolve(None).id == "openai/gpt-4"


async def test_models_doc_script_example_plays_its_turns() -> None:
    (example,) = doc_blocks("# scripts/weather.yaml")
    provider = ScriptedProvider(
        scripts={"weather": Script.from_data(yaml.safe_load(example), name="weather")}
    )
    ask = Message(role="user", content="What's the weather in Paris?")

    first = await provider.complete(ModelRequest("weather", [ask]))
    result = Message(role="tool", content="21 C", tool_call_id=first.message.tool_calls[0].id)
    second = await provider.complete(ModelRequest("weather", [ask, first.message, result]))

    assert first.message.tool_calls[0].arguments == {"city": "Paris"}
    assert second.message.text == "It is 21 degrees in Paris."
