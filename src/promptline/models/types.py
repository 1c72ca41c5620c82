"""One request and response shape for every provider: what the model layer takes and gives.

Plain slotted dataclasses, not pydantic models: a streamed answer creates hundreds of deltas
and these objects sit on the hot path. Input from users is validated at the edges (gateway,
config), not here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

from promptline.core.clock import utcnow
from promptline.core.ids import new_id
from promptline.core.messages import Message, TextPart, ToolCall, Usage

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool the model may call: name, description and JSON schema of its arguments."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """Ask for JSON: any object (``json_object``) or one matching ``schema`` (``json_schema``)."""

    type: Literal["text", "json_object", "json_schema"] = "json_schema"
    name: str = "response"
    schema: dict[str, Any] | None = None
    strict: bool | None = None


ToolChoice = Literal["auto", "none", "required"] | str
"""``auto`` / ``none`` / ``required``, or the name of the one tool the model must call."""


@dataclass(slots=True)
class ModelRequest:
    """A model call, the same for every provider.

    ``model`` is ``provider/model`` (``openai/gpt-4``) or a bare name the router resolves.
    ``extra`` is merged into the provider's request body as is (provider-specific knobs).
    ``tags`` and ``task`` are for routing rules, ``capabilities_needed`` is derived by the
    router from the request when empty.
    """

    model: str
    messages: list[Message]
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    response_format: ResponseFormat | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    task: str | None = None
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of a streamed tool call; fragments with the same ``index`` belong together."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class StreamDelta:
    """A piece of a streamed answer: text, reasoning text, or a tool-call fragment."""

    text: str = ""
    reasoning: str = ""
    tool_call: ToolCallDelta | None = None


@dataclass(frozen=True, slots=True)
class ModelResponse:
    """A complete answer: the assistant message (text and tool calls), why it stopped,
    what it used, and how long it took (``ttft_ms``: time to the first streamed token)."""

    message: Message
    model: str
    provider: str
    finish_reason: FinishReason | str | None = None
    usage: Usage = field(default_factory=Usage)
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    deployment: str | None = None
    response_id: str | None = None
    cost_usd: float | None = None


# --- building answers ---------------------------------------------------------------------------
# A provider checks every value of an answer while parsing it, so validating the message again
# would only repeat that work; pydantic validation of a message costs more than the rest of
# parsing a short answer. These build the models directly, exactly as validation would.

_M = TypeVar("_M", bound=BaseModel)
_set = object.__setattr__
_ASSISTANT_FIELDS_SET = frozenset({"role", "content", "tool_calls", "metadata"})
_TEXT_FIELDS_SET = frozenset({"text"})
_USAGE_FIELDS_SET = frozenset(
    {"input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens"}
)


def _built(cls: type[_M], values: dict[str, Any], fields_set: frozenset[str]) -> _M:
    """``cls`` holding ``values`` (every field, in declaration order), not validated again."""
    obj = cls.__new__(cls)
    _set(obj, "__dict__", values)
    _set(obj, "__pydantic_fields_set__", set(fields_set))
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj


def assistant_message(
    text: str = "", tool_calls: list[ToolCall] | None = None, reasoning: str = ""
) -> Message:
    """The assistant message of an answer, built from values the caller has checked.

    Equal, field for field, to ``Message(role="assistant", content=[TextPart(text=text)] if
    text else [], tool_calls=tool_calls or [], metadata={"reasoning": reasoning} if reasoning
    else {})``, but without validating it again; the message keeps ``tool_calls`` itself
    rather than a copy.
    """
    content: list[Any] = []
    if text:
        content.append(_built(TextPart, {"type": "text", "text": text}, _TEXT_FIELDS_SET))
    return _built(
        Message,
        {
            "id": new_id("msg_"),
            "role": "assistant",
            "content": content,
            "name": None,
            "tool_calls": tool_calls if tool_calls is not None else [],
            "tool_call_id": None,
            "created_at": utcnow(),
            "metadata": {"reasoning": reasoning} if reasoning else {},
        },
        _ASSISTANT_FIELDS_SET,
    )


def token_usage(
    input_tokens: int = 0, output_tokens: int = 0, cached_tokens: int = 0, reasoning_tokens: int = 0
) -> Usage:
    """A `Usage` from counts the caller has checked (non-negative ints), not validated again."""
    return _built(
        Usage,
        {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cached_tokens": cached_tokens,
            "reasoning_tokens": reasoning_tokens,
        },
        _USAGE_FIELDS_SET,
    )
