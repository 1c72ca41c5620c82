"""The event envelope and every event type: a pydantic union discriminated by ``type``.

Every event shares the envelope (ids, stream, per-stream ``seq``, global ``position``,
timestamps, who/where) and carries a typed ``data`` payload. An event whose ``type`` this
version does not know decodes as `UnknownEvent`, which keeps its payload and any extra
envelope fields so it round-trips unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeAlias, TypeVar, cast, get_args

from orjson import OPT_UTC_Z as _UTC_Z
from orjson import dumps as _dumps
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import PydanticUndefined

from promptline.core.clock import utcnow
from promptline.core.errors import InvalidInputError, describe_validation
from promptline.core.ids import new_id
from promptline.core.messages import Message, ToolCall, ToolResult, Usage

SCHEMA_VERSION = 1
"""Version of the event payload schemas written by this release."""

COMPACT_COMMAND_VERSION = 2
"""The ``schema_version`` of an ``llm_command`` stored compact: its prompt refers to the
messages already in its stream by seq and to its system prompt and tools by content hash
(see `LlmCommand`). An ``llm_command`` of version 1 carries its whole prompt inline."""

GLOBAL_STREAM = "global"
"""Stream of events that belong to no session."""

StateScope = Literal["global", "session", "local"]
LifecycleState = Literal[
    "created", "initializing", "ready", "running", "paused", "stopping", "stopped", "error"
]


# Every model here is built on first use (``defer_build``), not at import: building all of them
# (and the union below) is most of what importing the event types costs, and a command or a
# program that touches a few event types should not pay for the rest.


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


# -- payloads ---------------------------------------------------------------------------------


PromptPiece: TypeAlias = int | tuple[int, int]
"""One piece of a compact prompt's ``layout``: ``0`` is the next message of ``messages``
(inline); ``[a, b]`` is every message the stream's events with seq ``a`` to ``b`` added to
the conversation (`conversation_message`), in seq order."""


class LlmCommand(_Data):
    """A request about to be sent to a model.

    As written by the model wrapper, ``messages`` and ``tools`` are the whole prompt. The
    event store keeps it compact (``schema_version`` 2): the leading system messages and the
    tool list are stored once per tenant under their content hash (``system_ref``,
    ``tools_ref``), the messages already in the stream become seq ranges (``layout``) and
    only the messages the log does not hold yet stay in ``messages``.
    `promptline.events.content.expand_prompts` puts the whole prompt back.
    """

    model: str
    provider: str | None = None
    deployment: str | None = None
    messages: list[Message] = Field(default_factory=list)
    tools: list[dict[str, Any]] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    stream: bool = False
    system_ref: str | None = None
    """Compact form: the content hash of the prompt's leading system messages (without their
    ids and times, which change from run to run)."""
    system_stamps: list[tuple[str, datetime]] | None = None
    """Compact form: the id and creation time of each of those system messages."""
    tools_ref: str | None = None
    """Compact form: the content hash of the tool list."""
    layout: list[PromptPiece] | None = None
    """Compact form: the prompt after its system messages, piece by piece (`PromptPiece`)."""
    message_count: int | None = None
    """Compact form: how many messages the whole prompt has (system messages included)."""
    tool_count: int | None = None
    """Compact form: how many tools were offered."""

    @property
    def compact(self) -> bool:
        """True when the prompt is stored by reference (expand it to read it whole)."""
        return self.layout is not None or self.system_ref is not None or self.tools_ref is not None

    @property
    def prompt_size(self) -> tuple[int, int]:
        """How many messages and tools the whole prompt has, compact or not."""
        if self.message_count is not None:
            return self.message_count, self.tool_count or 0
        return len(self.messages), len(self.tools)


class LlmDelta(_Data):
    """A streamed fragment of a model's answer."""

    index: int = 0
    text: str = ""
    reasoning: str | None = None
    tool_call: dict[str, Any] | None = None


class LlmResult(_Data):
    """A model's complete answer, with what it cost."""

    model: str
    provider: str | None = None
    deployment: str | None = None
    message: Message | None = None
    finish_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None


