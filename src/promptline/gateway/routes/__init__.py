"""The gateway's routers; `promptline.gateway.app.create_gateway` includes every one listed
in `ROUTERS` (a new group of endpoints adds its module here)."""

from __future__ import annotations

from fastapi import APIRouter

from promptline.gateway.routes import (
    approvals,
    auth,
    catalog,
    channels,
    events,
    health,
    members,
    messages,
    openai_compat,
    quotas,
    responses,
    runs,
    sessions,
    state,
    ws,
)

ROUTERS: list[APIRouter] = [health.router, catalog.router, channels.router, openai_compat.router]
ROUTERS += [responses.router]  # OpenAI's Responses API
ROUTERS += [auth.router, members.router]  # tokens, roles, API keys, members
ROUTERS += [sessions.router, messages.router, runs.router, approvals.router]  # REST
ROUTERS += [events.router, state.router, quotas.router]  # REST
ROUTERS += [ws.router]  # WebSocket control plane
