"""What the installation offers: agents, tools, skills, tool packages, MCP servers and models."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from promptline.core.errors import NotFoundError, PermissionDeniedError
from promptline.gateway.catalog_items import (
    mcp_server_items,
    model_items,
    package_items,
    skill_item,
    skill_items,
    tool_items,
)
from promptline.gateway.deps import CallerDep, gateway, needs
from promptline.runtime.agent import Agent
from promptline.security.auth import Caller

router = APIRouter(prefix="/v1", tags=["catalog"])


def agent_json(agent: Agent) -> dict[str, Any]:
    """An agent as the API shows it."""
    return {
        "name": agent.name,
        "description": agent.description,
        "model": agent.model,
        "mode": agent.mode,
        "tools": list(agent.tools) if agent.tools is not None else None,
        "max_iterations": agent.max_iterations,
        "queue_mode": agent.queue_mode,
    }


@router.get("/agents", dependencies=[needs("catalog:read")], summary="List the agents")
async def list_agents(request: Request, caller: CallerDep) -> dict[str, Any]:
    """Every configured agent (and the built-in ``assistant``)."""
    runtime = gateway(request).app.runtime
    return {"items": [agent_json(a) for a in runtime.agents.values()], "next_cursor": None}


@router.get("/agents/{name}", dependencies=[needs("catalog:read")], summary="One agent")
async def get_agent(name: str, request: Request, caller: CallerDep) -> dict[str, Any]:
    """The agent ``name``; 404 when there is none."""
    return agent_json(gateway(request).app.runtime.agent(name))


@router.get("/tools", dependencies=[needs("catalog:read")], summary="List the tools")
async def list_tools(request: Request, caller: CallerDep) -> dict[str, Any]:
    """Every registered tool: its schema, flags, and what the policy says for the caller."""
    return {"items": tool_items(gateway(request).app, caller), "next_cursor": None}


@router.get(
    "/tools/packages",
    dependencies=[needs("catalog:read")],
    summary="List the tool packages (admin)",
)
async def list_packages(request: Request, caller: CallerDep) -> dict[str, Any]:
    """Every tool package found: loaded (version, tools), failed (why), disabled or blocked."""
    _admin_only(caller, "tool packages")
    return {"items": package_items(gateway(request).app), "next_cursor": None}


@router.get("/skills", dependencies=[needs("catalog:read")], summary="List the skills")
async def list_skills(request: Request, caller: CallerDep) -> dict[str, Any]:
    """Every skill found and its state: available, unavailable (why), disabled, broken or
    shadowed; a skill's folder is shown to admins only."""
    return {"items": skill_items(gateway(request).app, caller), "next_cursor": None}


@router.get(
    "/skills/{name}",
    dependencies=[needs("catalog:read")],
    summary="One skill, with its instructions",
)
async def get_skill(name: str, request: Request, caller: CallerDep) -> dict[str, Any]:
    """The skill ``name`` (its instructions and files when agents are offered it); 404 when
    there is none."""
    app = gateway(request).app
    if not app.settings.skills.enabled:
        raise NotFoundError(f"no skill {name!r}: skills are off", hint="set skills.enabled")
    status = app.skills.require(name, app.tools.names())
    return skill_item(status, admin=caller.is_admin, instructions=True)


@router.get(
    "/mcp/servers", dependencies=[needs("catalog:read")], summary="List the MCP servers (admin)"
)
async def list_mcp_servers(request: Request, caller: CallerDep) -> dict[str, Any]:
    """Every configured MCP server: transport, state, tool count, last error."""
    _admin_only(caller, "MCP servers")
    return {"items": mcp_server_items(gateway(request).app), "next_cursor": None}


def _admin_only(caller: Caller, what: str) -> None:
    # Their errors and targets name programs and paths of the host.
    if not caller.is_admin:
        raise PermissionDeniedError(
            f"only an admin key may list the {what}", hint="use a key made with --role admin"
        )


@router.get(
    "/models/catalogue", dependencies=[needs("catalog:read")], summary="The model catalogue"
)
async def list_models(request: Request, caller: CallerDep) -> dict[str, Any]:
    """Every known model: its capabilities, prices, and whether it is configured here."""
    items = model_items(gateway(request).app)
    if not items:
        raise NotFoundError("no model is known")
    return {"items": items, "next_cursor": None}