class ToolCommand(_Data):
    """A tool call about to run."""

    call: ToolCall


class ToolProgress(_Data):
    """Progress of a running tool: percent done, a message, partial output."""

    call_id: str
    percent: float | None = None
    message: str | None = None
    output: str | None = None


class ToolResultData(_Data):
    """The outcome of a tool call."""

    result: ToolResult
    duration_ms: float | None = None


class StateChange(_Data):
    """A key in a state scope was set, deleted or expired."""

    scope: StateScope
    namespace: str = ""
    key: str
    op: Literal["set", "delete", "expire"] = "set"
    version: int
    value: Any = None
    redacted: bool = False


class AgentLifecycle(_Data):
    """An agent moved from one lifecycle state to another."""

    agent: str
    from_state: LifecycleState | None = None
    to_state: LifecycleState
    reason: str | None = None


class PermissionRequest(_Data):
    """A tool call waits for a human (or policy) decision."""

    request_id: str
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    reason: str | None = None
    call_id: str | None = None
    destructive: bool = False
    expires_at: datetime | None = None
    binding: str | None = None
    """What a remembered approval is bound to beyond the tool (a shell command's digest)."""


class PermissionGranted(_Data):
    """A permission request was allowed, for one call, the session, or always."""

    request_id: str
    tool: str
    scope: Literal["once", "session", "always"] = "once"
    decided_by: str | None = None


class PermissionDenied(_Data):
    """A permission request was refused (by a person, a policy, or a time-out)."""

    request_id: str
    tool: str
    reason: str | None = None
    decided_by: str | None = None


class RunQueued(_Data):
    """A message was accepted for a run that will answer it: the run waits its turn in its
    session's queue (or starts at once). Written with the ``message_received`` carrying the
    input, in one transaction, before the message is acknowledged."""

    agent: str
    model: str | None = None
    mode: str | None = None
    message_id: str
    """The id of the ``message_received`` event whose message is the run's input."""
    position: int = 0
    """How many unfinished runs of the session were ahead of it when it was accepted."""
    queue_mode: str | None = None
    steer_into: str | None = None
    """With queue mode ``steer``: the run in flight this message is meant to join."""
    interrupts: str | None = None
    """With queue mode ``interrupt``: the run in flight this message cancels."""
    history: list[Message] = Field(default_factory=list)
    """For a run without a session: the conversation before the input."""
    overrides: dict[str, Any] = Field(default_factory=dict)
    """Agent settings the request changed for this run (``temperature``, ``max_tokens``,
    ``stream``)."""
    instance: str | None = None
    idempotency_key: str | None = None
    fingerprint: str | None = None
    """A digest of what was asked, so a retry with the same key can be told from a reuse."""


class RunStarted(_Data):
    """An agent run began."""

    agent: str
    model: str | None = None
    mode: str | None = None
    input: Message | None = None
    instance: str | None = None
    input_id: str | None = None
    """The queued ``message_received`` whose message (``input``) joins the conversation now."""


class RunSteered(_Data):
    """A queued message joined the run in flight (queue mode ``steer``) instead of starting a
    run of its own; the envelope's ``run_id`` is the queued run, which ends here."""

    into: str
    """The run the message joined."""
    message_id: str
    message: Message


class RunResumed(_Data):
    """A run the process left unfinished goes on after a restart, from its last recorded step."""

    attempt: int = 1
    """Resumptions since the run last stopped cleanly (a crash during one counts)."""
    reason: str | None = None


class RunCompleted(_Data):
    """An agent run ended with an answer."""

    output: Message | None = None
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float | None = None
    iterations: int = 0
    duration_ms: float | None = None


class ErrorInfo(_Data):
    """What went wrong, in the shape the REST API uses."""

    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class RunFailed(_Data):
    """An agent run ended with an error."""

    error: ErrorInfo
    usage: Usage = Field(default_factory=Usage)
    iterations: int = 0
    duration_ms: float | None = None


class RunCancelled(_Data):
    """An agent run was cancelled."""

    reason: str | None = None
    cancelled_by: str | None = None


