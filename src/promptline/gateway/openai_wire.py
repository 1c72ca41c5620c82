"""The OpenAI wire forms: the chat-completions and Responses requests as a client sends them,
turned into PromptLine messages and run options, and the ``chat.completion`` /
``chat.completion.chunk`` and ``response`` objects (their output items and usage) a client
expects back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from promptline.core.errors import InvalidInputError
from promptline.core.messages import (
    ContentPart,
    FilePart,
    ImagePart,
    Message,
    Role,
    TextPart,
    ToolCall,
    Usage,
)

__all__ = [
    "AGENT_PREFIX",
    "INSTRUCTIONS",
    "RESPONSE_PREFIX",
    "ChatCompletionRequest",
    "ChatInput",
    "ResponseHead",
    "ResponseInput",
    "ResponseRequest",
    "chat_input",
    "completion_chunk",
    "completion_json",
    "finish_reason",
    "function_call_item",
    "function_call_output_item",
    "message_item",
    "output_items",
    "response_input",
    "response_usage",
    "run_of_response",
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


# -- the Responses API ----------------------------------------------------------------------------

RESPONSE_PREFIX = "resp_"
"""A response's id is this and the id of the run that gave it (``resp_run_...``)."""

INSTRUCTIONS = "openai_instructions"
"""Metadata key marking the system message that carries a request's ``instructions``: they
hold for that request only, so a request that continues it leaves them out."""


class ResponseRequest(BaseModel):
    """``POST /v1/responses``. Fields of the OpenAI API not listed here are accepted and
    ignored (top_p, user, reasoning, include, truncation, prompt_cache_key, ...)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(
        min_length=1,
        max_length=255,
        description="agent/NAME runs that agent; provider/model runs the default agent with "
        "that model.",
    )
    input: str | list[dict[str, Any]] = Field(
        description="The new user message as text, or a list of items (messages, and "
        "function_call / function_call_output pairs of earlier answers) ending with it."
    )
    instructions: str | None = Field(
        None, description="A system message for this request only (not carried over)."
    )
    previous_response_id: str | None = Field(
        None, description="Continue the conversation of this response (resp_<run id>)."
    )
    stream: bool = False
    temperature: float | None = Field(None, ge=0, le=2)
    max_output_tokens: int | None = Field(None, ge=1, description="Per model call of the run.")
    metadata: dict[str, str] | None = None
    store: bool | None = Field(None, description="Only true: every run is kept in the log.")
    background: bool | None = Field(None, description="Only false.")
    conversation: Any = Field(None, description="Not supported: use the X-Session-Id header.")
    tools: list[Any] | None = Field(None, description="Only empty: the agent has its own tools.")
    tool_choice: Any = Field(None, description="Only none or auto.")
    text: dict[str, Any] | None = Field(None, description='Only {"format": {"type": "text"}}.')


@dataclass(frozen=True, slots=True)
class ResponseInput:
    """What a Responses request asks a run to do: the new message, the conversation items
    before it, and the request's instructions (as a system message, or None)."""

    message: Message
    history: list[Message]
    instructions: Message | None


def response_input(request: ResponseRequest) -> ResponseInput:
    """The new user message, the history and the instructions of ``request``;
    `InvalidInputError` (400) for what PromptLine does not take."""
    _refuse_unsupported_response(request)
    instructions = None
    if request.instructions:
        instructions = Message(
            role="system", content=request.instructions, metadata={INSTRUCTIONS: True}
        )
    items = request.input
    if isinstance(items, str):
        if not items:
            raise InvalidInputError(
                "the input is empty", hint="give the new user message's text", field="input"
            )
        return ResponseInput(Message(role="user", content=items), [], instructions)
    if not items:
        raise InvalidInputError(
            "the input is an empty list", hint="end it with the user's new message", field="input"
        )
    messages = _conversation_items(items)
    *history, last = messages
    where = f"input.{len(items) - 1}"
    if last.role != "user":
        raise InvalidInputError(
            f"the last input item must be the user's new message, not a {last.role!r} item",
            hint="end input with {'role': 'user', 'content': ...}; function_call_output items "
            "answer client tools, which are not supported",
            field=where,
        )
    if not last.content:
        raise InvalidInputError(
            "the new user message is empty",
            hint="give it text (or content parts)",
            field=f"{where}.content",
        )
    return ResponseInput(last, history, instructions)


