"""The ``params`` of each control-plane method, as pydantic models: strict (a number where
text is expected is refused, not converted) and closed (an unknown member is an error, so a
misspelt one is not silently ignored)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from promptline.core.jsonvalues import INT64_MAX
from promptline.core.sandbox import SandboxChoice
from promptline.gateway.schemas import MAX_TTL_SECS
from promptline.gateway.service import MAX_CONTENT_CHARS
from promptline.runtime.ingress import MAX_IDEMPOTENCY_KEY

__all__ = [
    "EventsSubscribe",
    "EventsUnsubscribe",
    "NoParams",
    "PermissionRespond",
    "RunControl",
    "SessionCreate",
    "SessionSend",
    "StateGet",
    "StateSet",
]

Name = Annotated[str, Field(min_length=1, max_length=255)]
Scope = Literal["global", "session", "local"]


class NoParams(BaseModel):
    """A method that takes nothing (``params`` left out, or ``{}``)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class SessionCreate(NoParams):
    """``session.create``: a new session owned by the caller."""

    agent: Name | None = None
    channel: Annotated[str, Field(min_length=1, max_length=64)] = "websocket"
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    ttl_secs: Annotated[float, Field(gt=0, le=MAX_TTL_SECS)] | None = None
    sandbox: SandboxChoice | None = None
    """The session's own sandbox (scope ``sessions:sandbox``)."""


class SessionSend(NoParams):
    """``session.send``: a user message for a session; starts the run answering it."""

    session_id: Name
    content: Annotated[str, Field(min_length=1, max_length=MAX_CONTENT_CHARS)]
    agent: Name | None = None
    model: Name | None = None
    mode: Literal["plan", "act"] | None = None
    queue_mode: Literal["enqueue", "steer", "interrupt", "reject"] | None = None
    client_msg_id: Annotated[str, Field(min_length=1, max_length=MAX_IDEMPOTENCY_KEY)] | None = None
    """The client's id of the message: a retry with the same id gets the first answer back
    and starts nothing new, even across restarts and reconnections."""


class RunControl(NoParams):
    """``run.cancel``, ``run.pause``, ``run.resume``."""

    run_id: Name


class PermissionRespond(NoParams):
    """``permission.respond``: the answer to a pending permission request."""

    request_id: Name
    approve: bool
    scope: Literal["once", "session", "always"] = "once"
    reason: Annotated[str, Field(max_length=2000)] | None = None
    content: dict[str, Any] | None = None
    """The answer to a question (an MCP server's elicitation)."""


class EventsSubscribe(NoParams):
    """``events.subscribe``: a session's events, from after ``from_seq`` (left out: only
    events from now on)."""

    session_id: Name
    from_seq: Annotated[int, Field(ge=0, le=INT64_MAX)] | None = None


class EventsUnsubscribe(NoParams):
    """``events.unsubscribe``."""

    subscription: Name


class StateGet(NoParams):
    """``state.get``: one key of the caller's tenant (``global``), of a session
    (``session``, with ``session_id``) or the caller's own (``local``)."""

    scope: Scope
    key: Annotated[str, Field(min_length=1, max_length=400)]
    session_id: Name | None = None


class StateSet(StateGet):
    """``state.set``: write a value (a compare-and-set with ``expected_version``)."""

    value: Any
    expected_version: Annotated[int, Field(ge=0, le=INT64_MAX)] | None = None