class MessageReceived(_Data):
    """A message entered a session from outside (a user, a channel)."""

    message: Message
    channel: str | None = None
    queued: bool = False
    """True when a run will answer it: it joins the conversation when that run starts
    (``run_started.input_id``) or joins the run in flight (``run_steered``)."""


class MessageSent(_Data):
    """A message the agent side added to a session (assistant, tool or system)."""

    message: Message
    channel: str | None = None


class SessionCreated(_Data):
    """A session was opened; the envelope carries tenant, user and session ids."""

    channel: str
    expires_at: datetime | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    tools: list[Any] = Field(default_factory=list)
    permissions: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    sandbox: str | None = None
    """The session's own sandbox (a `SandboxChoice`); None: it chose none."""


class SessionUpdated(_Data):
    """Some of a session's fields changed; fields left ``None`` did not."""

    expires_at: datetime | None = None
    context: dict[str, Any] | None = None
    tools: list[Any] | None = None
    permissions: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    sandbox: str | None = None


class SessionExpired(_Data):
    """A session reached its expiry time (or was closed) and takes no more messages."""

    reason: str = "ttl"


class SecurityAlert(_Data):
    """Something a security reviewer should see."""

    severity: Literal["info", "warning", "critical"] = "warning"
    kind: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class AuditRecord(_Data):
    """An operation on the installation rather than by an agent run (an API key made or
    revoked, a login refused, a session's permission rules changed, an approval answered
    over the API): who did it, to what, how it went, and from where."""

    action: str
    actor: str | None = None
    key_id: str | None = None
    target: str | None = None
    outcome: Literal["success", "failure"] = "success"
    source: str | None = None
    count: int = 1
    details: dict[str, Any] = Field(default_factory=dict)


class QuotaExceeded(_Data):
    """Requests or runs refused because a quota of their user or tenant is used up: the
    first refusal of a quota and subject in a minute is recorded at once, the refusals after
    it in that minute are carried by the next record as its ``count``."""

    quota: str
    scope: str
    limit: float
    used: float
    retry_after: float
    count: int = 1


class ErrorData(_Data):
    """An error that did not end a run but should be on the record."""

    code: str
    message: str
    source: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


# -- envelope ---------------------------------------------------------------------------------


class EventEnvelope(BaseModel):
    """Fields every event has.

    ``seq`` (gap-free per stream) and ``position`` (global order) are 0 until the store
    assigns them; an empty ``stream`` is filled in on append (see `stream_name`).
    """

    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)

    id: str = Field(default_factory=lambda: new_id("evt_"))
    stream: str = ""
    seq: int = 0
    position: int = 0
    ts: datetime = Field(default_factory=utcnow)
    tenant_id: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    run_id: str | None = None
    agent_id: str | None = None
    causation_id: str | None = None
    correlation_id: str | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def stream_name(self) -> str:
        """The stream this event is (or will be) appended to.

        An event belongs to its session's stream unless it names another; the store fills
        ``stream`` in on append. (Not a validator: decoding stored events must stay fast.)
        """
        return self.stream or self.session_id or GLOBAL_STREAM


class LlmCommandEvent(EventEnvelope):
    type: Literal["llm_command"] = "llm_command"
    data: LlmCommand


class LlmDeltaEvent(EventEnvelope):
    type: Literal["llm_delta"] = "llm_delta"
    data: LlmDelta


class LlmResultEvent(EventEnvelope):
    type: Literal["llm_result"] = "llm_result"
    data: LlmResult


class ToolCommandEvent(EventEnvelope):
    type: Literal["tool_command"] = "tool_command"
    data: ToolCommand


class ToolProgressEvent(EventEnvelope):
    type: Literal["tool_progress"] = "tool_progress"
    data: ToolProgress


class ToolResultEvent(EventEnvelope):
    type: Literal["tool_result"] = "tool_result"
    data: ToolResultData


class StateChangeEvent(EventEnvelope):
    type: Literal["state_change"] = "state_change"
    data: StateChange