def _refuse_unsupported_response(request: ResponseRequest) -> None:
    if request.tools:
        raise InvalidInputError(
            "tools in the request are not supported: the agent runs with its own tools, "
            "configured under agents.<name>.tools, and its calls come back as function_call "
            "and function_call_output items",
            hint="leave out tools; name the agent that has the tools as model agent/<name>",
            field="tools",
        )
    if request.tool_choice not in (None, "none", "auto"):
        raise InvalidInputError(
            "tool_choice other than 'none' or 'auto' is not supported",
            hint="leave out tool_choice: the agent decides which of its tools to call",
            field="tool_choice",
        )
    fmt = (request.text or {}).get("format")
    if isinstance(fmt, dict) and fmt.get("type") not in _TEXT_FORMATS:
        raise InvalidInputError(
            f"text.format {fmt.get('type')!r} is not supported: the answer is text",
            hint="leave out text.format, or ask for JSON in the message",
            field="text.format",
        )
    if request.store is False:
        raise InvalidInputError(
            "store: false is not supported: every run, its input and its answer are kept in "
            "the event log, which is what makes it durable",
            hint="leave out store",
            field="store",
        )
    if request.background:
        raise InvalidInputError(
            "background responses are not supported",
            hint="leave out background; stream the response, or send an Idempotency-Key and "
            "retry to get the answer of a run that is still going",
            field="background",
        )
    if request.conversation is not None:
        raise InvalidInputError(
            "conversation is not supported",
            hint="continue a conversation with previous_response_id, or keep it in a session "
            "named by the X-Session-Id header",
            field="conversation",
        )


def _conversation_items(items: list[dict[str, Any]]) -> list[Message]:
    """The messages of ``items``: messages as they are, ``function_call`` items as the
    assistant's tool calls, ``function_call_output`` items as their results (each call must
    have its output: tools a client runs are not supported); ``reasoning`` items are left
    out."""
    messages: list[Message] = []
    open_calls: dict[str, int] = {}
    for index, item in enumerate(items):
        where = f"input.{index}"
        if not isinstance(item, dict):
            raise InvalidInputError(f"{where} is not an object", field=where)
        kind = item.get("type", "message")
        if kind == "message":
            messages.append(_input_message(item, where))
        elif kind == "function_call":
            call = ToolCall(
                id=_text_field(item, "call_id", where),
                name=_text_field(item, "name", where),
                arguments=_arguments(item.get("arguments"), where),
            )
            last = messages[-1] if messages else None
            if (
                last is not None
                and last.role == "assistant"
                and not open_calls.keys() - {c.id for c in last.tool_calls}
            ):
                last.tool_calls.append(call)
            else:
                messages.append(Message(role="assistant", tool_calls=[call]))
            open_calls[call.id] = index
        elif kind == "function_call_output":
            call_id = _text_field(item, "call_id", where)
            if open_calls.pop(call_id, None) is None:
                raise InvalidInputError(
                    f"{where}: function_call_output answers no function_call before it "
                    f"(call_id {call_id!r})",
                    hint="send the function_call item before its output",
                    field=f"{where}.call_id",
                )
            output = item.get("output")
            if isinstance(output, list):
                output = [_input_part(part, f"{where}.output.{n}") for n, part in enumerate(output)]
            elif output is not None and not isinstance(output, str):
                raise InvalidInputError(
                    f"{where}.output must be text or a list of content parts",
                    field=f"{where}.output",
                )
            name = next((c.name for m in messages for c in m.tool_calls if c.id == call_id), None)
            messages.append(
                Message(
                    role="tool",
                    content=_parts(output, where) if output else [],
                    tool_call_id=call_id,
                    name=name,
                )
            )
        elif kind == "reasoning":
            continue
        else:
            raise InvalidInputError(
                f"{where}: input items of type {kind!r} are not supported",
                hint="send messages, and the function_call and function_call_output items of "
                "earlier answers",
                field=f"{where}.type",
            )
        if kind == "message" and open_calls:
            break
    if open_calls:
        call_id, index = next(iter(open_calls.items()))
        raise InvalidInputError(
            f"input.{index}: function_call {call_id!r} has no function_call_output after it: "
            "tools a client runs are not supported",
            hint="the agent runs its own tools; send each call with its output, or leave both out",
            field=f"input.{index}",
        )
    return messages


def _input_message(item: dict[str, Any], where: str) -> Message:
    role = _ROLES.get(str(item.get("role")))
    if role is None:
        raise InvalidInputError(
            f"{where}: role {item.get('role')!r} is not supported",
            hint="use system, developer, user or assistant",
            field=f"{where}.role",
        )
    content = item.get("content")
    if isinstance(content, list):
        content = [_input_part(part, f"{where}.content.{n}") for n, part in enumerate(content)]
    elif content is not None and not isinstance(content, str):
        raise InvalidInputError(
            f"{where}.content must be text or a list of content parts",
            field=f"{where}.content",
        )
    return Message(role=role, content=_parts(content, where))


