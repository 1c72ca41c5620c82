"""The built-in catalogue: capabilities and list prices of well-known models, keyed
``provider/model``, and `lookup` with config overrides and a fallback for unknown models.

Prices are US dollars per million tokens, the providers' public list prices at the time of
writing (standard tier, shortest context band). They change; set ``models.catalogue.<id>`` in
the config to correct one without waiting for a release.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from promptline.core.errors import ConfigError
from promptline.models.capabilities import ModelCapabilities

__all__ = ["BUILTIN_CATALOGUE", "LOCAL_PROVIDERS", "UNKNOWN_MODEL", "lookup"]

LOCAL_PROVIDERS = frozenset({"ollama", "vllm", "lmstudio"})
"""Providers that run on the user's own hardware: their models cost nothing per token."""

UNKNOWN_MODEL = ModelCapabilities(
    supports_vision=False,
    supports_function_calling=True,
    supports_streaming=True,
    max_tokens=4096,
    context_window=8192,
    supports_json_schema=False,
)
"""What a model missing from the catalogue is assumed to do: text only, a small context, no
JSON schema, price unknown. Tool calling is assumed because nearly every current chat model has
it; a model without it rejects the request with a clear provider error."""


def _model(
    context: int,
    output: int,
    prices: tuple[float, float, float | None] | None,
    *,
    vision: bool = False,
    tools: bool = True,
    json_schema: bool = False,
) -> ModelCapabilities:
    input_price, output_price, cached_price = prices if prices else (None, None, None)
    return ModelCapabilities(
        supports_vision=vision,
        supports_function_calling=tools,
        supports_streaming=True,
        max_tokens=output,
        context_window=context,
        supports_json_schema=json_schema,
        input_price_per_mtok=input_price,
        output_price_per_mtok=output_price,
        cached_input_price_per_mtok=cached_price,
    )


_FREE = (0.0, 0.0, 0.0)

_MOONSHOT = {
    "moonshot-v1-8k": _model(8_192, 4_096, (0.20, 2.00, None)),
    "moonshot-v1-32k": _model(32_768, 8_192, (1.00, 3.00, None)),
    "moonshot-v1-128k": _model(131_072, 8_192, (2.00, 5.00, None)),
}

BUILTIN_CATALOGUE: dict[str, ModelCapabilities] = {
    # OpenAI
    "openai/gpt-4": _model(8_192, 8_192, (30.00, 60.00, None)),
    "openai/gpt-4o": _model(128_000, 16_384, (2.50, 10.00, 1.25), vision=True, json_schema=True),
    "openai/gpt-4o-mini": _model(
        128_000, 16_384, (0.15, 0.60, 0.075), vision=True, json_schema=True
    ),
    "openai/gpt-4.1": _model(1_047_576, 32_768, (2.00, 8.00, 0.50), vision=True, json_schema=True),
    "openai/gpt-3.5-turbo": _model(16_385, 4_096, (0.50, 1.50, None)),
    # DeepSeek (the cached price is its context-cache hit price)
    "deepseek/deepseek-chat": _model(128_000, 8_192, (0.28, 0.42, 0.028)),
    "deepseek/deepseek-reasoner": _model(128_000, 65_536, (0.28, 0.42, 0.028)),
    # Kimi / Moonshot. kimi-9b-exp is the seed configuration's example; no list price exists.
    "kimi/kimi-9b-exp": _model(32_768, 8_192, None),
    **{f"kimi/{name}": caps for name, caps in _MOONSHOT.items()},
    **{f"moonshot/{name}": caps for name, caps in _MOONSHOT.items()},
    # Anthropic (the cached price is the cache-read price)
    "anthropic/claude-3-5-sonnet-latest": _model(200_000, 8_192, (3.00, 15.00, 0.30), vision=True),
    "anthropic/claude-3-5-haiku-latest": _model(200_000, 8_192, (0.80, 4.00, 0.08), vision=True),
    "anthropic/claude-sonnet-4-0": _model(200_000, 64_000, (3.00, 15.00, 0.30), vision=True),
    "anthropic/claude-opus-4-0": _model(200_000, 32_000, (15.00, 75.00, 1.50), vision=True),
    # Google Gemini (prices for prompts up to 128k / 200k tokens)
    "gemini/gemini-1.5-pro": _model(
        2_097_152, 8_192, (1.25, 5.00, 0.3125), vision=True, json_schema=True
    ),
    "gemini/gemini-1.5-flash": _model(
        1_048_576, 8_192, (0.075, 0.30, 0.01875), vision=True, json_schema=True
    ),
    "gemini/gemini-2.0-flash": _model(
        1_048_576, 8_192, (0.10, 0.40, 0.025), vision=True, json_schema=True
    ),
    "gemini/gemini-2.5-pro": _model(
        1_048_576, 65_536, (1.25, 10.00, 0.125), vision=True, json_schema=True
    ),
    "gemini/gemini-2.5-flash": _model(
        1_048_576, 65_536, (0.30, 2.50, 0.03), vision=True, json_schema=True
    ),
    # Ollama (local: free). llama2 predates tool calling.
    "ollama/llama2": _model(4_096, 2_048, _FREE, tools=False),
    "ollama/mistral": _model(32_768, 8_192, _FREE),
    "ollama/llama3.1": _model(131_072, 8_192, _FREE),
    # The scripted provider's demo: accepts everything, costs nothing.
    "scripted/demo": _model(128_000, 4_096, _FREE, vision=True),
}
"""Capabilities and list prices of well-known models by ``provider/model`` id."""

_FIELDS = frozenset(f.name for f in fields(ModelCapabilities))


def lookup(
    model_id: str, overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> ModelCapabilities:
    """What ``model_id`` can do and costs, with ``overrides[model_id]`` (the config's
    ``models.catalogue``) applied on top; fields set to None in an override are ignored.

    A bare model name (``gpt-4o``) is found when exactly one provider's entry has it. A model
    the catalogue does not know gets `UNKNOWN_MODEL` (prices unknown), or the same with prices
    of 0 when its provider is local (`LOCAL_PROVIDERS`).
    """
    base = BUILTIN_CATALOGUE.get(model_id) or _by_bare_name(model_id) or _fallback(model_id)
    override = (overrides or {}).get(model_id)
    if not override:
        return base
    unknown = sorted(set(override) - _FIELDS)
    if unknown:
        raise ConfigError(
            f"models.catalogue.{model_id} has unknown field(s): {', '.join(unknown)}",
            hint=f"use only: {', '.join(sorted(_FIELDS))}",
        )
    return base.with_overrides({k: v for k, v in override.items() if v is not None})


def _by_bare_name(model_id: str) -> ModelCapabilities | None:
    if "/" in model_id:
        return None
    found = [caps for key, caps in BUILTIN_CATALOGUE.items() if key.split("/", 1)[1] == model_id]
    # kimi/ and moonshot/ share their entries: the same capabilities twice are one answer.
    return found[0] if found and all(caps == found[0] for caps in found) else None


def _fallback(model_id: str) -> ModelCapabilities:
    provider = model_id.split("/", 1)[0] if "/" in model_id else ""
    if provider in LOCAL_PROVIDERS:
        return UNKNOWN_MODEL.with_overrides(
            {"input_price_per_mtok": 0.0, "output_price_per_mtok": 0.0}
        )
    return UNKNOWN_MODEL
