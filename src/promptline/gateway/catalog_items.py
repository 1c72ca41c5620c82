"""The catalogue as every protocol shows it: the tools (with what the policy says of each for
the caller) and the known models."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from promptline.security.auth import Caller

if TYPE_CHECKING:
    from promptline.app import App

__all__ = ["model_items", "tool_items"]


def tool_items(app: App, caller: Caller) -> list[dict[str, Any]]:
    """Every registered tool as the API shows it: its schema, flags, and what the policy
    says of it for ``caller``."""
    items = []
    for tool in app.tools:
        decision = app.permissions.policy.decide(
            tool.name, read_only=tool.read_only, user=caller.user_id
        )
        items.append(
            {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
                "read_only": tool.read_only,
                "destructive": tool.destructive,
                "permission": decision.mode,
            }
        )
    return items


def model_items(app: App) -> list[dict[str, Any]]:
    """Every known model as the API shows it: capabilities, prices, configured or not."""
    items = []
    for entry in app.registry.catalogue():
        caps = entry.capabilities
        items.append(
            {
                "id": entry.id,
                "configured": entry.configured,
                "supports_vision": caps.supports_vision,
                "supports_function_calling": caps.supports_function_calling,
                "supports_streaming": caps.supports_streaming,
                "context_window": caps.context_window,
                "max_tokens": caps.max_tokens,
                "input_price_per_mtok": caps.input_price_per_mtok,
                "output_price_per_mtok": caps.output_price_per_mtok,
            }
        )
    return items
