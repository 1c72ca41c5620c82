"""The JSON bodies of the REST resources, as pydantic models, so the OpenAPI document says
exactly what each endpoint takes and gives.

Requests are strict (a number where text is expected is refused, not converted) and refuse
unknown fields, so a misspelt field is an error rather than silently ignored. Responses
mirror the JSON forms of `promptline.gateway.service` field for field; times are the ISO
8601 strings those forms hold.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from promptline.core.jsonvalues import INT64_MAX
from promptline.core.messages import Message, Usage
from promptline.core.runs import RunRecordStatus
from promptline.core.sandbox import SandboxChoice
from promptline.gateway.service import MAX_CONTENT_CHARS
from promptline.sessions.models import PermissionMode, ToolRef

__all__ = [
    "ApprovalAnswer",
    "ApprovalOut",
    "ApprovalOutcomeOut",
    "ErrorOut",
    "EventOut",
    "MessageIn",
    "MessageStarted",
    "RunControlOut",
    "RunOut",
    "SearchHitOut",
    "SessionCreate",
    "SessionImport",
    "SessionOut",
    "SessionWithHistory",
    "StateEntryOut",
    "StateWrite",
    "error_responses",
]

Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
"""An ISO 8601 date and time with its UTC offset."""

Name = Annotated[str, Field(min_length=1, max_length=255)]

MAX_TTL_SECS = 10 * 365 * 24 * 3600


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


# -- errors -----------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    """What went wrong, and what to do (``details.hint``, when there is one)."""

    code: str = Field(description="Stable, for programs: `not_found`, `invalid_input`, ...")
    message: str = Field(description="For people.")
    details: dict[str, Any]


class ErrorOut(BaseModel):
    """Every error has this one shape."""

    error: ErrorDetail


_ERROR_MEANINGS = {
    401: "No API key, or one that is unknown or revoked.",
    403: "The key may not do this (a user naming another user's data).",
    404: "Unknown, or not the caller's (the two answer alike).",
    409: "A conflict: a busy or expired session, a decided request, a lost write race.",
    422: "Malformed JSON, a wrong type, a missing field, an unknown field.",
    429: "Too many requests for this key (see `Retry-After`).",
}


def error_responses(
    *statuses: int, media_type: str | None = None
) -> dict[int | str, dict[str, Any]]:
    """The documented error answers of endpoints, for ``responses=`` of a router or route.

    ``media_type`` names the errors' type explicitly, for a route whose own responses are
    of another (an event stream's errors are still JSON)."""
    if media_type is None:
        return {s: {"model": ErrorOut, "description": _ERROR_MEANINGS[s]} for s in statuses}
    schema = {"$ref": "#/components/schemas/ErrorOut"}
    return {
        s: {"description": _ERROR_MEANINGS[s], "content": {media_type: {"schema": schema}}}
        for s in statuses
    }


# -- sessions ---------------------------------------------------------------------------------


class SessionCreate(_Request):
    """A new session, owned by the caller."""

    agent: Name | None = Field(
        None,
        description="The agent that answers this session's messages when a message names "
        "none (kept as `metadata.agent`); the default agent if left out.",
    )
    channel: Name = Field("http", max_length=64, description="Where the conversation happens.")
    context: dict[str, Any] | None = Field(
        None, description="What the agent keeps about the conversation: any JSON object."
    )
    metadata: dict[str, Any] | None = Field(None, description="Your own data: any JSON object.")
    ttl_secs: float | None = Field(
        None,
        gt=0,
        le=MAX_TTL_SECS,
        description="Seconds until the session expires (default: `sessions.ttl_secs`; at "
        "most ten years).",
    )
    sandbox: SandboxChoice | None = Field(
        None,
        description="The session's own sandbox (scope `sessions:sandbox`: an operator or an "
        "admin). It only tightens: commands run in the strongest of it, the channel's and the "
        "agent's sandbox.",
    )


class SessionSandbox(_Request):
    """The sandbox a session's own level chooses."""

    sandbox: SandboxChoice = Field(
        description="auto, none, process, bubblewrap or docker; `none` takes the session's "
        "own choice back (it tightens nothing). Commands run in the strongest of it, the "
        "channel's and the agent's sandbox."
    )


class SessionOut(BaseModel):
    """A session, without its history."""

    id: str
    tenant_id: str
    user_id: str
    channel: str
    status: Literal["active", "expired"] = Field(
        description="`active` takes messages; `expired` keeps its data, read-only."
    )
    context: dict[str, Any]
    tools: list[ToolRef]
    permissions: dict[str, PermissionMode] = Field(
        description="Per-tool decisions of this session: tool name -> allow, ask or deny."
    )
    created_at: Timestamp
    updated_at: Timestamp
    expires_at: Timestamp | None
    metadata: dict[str, Any]
    sandbox: SandboxChoice | None = Field(
        None, description="The session's own sandbox (null: it chose none)."
    )
    message_count: int = Field(description="How many messages the whole history holds.")
    last_seq: int = Field(description="The seq of the last event of the session's stream.")


class SessionWithHistory(SessionOut):
    """A session with its history (the latest `history_limit` messages when asked)."""

    history: list[Message]


class SessionImport(_Request):
    """An export document to store as a session of the caller's tenant."""

    document: dict[str, Any] = Field(
        description='What `GET /v1/sessions/{id}/export` gave: `{"format": '
        '"promptline.session", "version": 1, "session": {...}, "history": [...]}`.'
    )
    as_new_id: bool = Field(False, description="Give the session a fresh id.")


class SearchHitOut(BaseModel):
    """A message that holds every word of the query."""

    session_id: str
    idx: int = Field(description="The message's place in the session's history, from 0.")
    message: Message
    snippet: str | None = Field(description="The matching text, matched words in [ ].")
    rank: float | None = Field(description="Orders the hits of one search; higher is better.")


# -- messages and runs ------------------------------------------------------------------------


class MessageIn(_Request):
    """A user message for a session; it starts the run that answers it."""

    content: str = Field(min_length=1, max_length=MAX_CONTENT_CHARS)
    agent: Name | None = Field(None, description="Default: the session's agent.")
    model: Name | None = Field(None, description="A model id or tag, for this run only.")
    mode: Literal["plan", "act"] | None = Field(None, description="Default: the agent's.")
    queue_mode: Literal["enqueue", "steer", "interrupt", "reject"] | None = Field(
        None,
        description="What happens while the session has a run in flight (default: the "
        "agent's): run after it, join it, cancel it first, or refuse (409).",
    )


class MessageStarted(BaseModel):
    """The message and the run answering it are on the record (they survive any crash)."""

    run_id: str = Field(
        description="The run answering the message (for queue mode `steer`: the run in flight "
        "it joined)."
    )
    session_id: str
    status: Literal["started"] = "started"
    position: int = Field(
        0,
        description="Unfinished runs of the session ahead of it when it was taken (0: it "
        "starts at once).",
    )


RunStatus = RunRecordStatus


class RunOut(BaseModel):
    """A run, as the event log tells it (`queued`: waiting for its session's turn;
    `steered`: its message joined the run in flight instead)."""

    run_id: str
    agent: str
    session_id: str | None
    user_id: str | None
    tenant_id: str | None
    status: RunStatus
    mode: str | None
    model: str | None
    input: str
    output: str
    iterations: int
    model_calls: int
    tool_calls: list[str] = Field(description="The names of the tools called, in order.")
    usage: Usage
    total_tokens: int
    cost_usd: float | None
    latency_ms: float | None
    started_at: Timestamp | None
    ended_at: Timestamp | None
    error: dict[str, Any] | None
    cancelled_by: str | None
    pending_approvals: list[str] = Field(description="Ids of the requests it waits for.")
    queued_at: Timestamp | None = Field(None, description="When its message was taken.")
    position: int | None = Field(
        None, description="Unfinished runs of its session ahead of it when it was queued."
    )
    steered_into: str | None = Field(
        None, description="For a message that joined the run in flight (`steered`): that run."
    )
    resumed: int = Field(0, description="How often it was resumed after a restart.")


class RunControlOut(BaseModel):
    """What a cancel, pause or resume did."""

    run_id: str
    status: Literal[
        "cancelling", "completed", "failed", "cancelled", "interrupted", "paused", "running"
    ] = Field(
        description="After cancel: how the run ended (`cancelling` if it has not ended within "
        "a few seconds); after pause: `paused` (at its next safe point); after resume: "
        "`running`."
    )


# -- approvals --------------------------------------------------------------------------------


class ApprovalOut(BaseModel):
    """A tool call waiting for a person's approval."""

    request_id: str
    tool: str
    arguments: dict[str, Any]
    reason: str | None
    call_id: str | None
    destructive: bool
    session_id: str | None
    run_id: str | None
    user_id: str | None
    requested_at: Timestamp
    expires_at: Timestamp


class ApprovalAnswer(_Request):
    """The answer to a permission request."""

    approve: bool
    scope: Literal["once", "session", "always"] = Field(
        "once",
        description="How far an approval reaches: this call, this tool for the rest of the "
        "session, or this tool for this user from now on. A refusal is always `once`.",
    )
    reason: str | None = Field(None, max_length=2000)
    content: dict[str, Any] | None = Field(
        None,
        description="The answer to a question (`tool` `mcp.<server>:elicitation`): the values "
        "of the fields its `arguments.requested_schema` asks for, with `approve: true`. Other "
        "requests take none.",
    )


class ApprovalOutcomeOut(BaseModel):
    """The recorded answer."""

    request_id: str
    tool: str
    approved: bool
    status: Literal["granted", "denied"]
    scope: Literal["once", "session", "always"]
    decided_by: str | None
    reason: str | None
    decided_at: Timestamp


# -- events -----------------------------------------------------------------------------------


class EventOut(BaseModel):
    """One event of the log: the envelope, and its typed `data` (see docs/events.md)."""

    id: str
    type: str
    stream: str = Field(description="A session id, a run id, or `global`.")
    seq: int = Field(description="Its place in its stream, from 1, without gaps.")
    position: int = Field(description="Its place in the whole log (the events cursor).")
    ts: Timestamp
    tenant_id: str | None
    user_id: str | None
    session_id: str | None
    run_id: str | None
    agent_id: str | None
    causation_id: str | None
    correlation_id: str | None
    schema_version: int
    data: dict[str, Any]


# -- state ------------------------------------------------------------------------------------


class StateWrite(_Request):
    """A value to store."""

    value: Any = Field(description="Any JSON value.")
    expected_version: int | None = Field(
        None,
        ge=0,
        le=INT64_MAX,
        description="Write only if the entry's version is this (0: only if it does not "
        "exist yet); 409 otherwise.",
    )


class StateEntryOut(BaseModel):
    """A stored value and its version."""

    scope: Literal["global", "session", "local"]
    key: str
    session_id: str | None = Field(description="The session, for the session scope.")
    value: Any
    version: int = Field(description="1 for the first write, one more for each write after.")
    updated_at: Timestamp
    expires_at: Timestamp | None