class AgentLifecycleEvent(EventEnvelope):
    type: Literal["agent_lifecycle"] = "agent_lifecycle"
    data: AgentLifecycle


class PermissionRequestEvent(EventEnvelope):
    type: Literal["permission_request"] = "permission_request"
    data: PermissionRequest


class PermissionGrantedEvent(EventEnvelope):
    type: Literal["permission_granted"] = "permission_granted"
    data: PermissionGranted


class PermissionDeniedEvent(EventEnvelope):
    type: Literal["permission_denied"] = "permission_denied"
    data: PermissionDenied


class RunQueuedEvent(EventEnvelope):
    type: Literal["run_queued"] = "run_queued"
    data: RunQueued


class RunSteeredEvent(EventEnvelope):
    type: Literal["run_steered"] = "run_steered"
    data: RunSteered


class RunResumedEvent(EventEnvelope):
    type: Literal["run_resumed"] = "run_resumed"
    data: RunResumed


class RunStartedEvent(EventEnvelope):
    type: Literal["run_started"] = "run_started"
    data: RunStarted


class RunCompletedEvent(EventEnvelope):
    type: Literal["run_completed"] = "run_completed"
    data: RunCompleted


class RunFailedEvent(EventEnvelope):
    type: Literal["run_failed"] = "run_failed"
    data: RunFailed


class RunCancelledEvent(EventEnvelope):
    type: Literal["run_cancelled"] = "run_cancelled"
    data: RunCancelled


class MessageReceivedEvent(EventEnvelope):
    type: Literal["message_received"] = "message_received"
    data: MessageReceived


class MessageSentEvent(EventEnvelope):
    type: Literal["message_sent"] = "message_sent"
    data: MessageSent


class SessionCreatedEvent(EventEnvelope):
    type: Literal["session_created"] = "session_created"
    data: SessionCreated


class SessionUpdatedEvent(EventEnvelope):
    type: Literal["session_updated"] = "session_updated"
    data: SessionUpdated


class SessionExpiredEvent(EventEnvelope):
    type: Literal["session_expired"] = "session_expired"
    data: SessionExpired


class SecurityAlertEvent(EventEnvelope):
    type: Literal["security_alert"] = "security_alert"
    data: SecurityAlert


class AuditEvent(EventEnvelope):
    type: Literal["audit"] = "audit"
    data: AuditRecord


class QuotaExceededEvent(EventEnvelope):
    type: Literal["quota_exceeded"] = "quota_exceeded"
    data: QuotaExceeded


class ErrorEvent(EventEnvelope):
    type: Literal["error"] = "error"
    data: ErrorData


class UnknownEvent(EventEnvelope):
    """An event of a type this version does not know: kept whole and passed on."""

    model_config = ConfigDict(frozen=True, extra="allow", defer_build=True)

    type: str
    data: Any = None


_KnownEventUnion: TypeAlias = (
    LlmCommandEvent
    | LlmDeltaEvent
    | LlmResultEvent
    | ToolCommandEvent
    | ToolProgressEvent
    | ToolResultEvent
    | StateChangeEvent
    | AgentLifecycleEvent
    | PermissionRequestEvent
    | PermissionGrantedEvent
    | PermissionDeniedEvent
    | RunQueuedEvent
    | RunStartedEvent
    | RunSteeredEvent
    | RunResumedEvent
    | RunCompletedEvent
    | RunFailedEvent
    | RunCancelledEvent
    | MessageReceivedEvent
    | MessageSentEvent
    | SessionCreatedEvent
    | SessionUpdatedEvent
    | SessionExpiredEvent
    | SecurityAlertEvent
    | AuditEvent
    | QuotaExceededEvent
    | ErrorEvent
)

KnownEvent: TypeAlias = Annotated[_KnownEventUnion, Field(discriminator="type")]
"""Any event of a type this version knows, discriminated by ``type``."""

Event: TypeAlias = _KnownEventUnion | UnknownEvent
"""Any event, known or not."""

EVENT_CLASSES: dict[str, type[EventEnvelope]] = {
    cls.model_fields["type"].default: cls for cls in get_args(_KnownEventUnion)
}
"""Event type name -> its class, for every type this version knows."""