def _input_part(part: Any, at: str) -> dict[str, Any]:
    """A Responses content part as the chat-completions part `_parts` reads."""
    if not isinstance(part, dict):
        raise InvalidInputError(f"{at} is not a content part object", field=at)
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
        return {"type": "text", "text": part["text"]}
    if kind == "refusal" and isinstance(part.get("refusal"), str):
        return {"type": "text", "text": part["refusal"]}
    if kind == "input_image":
        if part.get("file_id"):
            raise InvalidInputError(
                f"{at}: file ids are not supported", hint="send image_url", field=at
            )
        return {"type": "image_url", "image_url": {"url": part.get("image_url"), **_detail(part)}}
    if kind == "input_file":
        if part.get("file_id") or part.get("file_url"):
            raise InvalidInputError(
                f"{at}: file ids and file URLs are not supported",
                hint="send the file as file_data (a base64 data URL)",
                field=at,
            )
        return {"type": "file", "file": {k: part.get(k) for k in ("file_data", "filename")}}
    raise InvalidInputError(
        f"{at}: content part {kind!r} is not supported",
        hint="use input_text, input_image or input_file parts",
        field=at,
    )


def _detail(part: dict[str, Any]) -> dict[str, Any]:
    detail = part.get("detail")
    return {"detail": detail} if isinstance(detail, str) else {}


def _text_field(item: dict[str, Any], name: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidInputError(
            f"{where}.{name} must be a non-empty string", field=f"{where}.{name}"
        )
    return value


def _arguments(raw: Any, where: str) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = orjson.loads(raw or "{}")
    except (orjson.JSONDecodeError, TypeError):
        value = None
    if not isinstance(value, dict):
        raise InvalidInputError(
            f"{where}.arguments must be a JSON object (as a string)",
            field=f"{where}.arguments",
        )
    return value


def run_of_response(response_id: str) -> str:
    """The run id in a response id (``resp_<run id>``; a bare run id is taken as it is)."""
    return response_id.removeprefix(RESPONSE_PREFIX)


def response_usage(usage: Usage) -> dict[str, Any]:
    """A run's usage as the Responses API reports it (the sum over its model calls)."""
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def message_item(item_id: str, text: str, *, status: str = "completed") -> dict[str, Any]:
    """An assistant ``message`` output item holding ``text``."""
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def function_call_item(call: ToolCall) -> dict[str, Any]:
    """A ``function_call`` output item: a tool call the agent made (and the server ran)."""
    return {
        "id": f"fc_{call.id}",
        "type": "function_call",
        "call_id": call.id,
        "name": call.name,
        "arguments": orjson.dumps(call.arguments).decode(),
        "status": "completed",
    }


def function_call_output_item(message: Message) -> dict[str, Any]:
    """A ``function_call_output`` output item: the result of one of the agent's tool calls."""
    call_id = message.tool_call_id or ""
    return {
        "id": f"fco_{call_id}",
        "type": "function_call_output",
        "call_id": call_id,
        "name": message.name,
        "output": message.text,
        "status": "completed",
    }


def output_items(messages: list[Message]) -> list[dict[str, Any]]:
    """The output items of a run's messages after its input: each assistant message's text
    (if any) and tool calls, each tool message as its call's output."""
    items: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "assistant":
            if message.text:
                items.append(message_item(message.id, message.text))
            items.extend(function_call_item(call) for call in message.tool_calls)
        elif message.role == "tool" and message.tool_call_id:
            items.append(function_call_output_item(message))
    return items


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """What every ``response`` object of one answer repeats."""

    id: str
    created_at: int
    model: str
    instructions: str | None
    previous_response_id: str | None
    temperature: float | None
    max_output_tokens: int | None
    metadata: dict[str, str]

    def response(
        self,
        status: str,
        output: list[dict[str, Any]],
        *,
        usage: Usage | None = None,
        error: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The ``response`` object as it stands (``in_progress``, ``completed``, ``failed``,
        ``cancelled``)."""
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "model": self.model,
            "output": output,
            "usage": response_usage(usage) if usage is not None else None,
            "error": error,
            "incomplete_details": None,
            "instructions": self.instructions,
            "previous_response_id": self.previous_response_id,
            "temperature": self.temperature,
            "top_p": None,
            "max_output_tokens": self.max_output_tokens,
            "metadata": self.metadata,
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "text": {"format": {"type": "text"}},
            "truncation": "disabled",
            "store": True,
            "background": False,
            "reasoning": {"effort": None, "summary": None},
            "user": None,
        }
