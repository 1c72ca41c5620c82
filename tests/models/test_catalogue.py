"""The built-in catalogue: the models it must know, sane figures, lookup with overrides and the
fallback for unknown models."""

from __future__ import annotations

import pytest

from promptline.core.errors import ConfigError
from promptline.core.messages import Usage
from promptline.models.catalogue import BUILTIN_CATALOGUE, UNKNOWN_MODEL, lookup
from promptline.models.scripted import SCRIPTED_CAPABILITIES

REQUIRED = [
    "openai/gpt-4",
    "openai/gpt-4o",
    "openai/gpt-4o-mini",
    "openai/gpt-4.1",
    "openai/gpt-3.5-turbo",
    "deepseek/deepseek-chat",
    "deepseek/deepseek-reasoner",
    "kimi/kimi-9b-exp",
    "kimi/moonshot-v1-8k",
    "kimi/moonshot-v1-32k",
    "kimi/moonshot-v1-128k",
    "anthropic/claude-3-5-sonnet-latest",
    "anthropic/claude-3-5-haiku-latest",
    "anthropic/claude-sonnet-4-0",
    "anthropic/claude-opus-4-0",
    "gemini/gemini-1.5-pro",
    "gemini/gemini-1.5-flash",
    "gemini/gemini-2.0-flash",
    "gemini/gemini-2.5-pro",
    "gemini/gemini-2.5-flash",
    "ollama/llama2",
    "ollama/mistral",
    "ollama/llama3.1",
    "scripted/demo",
]


def test_catalogue_knows_every_well_known_model() -> None:
    assert set(REQUIRED) <= set(BUILTIN_CATALOGUE)


@pytest.mark.parametrize("model_id", sorted(BUILTIN_CATALOGUE))
def test_every_entry_has_consistent_figures(model_id: str) -> None:
    caps = BUILTIN_CATALOGUE[model_id]

    assert 0 < caps.max_tokens <= caps.context_window
    assert caps.supports_streaming
    prices = (caps.input_price_per_mtok, caps.output_price_per_mtok)
    assert (None in prices) == (prices == (None, None))  # both known or both unknown
    if caps.cached_input_price_per_mtok is not None:
        assert caps.input_price_per_mtok is not None
        assert caps.cached_input_price_per_mtok <= caps.input_price_per_mtok


def test_local_and_scripted_models_are_free() -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)

    for model_id in ("ollama/llama2", "ollama/mistral", "ollama/llama3.1", "scripted/demo"):
        assert BUILTIN_CATALOGUE[model_id].cost(usage) == 0.0


def test_scripted_demo_entry_matches_what_the_scripted_provider_declares() -> None:
    assert BUILTIN_CATALOGUE["scripted/demo"] == SCRIPTED_CAPABILITIES


def test_list_price_gives_a_cost() -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=500_000, cached_tokens=200_000)

    # gpt-4o: 800k fresh at $2.50, 200k cached at $1.25, 500k out at $10.
    assert lookup("openai/gpt-4o").cost(usage) == pytest.approx(2.0 + 0.25 + 5.0)


def test_vision_where_expected() -> None:
    assert lookup("openai/gpt-4o").supports_vision
    assert lookup("anthropic/claude-sonnet-4-0").supports_vision
    assert not lookup("openai/gpt-3.5-turbo").supports_vision
    assert not lookup("ollama/llama2").supports_function_calling


def test_override_replaces_fields_and_ignores_unset_ones() -> None:
    caps = lookup(
        "openai/gpt-4o",
        {"openai/gpt-4o": {"input_price_per_mtok": 1.0, "context_window": None}},
    )

    assert caps.input_price_per_mtok == 1.0
    assert caps.context_window == BUILTIN_CATALOGUE["openai/gpt-4o"].context_window
    assert BUILTIN_CATALOGUE["openai/gpt-4o"].input_price_per_mtok == 2.50  # table untouched


def test_override_for_an_unknown_model_builds_on_the_fallback() -> None:
    caps = lookup(
        "acme/turbo", {"acme/turbo": {"input_price_per_mtok": 1, "output_price_per_mtok": 2}}
    )

    assert caps.context_window == UNKNOWN_MODEL.context_window
    assert caps.cost(Usage(input_tokens=1_000_000, output_tokens=1_000_000)) == 3.0


def test_override_with_an_unknown_field_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"models\.catalogue\.openai/gpt-4\b.*vision") as caught:
        lookup("openai/gpt-4", {"openai/gpt-4": {"vision": True}})

    assert caught.value.hint is not None
    assert "supports_vision" in caught.value.hint


def test_unknown_model_gets_conservative_defaults_and_no_price() -> None:
    caps = lookup("acme/turbo-9000")

    assert caps == UNKNOWN_MODEL
    assert not caps.supports_vision
    assert not caps.supports_json_schema
    assert caps.context_window == 8192
    assert caps.cost(Usage(input_tokens=10, output_tokens=10)) is None


def test_unknown_model_of_a_local_provider_is_free() -> None:
    caps = lookup("ollama/qwen2.5:7b")

    assert caps.cost(Usage(input_tokens=10, output_tokens=10)) == 0.0
    assert caps.context_window == UNKNOWN_MODEL.context_window


def test_bare_name_found_when_one_provider_has_it() -> None:
    assert lookup("gpt-4o-mini") == BUILTIN_CATALOGUE["openai/gpt-4o-mini"]
    assert lookup("moonshot-v1-8k") == BUILTIN_CATALOGUE["kimi/moonshot-v1-8k"]
    assert lookup("no-such-model") == UNKNOWN_MODEL
