"""Roles and what they may do: ONE table, `ROLE_SCOPES`, the source of truth.

Every REST route, WebSocket method and MCP call names the scope it needs; a caller whose
role does not grant it is refused (403). docs/auth.md's table is this one (a test compares
them).
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "ROLES",
    "ROLE_SCOPES",
    "SCOPES",
    "Role",
    "Scope",
    "scopes_of",
]

Role = Literal["admin", "operator", "user", "viewer"]
ROLES: tuple[Role, ...] = get_args(Role)

Scope = Literal[
    "catalog:read",
    "sessions:read",
    "sessions:write",
    "sessions:sandbox",
    "runs:read",
    "runs:write",
    "approvals:read",
    "approvals:write",
    "events:read",
    "state:read",
    "state:write",
    "channels:write",
    "tenant:all",
    "keys:admin",
    "members:admin",
]

SCOPES: dict[Scope, str] = {
    "catalog:read": "list agents, tools, skills, packages, models and MCP servers",
    "sessions:read": "read sessions, their messages and exports",
    "sessions:write": "create, change, import and delete sessions",
    "sessions:sandbox": "choose a session's own sandbox (it can only make the sandbox its "
    "commands run in stricter)",
    "runs:read": "read runs",
    "runs:write": "send messages (start runs), cancel, pause and resume runs, call MCP tools",
    "approvals:read": "list pending approvals",
    "approvals:write": "answer approvals",
    "events:read": "read and follow the event log",
    "state:read": "read state values",
    "state:write": "write state values",
    "channels:write": "send messages through the HTTP channel",
    "tenant:all": "reach every user's sessions, runs and approvals of the tenant, not only "
    "one's own",
    "keys:admin": "create, list and revoke API keys of the tenant",
    "members:admin": "add, list, change (role, password) and remove the tenant's members",
}
"""Every scope, and what it allows."""

_READ: frozenset[Scope] = frozenset(
    {
        "catalog:read",
        "sessions:read",
        "runs:read",
        "approvals:read",
        "events:read",
        "state:read",
    }
)
_WRITE: frozenset[Scope] = frozenset(
    {"sessions:write", "runs:write", "approvals:write", "state:write", "channels:write"}
)

ROLE_SCOPES: dict[Role, frozenset[Scope]] = {
    "admin": frozenset(SCOPES),
    "operator": _READ | _WRITE | {"tenant:all", "sessions:sandbox"},
    "user": _READ | _WRITE,
    "viewer": _READ,
}
"""What each role may do. ``admin`` everything; ``operator`` runs and approves across the
tenant and chooses sessions' sandboxes, but manages no keys; ``user`` works in its own
sessions; ``viewer`` only reads its own."""


def scopes_of(role: str) -> frozenset[Scope]:
    """The scopes of ``role`` (none for a role this table does not know)."""
    for known, scopes in ROLE_SCOPES.items():
        if known == role:
            return scopes
    return frozenset()