_known_adapter_built: TypeAdapter[Any] | None = None


def _known_adapter() -> TypeAdapter[Any]:
    """The validator of the discriminated union, built the first time an event is decoded."""
    global _known_adapter_built
    if _known_adapter_built is None:
        _known_adapter_built = TypeAdapter(KnownEvent)
    return _known_adapter_built


def _is_unknown_tag(error: ValidationError) -> bool:
    first = error.errors(include_url=False)[0]
    return first["type"] == "union_tag_invalid" and not first["loc"]


def decode_event(raw: str | bytes, *, lenient: bool = False) -> Event:
    """Decode one event from its JSON form.

    An unknown ``type`` yields `UnknownEvent`. With ``lenient`` (reading back our own log), a
    known type whose payload does not validate (written by a newer schema) also yields
    `UnknownEvent` rather than an error; otherwise a wrong shape raises `InvalidInputError`.
    """
    try:
        event: Event = (_known_adapter_built or _known_adapter()).validate_json(raw)
        return event
    except ValidationError as exc:
        if lenient or _is_unknown_tag(exc):
            try:
                return UnknownEvent.model_validate_json(raw)
            except ValidationError:
                pass
        raise InvalidInputError(
            f"event is not valid: {describe_validation(exc, whole='(event)')}",
            errors=exc.errors(include_url=False),
        ) from None


def parse_event(obj: Any, *, lenient: bool = False) -> Event:
    """Validate a dict (or an event) into a typed event; see `decode_event` for the rules."""
    if isinstance(obj, EventEnvelope):
        return obj  # type: ignore[return-value]
    try:
        event: Event = (_known_adapter_built or _known_adapter()).validate_python(obj)
        return event
    except ValidationError as exc:
        if lenient or _is_unknown_tag(exc):
            try:
                return UnknownEvent.model_validate(obj)
            except ValidationError:
                pass
        raise InvalidInputError(
            f"event is not valid: {describe_validation(exc, whole='(event)')}",
            errors=exc.errors(include_url=False),
        ) from None


def encode_event(event: EventEnvelope, *, drop_none: bool = False) -> bytes:
    """The JSON wire and storage form of an event.

    The same document pydantic writes, by orjson from the models' fields: a third of the
    instructions (an event is encoded once per append). A value orjson does not take (a
    set, bytes, a big integer, a key that is not a string) falls back to pydantic. With
    ``drop_none`` the fields of the event and of its models that are ``None`` are left out
    (pydantic's ``exclude_none``): they decode back to the same defaults, and a stored event
    is a sixth smaller.
    """
    if event.__pydantic_extra__:
        return event.__pydantic_serializer__.to_json(event, exclude_none=drop_none)
    try:
        if drop_none:
            fields = {k: v for k, v in event.__dict__.items() if v is not None}
            encoded = _dumps(fields, default=_fields_but_none, option=_UTC_Z)
        else:
            encoded = _dumps(event.__dict__, default=_fields_of, option=_UTC_Z)
    except TypeError:
        return event.__pydantic_serializer__.to_json(event, exclude_none=drop_none)
    # orjson's result keeps the whole buffer it grew (8 KB for a short event): a store or a
    # queue that keeps it would hold ten times the event's size. A copy is the right size.
    return bytes(memoryview(encoded))


def _fields_of(value: Any) -> Any:
    """orjson's hook for what it does not know: a nested model as its fields."""
    if isinstance(value, BaseModel):
        extra = value.__pydantic_extra__
        return {**value.__dict__, **extra} if extra else value.__dict__
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _fields_but_none(value: Any) -> Any:
    """`_fields_of`, leaving out the fields that are ``None``."""
    if isinstance(value, BaseModel):
        extra = value.__pydantic_extra__
        fields = {**value.__dict__, **extra} if extra else value.__dict__
        return {k: v for k, v in fields.items() if v is not None}
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# -- building without validation --------------------------------------------------------------

_M = TypeVar("_M", bound=BaseModel)
_E = TypeVar("_E", bound=EventEnvelope)

