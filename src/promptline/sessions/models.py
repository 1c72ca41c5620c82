"""The session record of a conversation, who is asking for it, and what a search returns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

from promptline.core.messages import Message
from promptline.core.sandbox import SandboxChoice

ContextState: TypeAlias = dict[str, Any]
"""What an agent keeps about a conversation between turns: any JSON object."""

SessionStatus = Literal["active", "expired", "deleted"]
"""``active`` takes messages; ``expired`` (past its TTL, or closed) keeps its data, read-only;
``deleted`` is hidden from every read (its events stay in the log)."""

PermissionMode = Literal["allow", "ask", "deny"]
"""What happens when a tool is called: run it, ask a person first, or refuse."""

DEFAULT_TENANT = "default"
"""The tenant of a single-tenant deployment."""


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ToolRef(_Record):
    """A tool a session may use: its registry name, an optional pinned version, its settings."""

    name: str = Field(min_length=1, max_length=255)
    version: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)


class PermissionSet(_Record):
    """Per-tool decisions for one session: tool name -> ``allow`` / ``ask`` / ``deny``."""

    rules: dict[str, PermissionMode] = Field(default_factory=dict)


class Session(_Record):
    """One conversation: who it belongs to, where it happens, its state and its history.

    A projection of the session's event stream: ``last_seq`` is the seq of the last event of
    that stream the record reflects, ``message_count`` the length of the full history (which
    may be longer than ``history`` when a read asked for only the latest messages).
    """

    id: str
    tenant_id: str = DEFAULT_TENANT
    user_id: str
    channel: str
    status: SessionStatus = "active"
    context: ContextState = Field(default_factory=dict)
    history: list[Message] = Field(default_factory=list)
    tools: list[ToolRef] = Field(default_factory=list)
    permissions: PermissionSet = Field(default_factory=PermissionSet)
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    sandbox: SandboxChoice | None = None
    """The session's own sandbox, set by an operator; None: it chose none. Its commands run
    in the strongest of this, its channel's and its agent's sandbox."""
    message_count: int = 0
    last_seq: int = 0


class Principal(_Record):
    """Who is asking: a user of a tenant, a tenant's admin, or (``admin``) an operator of the
    installation.

    A user sees and changes only its own sessions, in its own tenant. A ``tenant_admin``
    sees and changes every session of its own tenant (what an API key with the admin role
    gets). An ``admin`` sees and changes every session of every tenant (what the local CLI
    and operators need); give it only to people who run the installation, never to a
    tenant's users.
    """

    tenant_id: str = Field(default=DEFAULT_TENANT, min_length=1, max_length=255)
    user_id: str = Field(min_length=1, max_length=255)
    admin: bool = False
    tenant_admin: bool = False


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One message that matched a search.

    ``snippet`` is the matching part of the text with the matched words in ``[`` ``]``;
    ``rank`` orders the hits of one search (higher is better) and means nothing across
    searches or databases.
    """

    session_id: str
    idx: int
    message: Message
    snippet: str | None = None
    rank: float | None = None
