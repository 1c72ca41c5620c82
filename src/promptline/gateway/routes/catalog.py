"""What the installation offers: agents, tools and models."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from promptline.core.errors import NotFoundError
from promptline.gateway.catalog_items import model_items, tool_items
from promptline.gateway.deps import CallerDep, gateway
from promptline.runtime.agent import Agent

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


@router.get("/agents", summary="List the agents")
async def list_agents(request: Request, caller: CallerDep) -> dict[str, Any]:
    """Every configured agent (and the built-in ``assistant``)."""
    runtime = gateway(request).app.runtime
    return {"items": [agent_json(a) for a in runtime.agents.values()], "next_cursor": None}


@router.get("/agents/{name}", summary="One agent")
async def get_agent(name: str, request: Request, caller: CallerDep) -> dict[str, Any]:
    """The agent ``name``; 404 when there is none."""
    return agent_json(gateway(request).app.runtime.agent(name))


@router.get("/tools", summary="List the tools")
async def list_tools(request: Request, caller: CallerDep) -> dict[str, Any]:
    """Every registered tool: its schema, flags, and what the policy says for the caller."""
    return {"items": tool_items(gateway(request).app, caller), "next_cursor": None}


@router.get("/models/catalogue", summary="The model catalogue")
async def list_models(request: Request, caller: CallerDep) -> dict[str, Any]:
    """Every known model: its capabilities, prices, and whether it is configured here."""
    items = model_items(gateway(request).app)
    if not items:
        raise NotFoundError("no model is known")
    return {"items": items, "next_cursor": None}
