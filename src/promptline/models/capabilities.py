"""What a model can do and what it costs (``ModelCapabilities``), and the built-in catalogue."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from promptline.core.messages import Usage


@dataclass(frozen=True, slots=True)
class ModelCapabilities:
    """Capability declaration of one model (the fields of the product brief) plus pricing in
    US dollars per million tokens (``None``: unknown; local models are 0)."""

    supports_vision: bool = False
    supports_function_calling: bool = True
    supports_streaming: bool = True
    max_tokens: int = 4096
    context_window: int = 8192
    supports_json_schema: bool = False
    input_price_per_mtok: float | None = None
    output_price_per_mtok: float | None = None
    cached_input_price_per_mtok: float | None = None

    def cost(self, usage: Usage) -> float | None:
        """Dollars ``usage`` costs on this model (None when its prices are unknown)."""
        if self.input_price_per_mtok is None or self.output_price_per_mtok is None:
            return None
        cached = min(usage.cached_tokens, usage.input_tokens)
        cached_price = (
            self.cached_input_price_per_mtok
            if self.cached_input_price_per_mtok is not None
            else self.input_price_per_mtok
        )
        return (
            (usage.input_tokens - cached) * self.input_price_per_mtok
            + cached * cached_price
            + usage.output_tokens * self.output_price_per_mtok
        ) / 1_000_000

    def with_overrides(self, overrides: dict[str, Any]) -> ModelCapabilities:
        """A copy with the given fields replaced (from config)."""
        return replace(self, **overrides)
