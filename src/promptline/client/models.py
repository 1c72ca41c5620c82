"""What the gateway answers, as typed records. Fields a newer server adds are kept (read
them with ``model_extra``), never refused."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from promptline.core.messages import Message, Usage
from promptline.core.runs import OPEN_STATUSES

__all__ = [
    "Agent",
    "Approval",
    "ApprovalOutcome",
    "CatalogueModel",
    "Model",
    "Page",
    "Run",
    "RunStatus",
    "SearchHit",
    "Session",
    "StartedRun",
    "StateEntry",
    "Tool",
    "items_of",
]

T = TypeVar("T")

Scope = Literal["global", "session", "local"]
GrantScope = Literal["once", "session", "always"]
Mode = Literal["plan", "act"]
QueueMode = Literal["enqueue", "steer", "interrupt", "reject"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class Page(_Record, Generic[T]):
    """One page of a list; pass ``next_cursor`` as ``cursor`` to read the next (None: the
    last page)."""

    items: list[T] = Field(default_factory=list)
    next_cursor: str | None = None


class Session(_Record):
    """A conversation: whose it is, where it happens, its state and (when asked) history."""

    id: str
    tenant_id: str = "default"
    user_id: str = ""
    channel: str = ""
    status: str = "active"
    context: dict[str, Any] = Field(default_factory=dict)
    history: list[Message] = Field(default_factory=list)
    tools: list[Any] = Field(default_factory=list)
    permissions: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    expires_at: datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    sandbox: str | None = None
    """The session's own sandbox (None: it chose none); its commands run in the strongest
    of it, its channel's and its agent's."""
    message_count: int = 0
    last_seq: int = 0
    """The seq of the last event of the session's stream this record reflects: subscribe
    with ``from_seq=last_seq`` to get only what happens next."""


class StartedRun(_Record):
    """A run that a message started (it goes on in the gateway)."""

    run_id: str
    session_id: str | None = None
    status: str = "started"
    position: int = 0
    """Unfinished runs of the session ahead of it when the message was taken."""


class Run(_Record):
    """A run's record, folded from its events: who, what, how it ended, what it used."""

    run_id: str
    agent: str = ""
    session_id: str | None = None
    user_id: str | None = None
    tenant_id: str | None = None
    status: str = "running"
    """queued, running, waiting_approval, completed, failed, cancelled, interrupted or
    steered (its message joined the run in flight: ``steered_into``)."""
    mode: str | None = None
    model: str | None = None
    input: str = ""
    output: str = ""
    iterations: int = 0
    model_calls: int = 0
    tool_calls: list[str] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    total_tokens: int = 0
    cost_usd: float | None = None
    latency_ms: float | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    error: dict[str, Any] | None = None
    cancelled_by: str | None = None
    pending_approvals: list[str] = Field(default_factory=list)
    queued_at: datetime | None = None
    position: int | None = None
    steered_into: str | None = None
    resumed: int = 0

    @property
    def ended(self) -> bool:
        """True once the run has a final status."""
        return self.status not in OPEN_STATUSES


class RunStatus(_Record):
    """The answer to cancel, pause or resume: the run and its status now."""

    run_id: str
    status: str


class Approval(_Record):
    """A tool call waiting for someone's decision."""

    request_id: str
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    reason: str | None = None
    call_id: str | None = None
    destructive: bool = False
    session_id: str | None = None
    run_id: str | None = None
    user_id: str | None = None
    requested_at: datetime | None = None
    expires_at: datetime | None = None


class ApprovalOutcome(_Record):
    """The recorded answer to a permission request."""

    request_id: str | None = None
    tool: str | None = None
    approved: bool | None = None
    status: str | None = None
    """granted, denied, or how it timed out."""
    scope: str | None = None
    decided_by: str | None = None
    reason: str | None = None
    decided_at: datetime | None = None


class SearchHit(_Record):
    """A message that matched a search; ``snippet`` marks the matched words with [ ]."""

    session_id: str
    idx: int
    message: Message
    snippet: str | None = None
    rank: float | None = None


class StateEntry(_Record):
    """A stored value and its version (pass it as ``expected_version`` to compare-and-set)."""

    value: Any = None
    version: int | None = None
    scope: str | None = None
    key: str | None = None
    updated_at: datetime | None = None
    expires_at: datetime | None = None


class Agent(_Record):
    """A configured agent."""

    name: str
    description: str = ""
    model: str | None = None
    mode: str | None = None
    tools: list[str] | None = None
    max_iterations: int | None = None
    queue_mode: str | None = None


class Tool(_Record):
    """A registered tool, and what the permission policy says of it for the caller."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)
    read_only: bool = False
    destructive: bool = False
    permission: str | None = None


class Model(_Record):
    """A model as the OpenAI-compatible ``GET /v1/models`` lists it."""

    id: str
    object: str = "model"
    created: int | None = None
    owned_by: str | None = None


class CatalogueModel(_Record):
    """A model of the catalogue: capabilities, prices, and whether it is configured here."""

    id: str
    configured: bool = False
    supports_vision: bool | None = None
    supports_function_calling: bool | None = None
    supports_streaming: bool | None = None
    context_window: int | None = None
    max_tokens: int | None = None
    input_price_per_mtok: float | None = None
    output_price_per_mtok: float | None = None


def items_of(answer: Any) -> list[Any]:
    """The items of a list answer: ``{"items": [...]}``, OpenAI's ``{"data": [...]}``, or a
    bare list."""
    if isinstance(answer, dict):
        for name in ("items", "data"):
            found = answer.get(name)
            if isinstance(found, list):
                return found
        return []
    return answer if isinstance(answer, list) else []
