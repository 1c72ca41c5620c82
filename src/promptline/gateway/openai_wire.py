"""The OpenAI chat-completions wire forms: the request as a client sends it, turned into
PromptLine messages and run options, and the ``chat.completion`` / ``chat.completion.chunk``
objects (and their usage) a client expects back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from promptline.core.errors import InvalidInputError
from promptline.core.messages import (
    ContentPart,
    FilePart,
    ImagePart,
    Message,
    Role,
    TextPart,
    Usage,
)

__all__ = [
    "AGENT_PREFIX",
    "ChatCompletionRequest",
    "ChatInput",
    "chat_input",
    "completion_chunk",
    "completion_json",
    "finish_reason",
    "usage_json",
]

AGENT_PREFIX = "agent/"
"""``model`` values naming an agent start with this (``agent/assistant``)."""

_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
}
_FINISH = frozenset({"stop", "length", "content_filter"})
_TEXT_FORMATS = frozenset({"text"})


class ChatMessageIn(BaseModel):
    """One message of the request (fields other clients send are accepted and ignored)."""

    model_config = ConfigDict(extra="allow")

    role: str = Field(description="system, developer, user or assistant.")
    content: str | list[dict[str, Any]] | None = Field(
        None, description="Text, or content parts: text, image_url, file."
    )
    name: str | None = None
    tool_calls: list[Any] | None = Field(None, description="Not supported (422).")
    tool_call_id: str | None = None


class StreamOptions(BaseModel):
    """``stream_options``: whether a last chunk carries the usage."""

    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``. Fields of the OpenAI API not listed here are accepted
    and ignored (top_p, stop, seed, user, penalties, ...)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(
        min_length=1,
        max_length=255,
        description="agent/NAME runs that agent; provider/model runs the default agent with "
        "that model.",
    )
    messages: list[ChatMessageIn] = Field(
        min_length=1,
        description="The conversation; the last message is the new user message, the ones "
        "before it are the history (ignored when X-Session-Id names a session).",
    )
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, description="Per model call of the run.")
    max_completion_tokens: int | None = Field(
        None, ge=1, description="Same as max_tokens (wins when both are given)."
    )
    n: int | None = Field(None, description="Only 1.")
    tools: list[Any] | None = Field(None, description="Not supported (422): see the API docs.")
    tool_choice: Any = Field(None, description="Only none or auto.")
    functions: list[Any] | None = Field(None, description="Not supported (422).")
    function_call: Any = Field(None, description="Not supported (422).")
    response_format: dict[str, Any] | None = Field(None, description='Only {"type": "text"}.')

    @property
    def include_usage(self) -> bool:
        """True when the stream should end with a usage chunk."""
        return self.stream_options is not None and self.stream_options.include_usage

    @property
    def output_limit(self) -> int | None:
        """The output token limit asked for (``max_completion_tokens`` first)."""
        return self.max_completion_tokens or self.max_tokens


@dataclass(frozen=True, slots=True)
class ChatInput:
    """What a request asks a run to do: the new message and the conversation before it."""

    message: Message
    history: list[Message]


def chat_input(request: ChatCompletionRequest) -> ChatInput:
    """The new user message and the history of ``request``; `InvalidInputError` (422) for
    what PromptLine does not take (client tools, several choices, structured output)."""
    _refuse_unsupported(request)
    *earlier, last = request.messages
    if last.role != "user":
        raise InvalidInputError(
            f"the last message must be the user's new message, not a {last.role!r} message",
            hint="end messages with {'role': 'user', 'content': ...}",
            field=f"messages.{len(earlier)}.role",
        )
    history = [_message(m, i) for i, m in enumerate(earlier)]
    message = _message(last, len(earlier))
    if not message.content:
        raise InvalidInputError(
            "the new user message is empty",
            hint="give it text (or content parts)",
            field=f"messages.{len(earlier)}.content",
        )
    return ChatInput(message=message, history=history)


def _refuse_unsupported(request: ChatCompletionRequest) -> None:
    if request.tools or request.functions or request.function_call not in (None, "none", "auto"):
        raise InvalidInputError(
            "tools in the request are not supported: the agent runs with its own tools, "
            "configured under agents.<name>.tools, and answers with their results",
            hint="leave out tools/functions; name the agent that has the tools as model "
            "agent/<name>",
            field="tools",
        )
    if request.tool_choice not in (None, "none", "auto"):
        raise InvalidInputError(
            "tool_choice other than 'none' or 'auto' is not supported",
            hint="leave out tool_choice: the agent decides which of its tools to call",
            field="tool_choice",
        )
    if request.n not in (None, 1):
        raise InvalidInputError(
            f"n={request.n} is not supported: a run gives one answer",
            hint="leave out n, or send the request n times",
            field="n",
        )
    fmt = request.response_format
    if fmt is not None and fmt.get("type") not in _TEXT_FORMATS:
        raise InvalidInputError(
            f"response_format {fmt.get('type')!r} is not supported: the answer is text",
            hint="leave out response_format, or ask for JSON in the message",
            field="response_format",
        )


def _message(raw: ChatMessageIn, index: int) -> Message:
    role = _ROLES.get(raw.role)
    where = f"messages.{index}"
    if role is None:
        raise InvalidInputError(
            f"{where}: role {raw.role!r} is not supported",
            hint="use system, developer, user or assistant; tool messages need client tools, "
            "which are not supported",
            field=f"{where}.role",
        )
    if raw.tool_calls:
        raise InvalidInputError(
            f"{where}: assistant tool_calls are not supported",
            hint="send the conversation as text: the agent calls its own tools",
            field=f"{where}.tool_calls",
        )
    return Message(role=role, content=_parts(raw.content, where), name=raw.name)


def _parts(content: str | list[dict[str, Any]] | None, where: str) -> list[ContentPart]:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(text=content)] if content else []
    parts: list[ContentPart] = []
    for n, part in enumerate(content):
        kind = part.get("type")
        at = f"{where}.content.{n}"
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append(TextPart(text=part["text"]))
        elif kind == "image_url":
            parts.append(_image(part.get("image_url"), at))
        elif kind == "file":
            parts.append(_file(part.get("file"), at))
        else:
            raise InvalidInputError(
                f"{at}: content part {kind!r} is not supported",
                hint="use text, image_url or file parts",
                field=at,
            )
    return parts


def _image(raw: Any, at: str) -> ImagePart:
    url = raw.get("url") if isinstance(raw, dict) else raw
    if not isinstance(url, str) or not url:
        raise InvalidInputError(
            f"{at}: image_url needs a url", hint='{"image_url": {"url": "https://..."}}', field=at
        )
    detail = raw.get("detail") if isinstance(raw, dict) else None
    if detail not in (None, "auto", "low", "high"):
        detail = None
    media_type, data = _data_url(url)
    if data is not None:
        return ImagePart(data=data, media_type=media_type, detail=detail)
    return ImagePart(url=url, detail=detail)


def _file(raw: Any, at: str) -> FilePart:
    data = raw.get("file_data") if isinstance(raw, dict) else None
    if not isinstance(data, str) or not data:
        raise InvalidInputError(
            f"{at}: a file part needs file_data (a base64 data URL); file ids are not supported",
            hint='{"file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,..."}}',
            field=at,
        )
    media_type, decoded = _data_url(data)
    assert isinstance(raw, dict)
    name = raw.get("filename")
    return FilePart(
        name=name if isinstance(name, str) else None,
        data=decoded if decoded is not None else data,
        media_type=media_type,
    )


def _data_url(url: str) -> tuple[str | None, str | None]:
    """``data:<type>;base64,<data>`` -> (type, data); (None, None) for any other URL."""
    if not url.startswith("data:"):
        return None, None
    head, comma, data = url[5:].partition(",")
    if not comma or not head.endswith(";base64"):
        return None, None
    return head[: -len(";base64")] or None, data


# -- what goes back -------------------------------------------------------------------------------


def usage_json(usage: Usage) -> dict[str, Any]:
    """A run's usage as OpenAI reports it (the sum over every model call of the run)."""
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def finish_reason(reason: str | None) -> Literal["stop", "length", "content_filter"]:
    """The OpenAI finish reason of the model call that gave the answer."""
    if reason in _FINISH:
        return reason  # type: ignore[return-value]
    return "stop"


def completion_json(
    *, id: str, created: int, model: str, content: str, finish: str, usage: Usage
) -> dict[str, Any]:
    """A ``chat.completion`` object."""
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": usage_json(usage),
        "system_fingerprint": None,
    }


def completion_chunk(
    *,
    id: str,
    created: int,
    model: str,
    delta: dict[str, Any] | None = None,
    finish: str | None = None,
    usage: Usage | None = None,
    with_usage: bool = False,
) -> dict[str, Any]:
    """A ``chat.completion.chunk``: a delta, the last one (``finish``), or, with ``usage``,
    the usage chunk (no choices). ``with_usage`` adds ``"usage": null`` to the others, as
    OpenAI does when the client asked for usage."""
    chunk: dict[str, Any] = {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": (
            []
            if usage is not None
            else [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}]
        ),
    }
    if usage is not None:
        chunk["usage"] = usage_json(usage)
    elif with_usage:
        chunk["usage"] = None
    return chunk
