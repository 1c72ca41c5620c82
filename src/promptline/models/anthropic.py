"""The Anthropic Messages wire format (Claude): ``POST /v1/messages``, plain and streamed, spoken
over the shared `HttpTransport`."""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from promptline.core.errors import (
    CapabilityError,
    InvalidInputError,
    ProviderAuthError,
    ProviderBadResponse,
    ProviderError,
    ProviderRateLimited,
    ProviderRequestRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from promptline.core.messages import (
    ContentPart,
    FilePart,
    ImagePart,
    Message,
    TextPart,
    ToolCall,
    Usage,
)
from promptline.models.sse import SseParser
from promptline.models.transport import (
    HttpTransport,
    Timeouts,
    TransportError,
    TransportTimeout,
    provider_failure,
    retry_after_seconds,
    without_key,
)
from promptline.models.types import (
    FinishReason,
    ModelRequest,
    ModelResponse,
    StreamDelta,
    ToolCallDelta,
)

__all__ = [
    "DEFAULT_ANTHROPIC_VERSION",
    "DEFAULT_BASE_URL",
    "THINKING_METADATA_KEY",
    "AnthropicProvider",
    "AnthropicStreamDecoder",
    "build_messages_body",
    "parse_message_body",
]

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_ANTHROPIC_VERSION = "2023-06-01"
THINKING_METADATA_KEY = "anthropic_thinking"
"""Assistant-message metadata key holding Claude's thinking blocks (with their signatures), sent
back as is on the next turn: Claude requires them before a tool_use it is continuing."""

_STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

_TEXT_DOCUMENT_TYPES = ("text/plain",)


# --- request -----------------------------------------------------------------------------------


def build_messages_body(
    request: ModelRequest, *, provider: str, default_max_tokens: int, stream: bool
) -> dict[str, Any]:
    """The JSON body of ``POST /v1/messages`` for ``request`` (``request.model`` is bare).

    Raises `InvalidInputError` (or `CapabilityError`) naming the offending message when the
    request cannot be said in this format.
    """
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(request.messages):
        where = f"messages[{index}]"
        if message.role == "system":
            system.extend(
                {"type": "text", "text": part.text}
                for part in message.content
                if isinstance(part, TextPart) and part.text
            )
            continue
        if message.role == "tool":
            role, blocks = "user", [_tool_result_block(message, where, provider, request.model)]
        elif message.role == "assistant":
            role, blocks = "assistant", _assistant_blocks(message, where, provider, request.model)
        else:
            role = "user"
            blocks = _content_blocks(message.content, where, provider, request.model)
        if not blocks:
            continue  # Claude rejects empty turns; a message with nothing to say adds nothing
        if turns and turns[-1]["role"] == role:
            # Consecutive tool results (and text after them) form one user turn, as Claude
            # expects the results of a parallel tool call together.
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if not turns:
        raise InvalidInputError(
            f"{provider}/{request.model}: the request has no user or assistant message",
            hint="add at least one user message; system text alone is not a conversation",
        )
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens if request.max_tokens is not None else default_max_tokens,
        "messages": turns,
    }
    if system:
        body["system"] = system
    if request.tools:
        body["tools"] = [
            _tool(spec.name, spec.description, spec.parameters) for spec in request.tools
        ]
    if request.tool_choice is not None:
        body["tool_choice"] = _tool_choice(request.tool_choice)
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if request.response_format is not None and request.response_format.type != "text":
        schema = request.response_format.schema
        if request.response_format.type == "json_object" or schema is None:
            schema = {"type": "object"}
        body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    if stream:
        body["stream"] = True
    body.update(request.extra)
    return body


