"""Conversation data: messages, their content parts, tool calls and results, token usage."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from promptline.core.clock import utcnow
from promptline.core.ids import new_id

Role = Literal["system", "user", "assistant", "tool"]


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class TextPart(_Data):
    """Plain text."""

    type: Literal["text"] = "text"
    text: str


class ImagePart(_Data):
    """An image given by URL or by base64 data (with its media type)."""

    type: Literal["image"] = "image"
    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    detail: Literal["auto", "low", "high"] | None = None


class FilePart(_Data):
    """A document attached to a message, by URL or base64 data."""

    type: Literal["file"] = "file"
    name: str | None = None
    url: str | None = None
    data: str | None = None
    media_type: str | None = None


ContentPart = Annotated[TextPart | ImagePart | FilePart, Field(discriminator="type")]


def _coerce_content(value: Any) -> Any:
    if isinstance(value, str):
        return [TextPart(text=value)]
    return value


class ToolCall(_Data):
    """A model's request to run one tool."""

    id: str = Field(default_factory=lambda: new_id("call_"))
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolResult(_Data):
    """What a tool returned for one call; ``is_error`` marks a failure the model should see."""

    call_id: str
    name: str
    content: list[ContentPart] = Field(default_factory=list)
    is_error: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)

    _coerce = field_validator("content", mode="before")(_coerce_content)

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


class Usage(_Data):
    """Tokens one model call (or a sum of calls) consumed."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
        )


class Message(_Data):
    """One message of a conversation. ``content`` accepts a plain string as a single text part."""

    id: str = Field(default_factory=lambda: new_id("msg_"))
    role: Role
    content: list[ContentPart] = Field(default_factory=list)
    name: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    metadata: dict[str, Any] = Field(default_factory=dict)

    _coerce = field_validator("content", mode="before")(_coerce_content)

    @property
    def text(self) -> str:
        """The text parts joined; images and files are left out."""
        return "".join(p.text for p in self.content if isinstance(p, TextPart))
