"""The gateway's routers; `promptline.gateway.app.create_gateway` includes every one listed
in `ROUTERS` (a new group of endpoints adds its module here)."""

from __future__ import annotations

from fastapi import APIRouter

from promptline.gateway.routes import catalog, channels, health, openai_compat

ROUTERS: list[APIRouter] = [health.router, catalog.router, channels.router, openai_compat.router]