def _tool(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    tool: dict[str, Any] = {"name": name, "input_schema": parameters}
    if description:
        tool["description"] = description
    return tool


def _tool_choice(choice: str) -> dict[str, Any]:
    if choice in ("auto", "none", "any"):
        return {"type": choice}
    if choice == "required":
        return {"type": "any"}
    return {"type": "tool", "name": choice}


def _assistant_blocks(
    message: Message, where: str, provider: str, model: str
) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    thinking = message.metadata.get(THINKING_METADATA_KEY)
    if isinstance(thinking, list):
        blocks.extend(block for block in thinking if isinstance(block, dict))
    blocks.extend(_content_blocks(message.content, where, provider, model))
    blocks.extend(
        {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
        for call in message.tool_calls
    )
    return blocks


def _tool_result_block(message: Message, where: str, provider: str, model: str) -> dict[str, Any]:
    if not message.tool_call_id:
        raise InvalidInputError(
            f"{provider}/{model}: {where} is a tool result without tool_call_id",
            hint="set tool_call_id to the id of the tool call this message answers",
        )
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id}
    content = _content_blocks(message.content, where, provider, model)
    if content:
        block["content"] = content
    if message.metadata.get("is_error"):
        block["is_error"] = True
    return block


def _content_blocks(
    parts: list[ContentPart], where: str, provider: str, model: str
) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for index, part in enumerate(parts):
        if isinstance(part, TextPart):
            if part.text:  # Claude rejects empty text blocks
                blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            blocks.append({"type": "image", "source": _image_source(part, where, provider, model)})
        else:
            blocks.append(_document_block(part, f"{where}.content[{index}]", provider, model))
    return blocks


def _image_source(part: ImagePart, where: str, provider: str, model: str) -> dict[str, Any]:
    if part.data is not None:
        if not part.media_type:
            raise InvalidInputError(
                f"{provider}/{model}: an image in {where} has data but no media_type",
                hint="set media_type (image/png, image/jpeg, image/gif or image/webp)",
            )
        return {"type": "base64", "media_type": part.media_type, "data": part.data}
    if part.url is None:
        raise InvalidInputError(
            f"{provider}/{model}: an image in {where} has neither url nor data",
            hint="give the image as a URL or as base64 data with its media_type",
        )
    if part.url.startswith("data:"):
        media_type, data = _split_data_url(part.url, where, provider, model)
        return {"type": "base64", "media_type": media_type, "data": data}
    return {"type": "url", "url": part.url}


def _split_data_url(url: str, where: str, provider: str, model: str) -> tuple[str, str]:
    header, comma, data = url[len("data:") :].partition(",")
    media_type, _, encoding = header.partition(";")
    if not comma or encoding != "base64" or not media_type:
        raise InvalidInputError(
            f"{provider}/{model}: the data URL in {where} is not a base64 data URL",
            hint="use data:<media type>;base64,<data>",
        )
    return media_type, data


def _document_block(part: FilePart, where: str, provider: str, model: str) -> dict[str, Any]:
    media_type = part.media_type or ""
    source: dict[str, Any]
    if part.data is not None and media_type in _TEXT_DOCUMENT_TYPES:
        try:
            text = base64.b64decode(part.data, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise InvalidInputError(
                f"{provider}/{model}: the text file in {where} is not base64 of UTF-8 text",
                hint="encode the file's UTF-8 bytes with base64",
            ) from exc
        source = {"type": "text", "media_type": "text/plain", "data": text}
    elif part.data is not None and media_type == "application/pdf":
        source = {"type": "base64", "media_type": media_type, "data": part.data}
    elif part.data is None and part.url is not None:
        source = {"type": "url", "url": part.url}
    else:
        raise CapabilityError(
            f"{provider}/{model}: Claude takes PDF and plain-text files, not "
            f"{media_type or 'a file without media_type'} ({where})",
            hint="convert the file to PDF or text, or pass it by URL",
        )
    block: dict[str, Any] = {"type": "document", "source": source}
    if part.name:
        block["title"] = part.name
    return block


# --- response ----------------------------------------------------------------------------------


def parse_message_body(payload: Any, *, provider: str, model: str) -> ModelResponse:
    """The `ModelResponse` for a ``message`` object (timings left at zero).

    Raises `ProviderBadResponse` when ``payload`` is not a message.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("content"), list):
        raise _bad(provider, model, "the answer is not a message (no content list)")
    texts: list[str] = []
    reasoning: list[str] = []
    thinking_blocks: list[dict[str, Any]] = []
    calls: list[ToolCall] = []
    for block in payload["content"]:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "tool_use":
            arguments = block.get("input")
            if not isinstance(arguments, dict):
                raise _bad(provider, model, "a tool_use block's input is not a JSON object")
            calls.append(_tool_call(block.get("id"), block.get("name"), arguments, provider, model))
        elif kind in ("thinking", "redacted_thinking"):
            assert isinstance(block, dict)
            thinking_blocks.append(block)
            if kind == "thinking":
                reasoning.append(str(block.get("thinking", "")))
        # Other block types (server tool results, citations) have no place in the common shape.
    response_id = payload.get("id")
    answered = payload.get("model")
    return ModelResponse(
        message=_assistant_message("".join(texts), calls, "".join(reasoning), thinking_blocks),
        model=answered if isinstance(answered, str) and answered else model,
        provider=provider,
        finish_reason=_finish_reason(payload.get("stop_reason")),
        usage=_usage(payload.get("usage"), Usage()),
        response_id=response_id if isinstance(response_id, str) else None,
    )


def _assistant_message(
    text: str, calls: list[ToolCall], reasoning: str, thinking_blocks: list[dict[str, Any]]
) -> Message:
    metadata: dict[str, Any] = {}
    if reasoning:
        metadata["reasoning"] = reasoning
    if thinking_blocks:
        metadata[THINKING_METADATA_KEY] = thinking_blocks
    return Message(
        role="assistant",
        content=[TextPart(text=text)] if text else [],
        tool_calls=calls,
        metadata=metadata,
    )


def _tool_call(
    call_id: Any, name: Any, arguments: dict[str, Any], provider: str, model: str
) -> ToolCall:
    if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
        raise _bad(provider, model, "a tool_use block has no id or name")
    return ToolCall(id=call_id, name=name, arguments=arguments)


def _finish_reason(stop: Any) -> FinishReason | str | None:
    if not isinstance(stop, str):
        return None
    return _STOP_REASONS.get(stop, stop)


def _usage(wire: Any, previous: Usage) -> Usage:
    """Claude counts cache reads and cache writes apart from ``input_tokens``; the common
    `Usage` counts every prompt token in ``input_tokens`` and the cache hits again in
    ``cached_tokens``. Fields missing from ``wire`` keep their ``previous`` value."""
    if not isinstance(wire, dict):
        return previous

    def count(key: str) -> int | None:
        value = wire.get(key)
        return value if isinstance(value, int) else None

    fresh = count("input_tokens")
    read = count("cache_read_input_tokens")
    written = count("cache_creation_input_tokens")
    output = count("output_tokens")
    details = wire.get("output_tokens_details")
    thinking = details.get("thinking_tokens") if isinstance(details, dict) else None
    if fresh is None and read is None and written is None:
        input_tokens = previous.input_tokens
        cached = previous.cached_tokens
    else:
        input_tokens = (fresh or 0) + (read or 0) + (written or 0)
        cached = read or 0
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output if output is not None else previous.output_tokens,
        cached_tokens=cached,
        reasoning_tokens=thinking if isinstance(thinking, int) else previous.reasoning_tokens,
    )


# --- streaming ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Block:
    kind: str
    tool_index: int = -1
    id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)


class AnthropicStreamDecoder:
    """Turns the events of a streamed ``/v1/messages`` answer into `StreamDelta` objects and,
    after ``message_stop``, the assembled answer (`result`).

    Tool-call deltas are numbered by tool call (0, 1, ...), not by content block.
    """

    def __init__(self, *, provider: str, model: str) -> None:
        """Decode a stream for ``provider``'s ``model`` (used in error messages)."""
        self._provider = provider
        self._model = model
        self._blocks: dict[int, _Block] = {}
        self._order: list[int] = []
        self._tool_count = 0
        self._usage = Usage()
        self._stop: FinishReason | str | None = None
        self._id: str | None = None
        self._answered_model = model
        self.started = False
        """True once ``message_start`` arrived."""
        self.done = False
        """True once ``message_stop`` arrived."""

    def feed(self, event: str, data: str) -> list[StreamDelta]:
        """Decode one SSE event; raise the mapped `ProviderError` for an ``error`` event."""
        if event == "ping" or not data:
            return []
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise _bad(self._provider, self._model, f"a {event!r} event is not JSON") from None
        if not isinstance(payload, dict):
            raise _bad(self._provider, self._model, f"a {event!r} event is not a JSON object")
        kind = payload.get("type", event)
        if kind == "error":
            raise _error_from_body(
                payload, None, self._provider, self._model, None, mid_stream=True
            )
        if kind == "content_block_delta":
            return self._delta(payload)
        if kind == "content_block_start":
            return self._start_block(payload)
        if kind == "content_block_stop":
            self._stop_block(payload)
        elif kind == "message_start":
            self._start_message(payload.get("message"))
        elif kind == "message_delta":
            delta = payload.get("delta")
            if isinstance(delta, dict) and "stop_reason" in delta:
                self._stop = _finish_reason(delta["stop_reason"])
            self._usage = _usage(payload.get("usage"), self._usage)
        elif kind == "message_stop":
            self.done = True
        # Unknown event types are skipped: Anthropic adds new ones with notice, never breaking.
        return []

    def result(self, *, latency_ms: float = 0.0, ttft_ms: float | None = None) -> ModelResponse:
        """The `ModelResponse` of the completed stream."""
        texts: list[str] = []
        reasoning: list[str] = []
        thinking_blocks: list[dict[str, Any]] = []
        calls: list[ToolCall] = []
        for index in self._order:
            block = self._blocks[index]
            if block.kind == "text":
                texts.append("".join(block.parts))
            elif block.kind == "tool_use":
                calls.append(
                    _tool_call(
                        block.id, block.name, self._arguments(block), self._provider, self._model
                    )
                )
            elif block.kind == "thinking":
                reasoning.append("".join(block.parts))
                thinking_blocks.append(block.raw | {"thinking": "".join(block.parts)})
            elif block.kind == "redacted_thinking":
                thinking_blocks.append(block.raw)
        return ModelResponse(
            message=_assistant_message("".join(texts), calls, "".join(reasoning), thinking_blocks),
            model=self._answered_model,
            provider=self._provider,
            finish_reason=self._stop,
            usage=self._usage,
            latency_ms=latency_ms,
            ttft_ms=ttft_ms,
            response_id=self._id,
        )

    def _start_message(self, message: Any) -> None:
        if not isinstance(message, dict):
            raise _bad(self._provider, self._model, "message_start carries no message")
        self.started = True
        if isinstance(message.get("id"), str):
            self._id = message["id"]
        if isinstance(message.get("model"), str) and message["model"]:
            self._answered_model = message["model"]
        self._usage = _usage(message.get("usage"), self._usage)

    def _start_block(self, payload: dict[str, Any]) -> list[StreamDelta]:
        index, start = payload.get("index"), payload.get("content_block")
        if not isinstance(index, int) or not isinstance(start, dict):
            raise _bad(self._provider, self._model, "content_block_start without index or block")
        kind = str(start.get("type", ""))
        block = _Block(kind=kind, raw=dict(start))
        self._blocks[index] = block
        self._order.append(index)
        if kind == "text":
            text = str(start.get("text", ""))
            if text:
                block.parts.append(text)
                return [StreamDelta(text=text)]
        elif kind == "thinking":
            text = str(start.get("thinking", ""))
            if text:
                block.parts.append(text)
                return [StreamDelta(reasoning=text)]
        elif kind == "tool_use":
            block.tool_index = self._tool_count
            self._tool_count += 1
            block.id = str(start.get("id", ""))
            block.name = str(start.get("name", ""))
            preset = start.get("input")
            if isinstance(preset, dict) and preset:
                # Not seen from Claude, but a complete input on the start block is still the input.
                block.parts.append(orjson.dumps(preset).decode())
            return [
                StreamDelta(
                    tool_call=ToolCallDelta(index=block.tool_index, id=block.id, name=block.name)
                )
            ]
        return []

    def _delta(self, payload: dict[str, Any]) -> list[StreamDelta]:
        block = self._block_at(payload)
        delta = payload.get("delta")
        if block is None or not isinstance(delta, dict):
            raise _bad(self._provider, self._model, "content_block_delta for no open block")
        kind = delta.get("type")
        if kind == "text_delta":
            text = str(delta.get("text", ""))
            block.parts.append(text)
            return [StreamDelta(text=text)] if text else []
        if kind == "input_json_delta":
            fragment = str(delta.get("partial_json", ""))
            block.parts.append(fragment)
            if not fragment:
                return []
            return [
                StreamDelta(tool_call=ToolCallDelta(index=block.tool_index, arguments=fragment))
            ]
        if kind == "thinking_delta":
            text = str(delta.get("thinking", ""))
            block.parts.append(text)
            return [StreamDelta(reasoning=text)] if text else []
        if kind == "signature_delta":
            block.raw["signature"] = str(block.raw.get("signature") or "") + str(
                delta.get("signature", "")
            )
        return []

    def _stop_block(self, payload: dict[str, Any]) -> None:
        block = self._block_at(payload)
        if block is not None and block.kind == "tool_use":
            self._arguments(block)  # fail at the block's end, not after the whole answer

    def _block_at(self, payload: dict[str, Any]) -> _Block | None:
        index = payload.get("index")
        return self._blocks.get(index) if isinstance(index, int) else None

    def _arguments(self, block: _Block) -> dict[str, Any]:
        text = "".join(block.parts)
        if not text.strip():
            return {}
        try:
            arguments = orjson.loads(text)
        except orjson.JSONDecodeError:
            arguments = None
        if not isinstance(arguments, dict):
            raise _bad(
                self._provider,
                self._model,
                f"the arguments of tool call {block.name!r} are not a JSON object: {text[:200]!r}",
            )
        return arguments


# --- errors ------------------------------------------------------------------------------------


def _bad(provider: str, model: str, what: str) -> ProviderBadResponse:
    return ProviderBadResponse(
        f"malformed answer: {what}",
        provider=provider,
        model=model,
        hint="the endpoint does not speak the Anthropic Messages API as expected; check base_url,"
        " or retry",
    )


_ERROR_TYPES_RETRYABLE = ("overloaded_error", "api_error")


def _error_from_body(
    body: Any,
    status: int | None,
    provider: str,
    model: str,
    headers: Mapping[str, str] | None,
    *,
    mid_stream: bool = False,
) -> ProviderError:
    """The `ProviderError` for an error answer (HTTP status) or an ``error`` stream event."""
    error = body.get("error") if isinstance(body, dict) else None
    kind = str(error.get("type", "")) if isinstance(error, dict) else ""
    detail = str(error.get("message", "")) if isinstance(error, dict) else ""
    where = "mid-stream " if mid_stream else ""
    said = f"{where}{kind or 'error'}" + (f" (HTTP {status})" if status else "")
    message = f"{said}: {detail}" if detail else said
    if status == 429 or kind == "rate_limit_error":
        return ProviderRateLimited(
            message, provider=provider, model=model, retry_after=_retry_after(headers)
        )
    if status in (401, 403) or kind in ("authentication_error", "permission_error"):
        return ProviderAuthError(
            message,
            provider=provider,
            model=model,
            status=status,
            hint=f"check models.providers.{provider}.api_key and the key's permissions",
        )
    if status == 408 or kind == "timeout_error":
        return ProviderTimeout(
            message, provider=provider, model=model, status=status, hint="retry, or raise timeout"
        )
    if (
        (status is not None and status >= 500)
        or kind in _ERROR_TYPES_RETRYABLE
        or (status is None and kind not in ("invalid_request_error", "not_found_error"))
    ):
        return ProviderUnavailable(
            message,
            provider=provider,
            model=model,
            status=status,
            hint="Anthropic is overloaded or failing; retry later or fail over to another model",
        )
    hint = "fix the request; sending it again will not help"
    if status == 404 or kind == "not_found_error":
        hint = f"check the model name {model!r} and base_url"
    elif status == 413 or kind == "request_too_large":
        hint = "shorten the conversation or the attachments"
    return ProviderRequestRejected(
        message, provider=provider, model=model, status=status, hint=hint
    )


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    return retry_after_seconds(headers)


def _error_from_status(
    status: int,
    raw: bytes,
    headers: Mapping[str, str],
    provider: str,
    model: str,
    api_key: str | None,
) -> ProviderError:
    raw = without_key(raw, api_key)
    try:
        body: Any = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        body = None
    error = _error_from_body(body, status, provider, model, headers)
    if body is None and raw:
        error.details["body"] = raw[:500].decode("utf-8", "replace")
    return error


def _transport_error(exc: TransportError, provider: str, model: str, url: str) -> ProviderError:
    return provider_failure(exc, provider=provider, model=model, url=url)


# --- the provider ------------------------------------------------------------------------------


class AnthropicProvider:
    """Claude over the Anthropic Messages API.

    The transport is shared with other providers and belongs to whoever made it: `aclose`
    leaves it open. ``timeout`` is a `Timeouts`, or the seconds a whole call may take.
    """

    def __init__(
        self,
        name: str = "anthropic",
        *,
        api_key: str | None,
        transport: HttpTransport,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float | Timeouts = Timeouts(),
        anthropic_version: str = DEFAULT_ANTHROPIC_VERSION,
        default_max_tokens: int = 4096,
    ) -> None:
        """A provider called ``name`` sending to ``base_url`` (with or without a trailing
        ``/v1``); ``default_max_tokens`` fills the ``max_tokens`` Claude requires."""
        if default_max_tokens < 1:
            raise InvalidInputError(
                f"default_max_tokens must be positive, got {default_max_tokens}",
                hint="set models.providers.<name>.default_max_tokens to a count such as 4096",
            )
        self._name = name
        self._api_key = api_key or None
        self._transport = transport
        root = base_url.rstrip("/")
        self._root = root if root.endswith("/v1") else root + "/v1"
        self._url = self._root + "/messages"
        self._timeouts = Timeouts.of(timeout)
        self._version = anthropic_version
        self._default_max_tokens = default_max_tokens

    @property
    def name(self) -> str:
        """The provider's configured name."""
        return self._name

    @property
    def url(self) -> str:
        """The endpoint requests go to."""
        return self._url

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """One call; the whole answer."""
        model = request.model
        headers = self._headers(model, stream=False)
        body = self._body(request, stream=False)
        timeout = self._timeouts.within(request.timeout)
        started = time.perf_counter()
        try:
            answer = await self._transport.request(
                "POST", self._url, headers=headers, body=body, timeout=timeout
            )
        except TransportError as exc:
            raise _transport_error(exc, self._name, model, self._url) from exc
        latency_ms = (time.perf_counter() - started) * 1000
        if answer.status != 200:
            raise _error_from_status(
                answer.status, answer.body, answer.headers, self._name, model, self._api_key
            )
        try:
            payload = orjson.loads(answer.body)
        except orjson.JSONDecodeError:
            raise _bad(self._name, model, "the body is not JSON") from None
        response = parse_message_body(payload, provider=self._name, model=model)
        return replace(response, latency_ms=latency_ms)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamDelta | ModelResponse]:
        """Deltas as they arrive, then exactly one final `ModelResponse`."""
        model = request.model
        headers = self._headers(model, stream=True)
        body = self._body(request, stream=True)
        timeout = self._timeouts.within(request.timeout)
        decoder = AnthropicStreamDecoder(provider=self._name, model=model)
        started = time.perf_counter()
        ttft_ms: float | None = None
        try:
            async with self._transport.stream(
                "POST", self._url, headers=headers, body=body, timeout=timeout
            ) as answer:
                if answer.status != 200:
                    raw = await answer.read()
                    raise _error_from_status(
                        answer.status, raw, answer.headers, self._name, model, self._api_key
                    )
                parser = SseParser()
                async for chunk in answer.iter_bytes():
                    for event in parser.feed(chunk):
                        for delta in decoder.feed(event.event, event.data):
                            if ttft_ms is None:
                                ttft_ms = (time.perf_counter() - started) * 1000
                            yield delta
                    if decoder.done:
                        break
                else:
                    # A last event the server sent without its blank line still counts.
                    for event in parser.close():
                        for delta in decoder.feed(event.event, event.data):
                            yield delta
        except TransportError as exc:
            if isinstance(exc, TransportTimeout) or not decoder.started or decoder.done:
                raise _transport_error(exc, self._name, model, self._url) from exc
            raise ProviderUnavailable(
                f"the stream was cut before its end: {exc}",
                provider=self._name,
                model=model,
                hint="the connection dropped mid-answer; retry or fail over",
            ) from exc
        except InvalidInputError as exc:  # the SSE parser refusing the byte stream
            raise _bad(self._name, model, exc.message) from exc
        if not decoder.done:
            raise ProviderUnavailable(
                "the stream ended before message_stop",
                provider=self._name,
                model=model,
                hint="the connection dropped mid-answer; retry or fail over",
            )
        yield decoder.result(latency_ms=(time.perf_counter() - started) * 1000, ttft_ms=ttft_ms)

    async def list_models(self, *, limits: Timeouts | None = None) -> list[str]:
        """The model ids the API serves (``GET /v1/models``), within ``limits`` (default: the
        provider's): a cheap call that shows the endpoint answers and takes the key. Raises
        the errors a model call would."""
        headers = self._headers("", stream=False)
        headers.pop("content-type")
        url = self._root + "/models"
        try:
            answer = await self._transport.request(
                "GET", url, headers=headers, timeout=self._timeouts if limits is None else limits
            )
        except TransportError as exc:
            raise provider_failure(exc, provider=self._name, model=None, url=url) from exc
        if answer.status != 200:
            raise _error_from_status(
                answer.status, answer.body, answer.headers, self._name, "", self._api_key
            )
        try:
            listed = orjson.loads(answer.body).get("data")
        except (orjson.JSONDecodeError, AttributeError):
            listed = None
        if not isinstance(listed, list):
            raise _bad(self._name, "", "the model list has no data array")
        return [str(m["id"]) for m in listed if isinstance(m, dict) and "id" in m]

    async def aclose(self) -> None:
        """Nothing to release: the shared transport is closed by its owner."""

    def _headers(self, model: str, *, stream: bool) -> dict[str, str]:
        if self._api_key is None:
            raise ProviderAuthError(
                "no API key configured",
                provider=self._name,
                model=model,
                hint=f"set models.providers.{self._name}.api_key (for example"
                " ${ANTHROPIC_API_KEY})",
            )
        return {
            "x-api-key": self._api_key,
            "anthropic-version": self._version,
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
        }

    def _body(self, request: ModelRequest, *, stream: bool) -> bytes:
        body = build_messages_body(
            request,
            provider=self._name,
            default_max_tokens=self._default_max_tokens,
            stream=stream,
        )
        try:
            return orjson.dumps(body)
        except TypeError as exc:
            raise InvalidInputError(
                f"{self._name}/{request.model}: the request holds a value JSON cannot carry: {exc}",
                hint="tool arguments, schemas and extra must be JSON values",
            ) from exc
