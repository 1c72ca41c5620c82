"""Bodies of ``promptline models ...``: the catalogue, and one real call put on the record."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from promptline.cli.runtime import (
    CliOptions,
    console,
    friendly_errors,
    load_settings,
    print_table,
    run,
    write_json,
)
from promptline.cli.runtime import services as open_services

if TYPE_CHECKING:
    from promptline.models.capabilities import ModelCapabilities
    from promptline.models.types import ModelResponse

DEFAULT_PROMPT = "Say hello in one short sentence."


def list_models(options: CliOptions, *, as_json: bool) -> None:
    """Print the catalogue: capabilities, prices, and which models are configured."""
    from promptline.models.registry import ProviderRegistry

    with friendly_errors():
        registry = ProviderRegistry(load_settings(options))
        entries = registry.catalogue()
    if as_json:
        write_json(
            [
                {"id": e.id, "configured": e.configured, **_capabilities_json(e.capabilities)}
                for e in entries
            ]
        )
        return
    numbers = ("context", "max tokens", "$/Mtok in", "$/Mtok out")
    print_table(
        ("id", "configured", "vision", "tools", "streaming", *numbers),
        (
            (
                e.id,
                "yes" if e.configured else "",
                _flag(e.capabilities.supports_vision),
                _flag(e.capabilities.supports_function_calling),
                _flag(e.capabilities.supports_streaming),
                f"{e.capabilities.context_window:,}",
                f"{e.capabilities.max_tokens:,}",
                _price(e.capabilities.input_price_per_mtok),
                _price(e.capabilities.output_price_per_mtok),
            )
            for e in entries
        ),
        right=numbers,
    )


def test_model(options: CliOptions, model: str, *, prompt: str | None, stream: bool) -> None:
    """One call to ``model`` through its provider, recorded in the event log; prints the answer,
    latency, time to first token, usage and cost."""
    from promptline.core.messages import Message
    from promptline.models.instrumented import CallContext, InstrumentedModel
    from promptline.models.registry import ProviderRegistry
    from promptline.models.types import ModelRequest, ModelResponse

    async def main() -> tuple[ModelResponse, str]:
        settings = load_settings(options)
        registry = ProviderRegistry(settings)
        try:
            provider, resolved = registry.provider_for(model)
            async with open_services(options) as app:
                caller = InstrumentedModel(
                    provider,
                    app.bus,
                    provider=resolved.provider,
                    capabilities=registry.capabilities,
                    context=CallContext(user_id="operator", agent_id="cli"),
                )
                request = ModelRequest(
                    model=resolved.model,
                    messages=[Message(role="user", content=prompt or DEFAULT_PROMPT)],
                )
                if not stream:
                    return await caller.complete(request), resolved.id
                final: ModelResponse | None = None
                async for item in caller.stream(request):
                    if isinstance(item, ModelResponse):
                        final = item
                    elif item.text:
                        sys.stdout.write(item.text)
                        sys.stdout.flush()
                sys.stdout.write("\n")
                assert final is not None, "a provider stream ends with its response"
                return final, resolved.id
        finally:
            await registry.aclose()

    response, model_id = run(main)
    _print_result(response, model_id, streamed=stream)


def _print_result(response: ModelResponse, model_id: str, *, streamed: bool) -> None:
    out = console()
    if not streamed and response.message.text:
        out.print(response.message.text, markup=False)
    for call in response.message.tool_calls:
        out.print(f"tool call: {call.name}({call.arguments})", markup=False)
    usage = response.usage
    ttft = f"{response.ttft_ms:.0f} ms" if response.ttft_ms is not None else "-"
    cost = f"${response.cost_usd:.6f}" if response.cost_usd is not None else "unknown"
    out.print(
        f"[dim]model[/] {model_id}  [dim]finish[/] {response.finish_reason or '-'}\n"
        f"[dim]latency[/] {response.latency_ms:.0f} ms  [dim]ttft[/] {ttft}\n"
        f"[dim]usage[/] {usage.input_tokens} in, {usage.output_tokens} out, "
        f"{usage.cached_tokens} cached, {usage.reasoning_tokens} reasoning  [dim]cost[/] {cost}"
    )


def _capabilities_json(caps: ModelCapabilities) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(caps)


def _flag(value: bool) -> str:
    return "yes" if value else "no"


def _price(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"
