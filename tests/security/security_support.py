"""Tools, settings and waiting helpers shared by the permission tests."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from promptline.config import Settings
from promptline.core.events import Event, PermissionRequestEvent
from promptline.events.bus import BusSubscription
from promptline.tools.executor import CallScope
from promptline.tools.function import FunctionTool, tool

# Bounds a wait that should end at once; only reached if the code under test is broken.
STUCK = 10.0


def settings(**data: Any) -> Settings:
    """Settings from keyword sections, as they would be written in config.yaml."""
    return Settings.model_validate(data)


def scope(
    session_id: str | None = "s1",
    *,
    user: str | None = "alice",
    agent: str | None = None,
    tenant: str | None = None,
    rules: dict[str, Any] | None = None,
    run_id: str | None = "run1",
) -> CallScope:
    return CallScope(
        workspace=Path("."),
        session_id=session_id,
        run_id=run_id,
        user_id=user,
        tenant_id=tenant,
        agent=agent,
        session_rules=rules or {},
    )


async def next_event(sub: BusSubscription) -> Event:
    return await asyncio.wait_for(anext(sub), STUCK)


async def next_request(sub: BusSubscription) -> PermissionRequestEvent:
    """The next ``permission_request`` on a subscription that receives them."""
    while True:
        event = await next_event(sub)
        if isinstance(event, PermissionRequestEvent):
            return event


@tool(read_only=True, inline=True)
def file_read(path: str) -> str:
    """Read a file."""
    return f"contents of {path}"


@tool(inline=True)
def file_write(path: str, text: str) -> str:
    """Write a file."""
    return f"wrote {len(text)} characters to {path}"


@tool(destructive=True, inline=True)
def file_delete(path: str) -> str:
    """Delete a file."""
    return f"deleted {path}"


@tool(inline=True)
def shell_execute(command: str) -> str:
    """Run a shell command."""
    return f"ran {command}"


@tool(inline=True)
def git_commit(message: str) -> str:
    """Commit."""
    return f"committed {message}"


def _create_issue(title: str) -> str:
    """Open an issue."""
    return f"opened {title}"


create_issue = FunctionTool(_create_issue, name="mcp.github.create_issue", inline=True)

TOOLS = [file_read, file_write, file_delete, shell_execute, git_commit, create_issue]
