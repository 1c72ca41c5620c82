"""What the gateway offers: its agents, tools and models."""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING

from promptline.client.models import Agent, CatalogueModel, Model, Tool, items_of

if TYPE_CHECKING:
    from promptline.client.async_client import AsyncPromptLine

__all__ = ["Agents", "Models", "Tools"]


class Agents:
    """``client.agents``: the configured agents."""

    def __init__(self, client: AsyncPromptLine) -> None:
        self._http = client.http

    async def list(self) -> builtins.list[Agent]:
        """Every agent."""
        answer = await self._http.request("GET", "/v1/agents")
        return [Agent.model_validate(item) for item in items_of(answer)]

    async def get(self, name: str) -> Agent:
        """One agent; `NotFoundError` when there is none of that name."""
        return Agent.model_validate(await self._http.request("GET", f"/v1/agents/{name}"))


class Tools:
    """``client.tools``: the registered tools."""

    def __init__(self, client: AsyncPromptLine) -> None:
        self._http = client.http

    async def list(self) -> builtins.list[Tool]:
        """Every tool, with what the permission policy says for the caller."""
        answer = await self._http.request("GET", "/v1/tools")
        return [Tool.model_validate(item) for item in items_of(answer)]


class Models:
    """``client.models``: the models an agent may use."""

    def __init__(self, client: AsyncPromptLine) -> None:
        self._http = client.http

    async def list(self) -> builtins.list[Model]:
        """The models of the OpenAI-compatible ``GET /v1/models``."""
        answer = await self._http.request("GET", "/v1/models")
        return [Model.model_validate(item) for item in items_of(answer)]

    async def catalogue(self) -> builtins.list[CatalogueModel]:
        """Every known model: capabilities, prices, and whether it is configured."""
        answer = await self._http.request("GET", "/v1/models/catalogue")
        return [CatalogueModel.model_validate(item) for item in items_of(answer)]
