"""Who and what a tool call belongs to (`CallScope`), and the permission gate's answer to it
(`Authorization`): plain data that the tools' executor hands to the permission gate, so
neither package needs the other's code."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["Authorization", "CallScope"]


@dataclass(frozen=True, slots=True)
class CallScope:
    """Who and what a tool call belongs to; copied into every event of the call."""

    workspace: Path
    session_id: str | None = None
    run_id: str | None = None
    user_id: str | None = None
    tenant_id: str | None = None
    agent: str | None = None
    mode: Literal["plan", "act"] = "act"
    correlation_id: str | None = None
    session_rules: Mapping[str, Any] = field(default_factory=dict)
    """The session's own permission rules (tool name or pattern -> rule), most specific."""
    channel: str | None = None
    """The channel of the session (its ``security.sandbox_channels`` entry applies)."""
    session_sandbox: str | None = None
    """The session's own sandbox (None: it chose none); the strongest level wins."""


@dataclass(frozen=True, slots=True)
class Authorization:
    """The permission gate's answer for one call."""

    allowed: bool
    reason: str | None = None
    decided_by: str | None = None
