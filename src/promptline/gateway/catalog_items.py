"""The catalogue as every protocol shows it: the tools (with what the policy says of each for
the caller), the skills, the tool packages, the MCP servers and the known models."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from promptline.security.auth import Caller

if TYPE_CHECKING:
    from promptline.app import App
    from promptline.tools.skills import SkillStatus

__all__ = [
    "mcp_server_items",
    "model_items",
    "package_items",
    "skill_item",
    "skill_items",
    "tool_items",
]


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


def skill_items(app: App, caller: Caller) -> list[dict[str, Any]]:
    """Every skill found, with its state (available, unavailable, disabled, broken, shadowed)
    judged against the registered tools; empty when skills are off."""
    if not app.settings.skills.enabled:
        return []
    names = app.tools.names()
    return [skill_item(s, admin=caller.is_admin) for s in app.skills.statuses(names)]


def skill_item(status: SkillStatus, *, admin: bool, instructions: bool = False) -> dict[str, Any]:
    """One skill as the API shows it; its folder only to admins (it is a path on the host),
    its instructions only when asked for (and only when it is offered to agents)."""
    skill = status.skill
    item: dict[str, Any] = {
        "name": status.name,
        "version": status.version,
        "state": status.state,
        "reason": status.reason,
        "description": skill.summary if skill else None,
        "origin": status.source.origin,
    }
    if admin:
        item["path"] = str(status.path)
    if instructions:
        item["instructions"] = skill.body if skill and status.available else None
        item["files"] = list(skill.files) if skill and status.available else []
    return item


def package_items(app: App) -> list[dict[str, Any]]:
    """Every tool package found, with its state, version, tools or error."""
    return [s.to_dict() for s in app.plugins.statuses()]


def mcp_server_items(app: App) -> list[dict[str, Any]]:
    """Every configured MCP server with its connection state (nothing is connected to tell)."""
    if not app.settings.mcp_servers:
        return []
    return [s.to_dict() for s in app.mcp.status()]