_Spec = tuple[tuple[tuple[str, Any, Callable[..., Any] | None], ...], frozenset[str], bool]
_specs: dict[type[BaseModel], _Spec] = {}
_REQUIRED = object()


def _spec(cls: type[BaseModel]) -> _Spec:
    """``cls``'s fields in order (name, default, default factory), their names, and
    whether it keeps extra fields."""
    found = _specs.get(cls)
    if found is None:
        if not cls.__pydantic_complete__:
            cls.model_rebuild()  # built on first use (``defer_build``); encoding needs it
        fields = tuple(
            (
                name,
                _REQUIRED if field.default is PydanticUndefined else field.default,
                field.default_factory,
            )
            for name, field in cls.model_fields.items()
        )
        keeps_extra = cls.model_config.get("extra") == "allow"
        found = _specs[cls] = (fields, frozenset(cls.model_fields), keeps_extra)
    return found


def build(cls: type[_M], /, **values: Any) -> _M:
    """``cls(**values)`` without validation, for values the code made itself with their
    fields' types (an event the runtime records, its payload): what validation would check
    is true by construction, and it is most of what building an event costs.

    Omitted fields take their defaults (factories called, as validation does). Nothing is
    coerced: a value of the wrong type is stored as given, so input from outside (a request,
    a stored event) goes through the model's own constructor or `parse_event` instead.
    """
    spec, names, keeps_extra = _specs.get(cls) or _spec(cls)
    if not values.keys() <= names:
        raise TypeError(f"{cls.__name__} has no field {sorted(values.keys() - names)}")
    fields: dict[str, Any] = {}
    for name, default, factory in spec:
        if name in values:
            fields[name] = values[name]
        elif factory is not None:
            fields[name] = factory()
        elif default is _REQUIRED:
            raise TypeError(f"{cls.__name__} needs {name!r}")
        else:
            fields[name] = default
    model = cls.__new__(cls)
    setattr_ = object.__setattr__
    setattr_(model, "__dict__", fields)
    setattr_(model, "__pydantic_fields_set__", set(values))
    setattr_(model, "__pydantic_extra__", {} if keeps_extra else None)
    setattr_(model, "__pydantic_private__", None)
    return model


_ASSIGNED = frozenset({"stream", "seq", "position"})


def stamped(event: _E, stream: str, seq: int, position: int) -> _E:
    """``event`` with its place in the log filled in (what a store returns).

    What ``model_copy(update=...)`` does (a shallow copy, no validation) without its
    generic update logic and the copy of the field set it then extends.
    """
    cls = type(event)
    copy = cls.__new__(cls)
    extra = event.__pydantic_extra__
    setattr_ = object.__setattr__
    setattr_(
        copy, "__dict__", {**event.__dict__, "stream": stream, "seq": seq, "position": position}
    )
    setattr_(copy, "__pydantic_fields_set__", event.__pydantic_fields_set__ | _ASSIGNED)
    setattr_(copy, "__pydantic_extra__", None if extra is None else dict(extra))
    setattr_(copy, "__pydantic_private__", None)
    return copy


def conversation_message(event: Event) -> Message | None:
    """The message ``event`` adds to its conversation, if any.

    A message a run will answer is received (``message_received`` with ``queued``) before it
    joins the conversation: it joins when its run starts (``run_started`` names it in
    ``input_id``) or when it joins the run in flight (``run_steered``). So the history reads
    in the order the model saw it, however many messages waited meanwhile.
    """
    # By class identity, not isinstance: pydantic's metaclass makes isinstance a Python call,
    # and this runs for every event a store appends.
    cls = type(event)
    if cls is MessageReceivedEvent:
        received = cast(MessageReceivedEvent, event).data
        return None if received.queued else received.message
    if cls is MessageSentEvent:
        return cast(MessageSentEvent, event).data.message
    if cls is RunSteeredEvent:
        return cast(RunSteeredEvent, event).data.message
    if cls is RunStartedEvent:
        started = cast(RunStartedEvent, event).data
        return started.input if started.input_id is not None else None
    return None
