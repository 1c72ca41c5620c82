"""One request and response shape for every provider: what the model layer takes and gives.

Plain slotted dataclasses, not pydantic models: a streamed answer creates hundreds of deltas
and these objects sit on the hot path. Input from users is validated at the edges (gateway,
config), not here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from promptline.core.messages import Message, Usage

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
