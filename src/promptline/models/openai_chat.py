"""The OpenAI chat-completions wire format, spoken to OpenAI and every compatible endpoint
(DeepSeek, Kimi/Moonshot, Ollama, vLLM, LM Studio, any ``base_url``)."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn
from urllib.parse import urlsplit

import orjson

from promptline.core.errors import (
    ConfigError,
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
    FilePart,
    ImagePart,
    Message,
    TextPart,
    ToolCall,
    Usage,
)
from promptline.models.sse import SseEvent, SseParser
from promptline.models.transport import (
    HttpTransport,
    StreamResponse,
    Timeouts,
    TransportError,
    provider_failure,
    retry_after_seconds,
    without_key,
)
from promptline.models.types import (
    FinishReason,
    ModelRequest,
    ModelResponse,
    ResponseFormat,
    StreamDelta,
    ToolCallDelta,
    assistant_message,
    token_usage,
)

__all__ = [
    "KEYLESS_PROVIDERS",
    "OPENAI_COMPATIBLE_ENDPOINTS",
    "OpenAIChatProvider",
    "build_request_body",
    "normalize_base_url",
    "parse_completion",
    "status_error",
]

OPENAI_COMPATIBLE_ENDPOINTS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "deepseek": "https://api.deepseek.com/v1",
    "kimi": "https://api.moonshot.cn/v1",
    "moonshot": "https://api.moonshot.cn/v1",
    "ollama": "http://localhost:11434/v1",
    "vllm": "http://localhost:8000/v1",
    "lmstudio": "http://localhost:1234/v1",
}
"""Public endpoint of each well-known provider name (a configured ``base_url`` wins)."""

KEYLESS_PROVIDERS = frozenset({"ollama", "vllm", "lmstudio"})
"""Local servers that take requests without an API key."""

_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}

# Base64 prefixes of the image formats chat completions accepts, for data without a media type.
_IMAGE_MAGIC = (
    ("iVBORw0KGgo", "image/png"),
    ("/9j/", "image/jpeg"),
    ("R0lGOD", "image/gif"),
    ("UklGR", "image/webp"),
)


def normalize_base_url(name: str, base_url: str) -> str:
    """``base_url`` without a trailing slash; for Ollama, with ``/v1`` appended when the
    configured URL is the server root (``http://localhost:11434``, as its docs give it)."""
    url = base_url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"models.providers.{name}.base_url is not an http(s) URL: {base_url!r}",
            hint="give the endpoint like https://api.openai.com/v1 or http://localhost:11434",
        )
    if name == "ollama" and parts.path in ("", "/"):
        url += "/v1"
    return url


# --- request ----------------------------------------------------------------------------------


def build_request_body(request: ModelRequest, *, stream: bool) -> dict[str, Any]:
    """The JSON body of ``POST /chat/completions`` for ``request`` (``request.model`` is bare).

    ``request.extra`` is merged last, so it can set any field the wire format has; a key set
    to None removes that field (``stream_options`` for a server that rejects it). A
    ``max_completion_tokens`` key in it moves ``max_tokens`` there (newer OpenAI models refuse
    ``max_tokens``): ``True`` sends ``request.max_tokens`` under that name, a number is sent as is.
    """
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [_message(m) for m in request.messages],
    }
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": _function(t.name, t.description, t.parameters, t.strict),
            }
            for t in request.tools
        ]
    if request.tool_choice is not None:
        choice = request.tool_choice
        body["tool_choice"] = (
            choice
            if choice in ("auto", "none", "required")
            else {"type": "function", "function": {"name": choice}}
        )
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop"] = list(request.stop)
    if request.response_format is not None:
        body["response_format"] = _response_format(request.response_format)
    extra = dict(request.extra)
    completion_cap = extra.pop("max_completion_tokens", None)
    if completion_cap is True:
        if request.max_tokens is not None:
            body["max_completion_tokens"] = request.max_tokens
    elif completion_cap is not None and completion_cap is not False:
        body["max_completion_tokens"] = completion_cap
    elif request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    for key, value in extra.items():
        if value is None:
            body.pop(key, None)  # None removes a field some compatible server rejects
        else:
            body[key] = value
    return body


def _function(
    name: str, description: str, parameters: dict[str, Any], strict: bool | None
) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name, "parameters": parameters}
    if description:
        function["description"] = description
    if strict is not None:
        function["strict"] = strict
    return function


def _response_format(fmt: ResponseFormat) -> dict[str, Any]:
    if fmt.type != "json_schema":
        return {"type": fmt.type}
    if fmt.schema is None:
        raise InvalidInputError(
            "response_format json_schema needs a schema",
            hint="set ResponseFormat.schema, or use type='json_object' for any JSON object",
        )
    spec: dict[str, Any] = {"name": fmt.name, "schema": fmt.schema}
    if fmt.strict is not None:
        spec["strict"] = fmt.strict
    return {"type": "json_schema", "json_schema": spec}


def _message(message: Message) -> dict[str, Any]:
    role = message.role
    out: dict[str, Any] = {"role": role}
    if role == "tool":
        if not message.tool_call_id:
            raise InvalidInputError(
                "a tool message has no tool_call_id",
                hint="set Message.tool_call_id to the id of the tool call it answers",
            )
        out["tool_call_id"] = message.tool_call_id
        out["content"] = message.text
        return out
    if role == "assistant":
        text = message.text
        out["content"] = text if text or not message.tool_calls else None
        if message.tool_calls:
            out["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": call.name,
                        "arguments": orjson.dumps(call.arguments).decode(),
                    },
                }
                for call in message.tool_calls
            ]
    elif role == "system" or all(isinstance(p, TextPart) for p in message.content):
        out["content"] = message.text
    else:
        out["content"] = [_part(p) for p in message.content]
    if message.name:
        out["name"] = message.name
    return out


def _part(part: TextPart | ImagePart | FilePart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart):
        image: dict[str, Any] = {"url": _image_url(part)}
        if part.detail is not None:
            image["detail"] = part.detail
        return {"type": "image_url", "image_url": image}
    if part.data is None:
        raise InvalidInputError(
            "chat completions take files as base64 data, not by URL",
            hint="download the file and pass its bytes base64-encoded in FilePart.data",
            url=part.url,
        )
    media_type = part.media_type or "application/pdf"
    file: dict[str, Any] = {"file_data": f"data:{media_type};base64,{part.data}"}
    if part.name:
        file["filename"] = part.name
    return {"type": "file", "file": file}


def _image_url(part: ImagePart) -> str:
    if part.url:
        return part.url
    if not part.data:
        raise InvalidInputError(
            "an image part has neither url nor data",
            hint="set ImagePart.url, or ImagePart.data (base64) with its media_type",
        )
    media_type = part.media_type or next(
        (kind for prefix, kind in _IMAGE_MAGIC if part.data.startswith(prefix)), None
    )
    if media_type is None:
        raise InvalidInputError(
            "an image given as data has no media_type and is not PNG, JPEG, GIF or WebP",
            hint="set ImagePart.media_type, for example image/png",
        )
    return f"data:{media_type};base64,{part.data}"


# --- response ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Call:
    """Where a failure happened, for error messages."""

    provider: str
    model: str


def parse_completion(
    raw: bytes, *, provider: str, model: str, latency_ms: float = 0.0
) -> ModelResponse:
    """A non-streamed ``chat.completion`` body as a `ModelResponse`."""
    where = _Call(provider, model)
    data = _loads(raw, where)
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        _bad(where, "the answer has no choices", raw)
    choice = choices[0]
    wire = choice.get("message")
    if not isinstance(wire, dict):
        _bad(where, "the answer's first choice has no message", raw)
    text = wire.get("content")
    if text is not None and not isinstance(text, str):
        _bad(where, "the message content is not a string", raw)
    wire_calls = wire.get("tool_calls")
    calls = (
        [_tool_call(c, where) for c in _list(wire_calls, where, "tool_calls")]
        if wire_calls is not None
        else []
    )
    reasoning = wire.get("reasoning_content") or wire.get("reasoning")
    # Every value was checked above: the message is built, not validated a second time.
    message = assistant_message(text or "", calls, reasoning if isinstance(reasoning, str) else "")
    response_id = data.get("id")
    return ModelResponse(
        message=message,
        model=str(data.get("model") or model),
        provider=provider,
        finish_reason=_finish(choice.get("finish_reason"), bool(calls)),
        usage=_usage(data.get("usage")),
        latency_ms=latency_ms,
        response_id=response_id if isinstance(response_id, str) else None,
    )


def _loads(raw: bytes, where: _Call) -> dict[str, Any]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        _bad(where, "the answer is not valid JSON", raw)
    if not isinstance(data, dict):
        _bad(where, "the answer is not a JSON object", raw)
    return data


def _bad(where: _Call, what: str, raw: bytes | str = b"") -> NoReturn:
    sample = raw if isinstance(raw, str) else raw[:200].decode("utf-8", "replace")
    raise ProviderBadResponse(
        what,
        provider=where.provider,
        model=where.model,
        hint="the endpoint does not speak OpenAI chat completions correctly; check base_url,"
        " or retry if it was a glitch",
        body=sample[:200],
    )


def _list(value: Any, where: _Call, name: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        _bad(where, f"{name} is not a list")
    return value


def _tool_call(wire: Any, where: _Call) -> ToolCall:
    function = wire.get("function") if isinstance(wire, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        _bad(where, "a tool call has no function name")
    call_id = wire.get("id")
    return _assembled(
        call_id if isinstance(call_id, str) and call_id else None,
        function["name"],
        function.get("arguments") or "",
        where,
    )


def _assembled(call_id: str | None, name: str, arguments: Any, where: _Call) -> ToolCall:
    if isinstance(arguments, dict):  # some compatible servers send an object, not a string
        parsed: Any = arguments
    elif not isinstance(arguments, str):
        _bad(where, f"the arguments of tool call {name!r} are not a JSON string")
    elif not arguments.strip():
        parsed = {}
    else:
        try:
            parsed = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            raise ProviderBadResponse(
                f"tool call {name!r} has arguments that are not valid JSON",
                provider=where.provider,
                model=where.model,
                hint="the model produced broken arguments; retry, or use a model with"
                " strict tool schemas",
                tool=name,
                arguments=arguments[:200],
            ) from None
    if not isinstance(parsed, dict):
        raise ProviderBadResponse(
            f"tool call {name!r} has arguments that are not a JSON object",
            provider=where.provider,
            model=where.model,
            hint="the model produced arguments of the wrong shape; retry the call",
            tool=name,
            arguments=str(arguments)[:200],
        )
    if call_id is None:
        return ToolCall(name=name, arguments=parsed)
    return ToolCall(id=call_id, name=name, arguments=parsed)


def _finish(reason: Any, has_calls: bool) -> FinishReason | str | None:
    if not isinstance(reason, str):
        return "tool_calls" if has_calls else None
    normal = _FINISH_REASONS.get(reason, reason)
    # Some compatible servers (Ollama) say "stop" after a tool call; the caller needs to know.
    if has_calls and normal == "stop":
        return "tool_calls"
    return normal


def _usage(wire: Any) -> Usage:
    if not isinstance(wire, dict):
        return Usage()
    prompt = wire.get("prompt_tokens_details")
    completion = wire.get("completion_tokens_details")
    cached = _int(prompt.get("cached_tokens")) if isinstance(prompt, dict) else 0
    # DeepSeek reports its context cache as prompt_cache_hit_tokens, Moonshot as cached_tokens.
    cached = cached or _int(wire.get("prompt_cache_hit_tokens")) or _int(wire.get("cached_tokens"))
    # _int leaves only non-negative ints, so the counts need no validation.
    return token_usage(
        _int(wire.get("prompt_tokens")),
        _int(wire.get("completion_tokens")),
        cached,
        _int(completion.get("reasoning_tokens")) if isinstance(completion, dict) else 0,
    )


def _int(value: Any) -> int:
    return value if type(value) is int and value > 0 else 0


# --- errors -----------------------------------------------------------------------------------


def _retry_after(headers: Mapping[str, str]) -> float | None:
    return retry_after_seconds(headers)


def _error_message(body: bytes) -> str:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:200].decode("utf-8", "replace").strip() or "no error message"
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    if isinstance(error, str):  # Ollama and vLLM send {"error": "..."}
        return error
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])
    return body[:200].decode("utf-8", "replace")


def status_error(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    provider: str,
    model: str,
    api_key: str | None = None,
) -> ProviderError:
    """The typed error for an HTTP error answer of a chat-completions endpoint; ``api_key``,
    should the endpoint quote it, is masked out (`without_key`)."""
    said = _error_message(without_key(body, api_key))
    message = f"HTTP {status}: {said}"
    if status == 429:
        return ProviderRateLimited(
            message, provider=provider, model=model, retry_after=_retry_after(headers)
        )
    if status in (401, 403):
        return ProviderAuthError(
            message,
            provider=provider,
            model=model,
            status=status,
            hint=f"check models.providers.{provider}.api_key (and that the key may use {model})",
        )
    if status == 408:
        return ProviderTimeout(
            message, provider=provider, model=model, status=status, hint="retry the call"
        )
    if status in (409, 425) or status >= 500:
        return ProviderUnavailable(
            message,
            provider=provider,
            model=model,
            status=status,
            hint="the provider failed on its side; retry later or fail over to another model",
        )
    hint = "fix the request; sending it again will fail the same way"
    if status == 404:
        hint = (
            f"check that {provider} serves a model named {model!r} and that"
            f" models.providers.{provider}.base_url ends in the API root (such as /v1)"
        )
    return ProviderRequestRejected(
        message, provider=provider, model=model, status=status, hint=hint
    )


def _transport_error(exc: TransportError, where: _Call, url: str) -> ProviderError:
    return provider_failure(exc, provider=where.provider, model=where.model, url=url)


# --- the provider -----------------------------------------------------------------------------


@dataclass(slots=True)
class _StreamState:
    """What a streamed answer has said so far."""

    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: dict[int, list[Any]] = field(default_factory=dict)  # index -> [id, name, [args]]
    finish_reason: Any = None
    usage: Any = None
    model: str | None = None
    response_id: str | None = None
    done: bool = False
    first_token: float | None = None


class OpenAIChatProvider:
    """A `ModelProvider` for one OpenAI-compatible endpoint.

    ``base_url`` is the API root that ``/chat/completions`` is appended to (it includes ``/v1``;
    for ``ollama`` a bare server URL gets ``/v1`` added). ``requires_api_key=False`` is for
    local servers (Ollama, vLLM, LM Studio): no ``Authorization`` header is sent without a key.
    ``timeout`` is a `Timeouts`, or the seconds a whole call may take; a request's own
    ``timeout`` bounds its call further.
    """

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        api_key: str | None,
        transport: HttpTransport | None = None,
        default_headers: Mapping[str, str] | None = None,
        timeout: float | Timeouts = Timeouts(),
        requires_api_key: bool = True,
    ) -> None:
        """Create the provider; nothing is sent until the first call."""
        if not isinstance(timeout, Timeouts) and not timeout > 0:
            raise ConfigError(
                f"provider {name}: timeout must be positive, got {timeout}",
                hint="give the timeout in seconds, such as 600",
            )
        self._name = name
        self._base_url = normalize_base_url(name, base_url)
        self._url = f"{self._base_url}/chat/completions"
        self._api_key = api_key or None
        # Without one given, a transport of its own (closed with the provider).
        self._owned_transport: HttpTransport | None = None
        if transport is None:
            from promptline.models.http11 import Http11Transport

            transport = self._owned_transport = Http11Transport()
        self._transport = transport
        self._timeouts = Timeouts.of(timeout)
        self._requires_api_key = requires_api_key
        headers = {"content-type": "application/json", "user-agent": "promptline"}
        headers.update({k.lower(): v for k, v in (default_headers or {}).items()})
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        self._headers = headers
        # Built once: the headers of every call are the same.
        self._json_headers = {**headers, "accept": "application/json"}
        self._sse_headers = {**headers, "accept": "text/event-stream"}

    @classmethod
    def for_endpoint(
        cls,
        name: str,
        *,
        transport: HttpTransport,
        api_key: str | None = None,
        base_url: str | None = None,
        default_headers: Mapping[str, str] | None = None,
        timeout: float | Timeouts = Timeouts(),
    ) -> OpenAIChatProvider:
        """A provider for a configured name: the well-known endpoint and key rule of ``name``
        (`OPENAI_COMPATIBLE_ENDPOINTS`, `KEYLESS_PROVIDERS`) unless ``base_url`` is given."""
        url = base_url or OPENAI_COMPATIBLE_ENDPOINTS.get(name)
        if url is None:
            raise ConfigError(
                f"models.providers.{name} has no base_url and {name!r} is not a known provider",
                hint=f"set models.providers.{name}.base_url to its OpenAI-compatible API root,"
                " such as http://localhost:8000/v1",
            )
        return cls(
            name,
            base_url=url,
            api_key=api_key,
            transport=transport,
            default_headers=default_headers,
            timeout=timeout,
            # A key-less endpoint at a custom URL is a local server unless a key was given.
            requires_api_key=name not in KEYLESS_PROVIDERS and (base_url is None or bool(api_key)),
        )

    @property
    def name(self) -> str:
        """The configured provider name."""
        return self._name

    @property
    def base_url(self) -> str:
        """The normalised API root requests go to."""
        return self._base_url

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """One non-streamed call."""
        where = self._check(request)
        body = orjson.dumps(build_request_body(request, stream=False))
        started = time.perf_counter()
        try:
            answer = await self._transport.request(
                "POST",
                self._url,
                headers=self._json_headers,
                body=body,
                timeout=self._timeouts.within(request.timeout),
            )
        except TransportError as exc:
            raise _transport_error(exc, where, self._url) from exc
        if not 200 <= answer.status < 300:
            raise status_error(
                answer.status,
                answer.headers,
                answer.body,
                provider=self._name,
                model=request.model,
                api_key=self._api_key,
            )
        latency = (time.perf_counter() - started) * 1000
        return parse_completion(
            answer.body, provider=self._name, model=request.model, latency_ms=latency
        )

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamDelta | ModelResponse]:
        """Deltas as they arrive, then the final `ModelResponse` (with usage and ``ttft_ms``)."""
        where = self._check(request)
        body = orjson.dumps(build_request_body(request, stream=True))
        started = time.perf_counter()
        state = _StreamState()
        try:
            async with self._transport.stream(
                "POST",
                self._url,
                headers=self._sse_headers,
                body=body,
                timeout=self._timeouts.within(request.timeout),
            ) as answer:
                if not 200 <= answer.status < 300:
                    raw = await answer.read()
                    raise status_error(
                        answer.status,
                        answer.headers,
                        raw,
                        provider=self._name,
                        model=request.model,
                        api_key=self._api_key,
                    )
                if answer.headers.get("content-type", "").startswith("application/json"):
                    # A server that ignored stream=true: one delta, then the whole answer.
                    async for item in self._unstreamed(answer, where, started):
                        yield item
                    return
                # The event loop is inlined here rather than in a nested generator: every
                # delta passes through it, and each generator level costs per item.
                parser = SseParser()
                chunks = answer.iter_bytes()
                async for chunk in chunks:
                    try:
                        events = parser.feed(chunk)
                    except InvalidInputError as exc:
                        _bad(where, f"the event stream is broken: {exc.message}")
                    if not events:
                        continue
                    for delta in _event_deltas(events, state, where):
                        yield delta
                    if state.done:
                        # Read the body to its end so the connection goes back to the pool;
                        # the answer is complete, so a failure now does not matter.
                        with contextlib.suppress(TransportError):
                            async for _ in chunks:
                                pass
                        break
                else:
                    # The body ended without [DONE]; a last event without its blank line counts.
                    for delta in _event_deltas(parser.close(), state, where):
                        yield delta
        except TransportError as exc:
            raise _transport_error(exc, where, self._url) from exc
        if not state.done:
            raise ProviderUnavailable(
                "the stream ended before [DONE]: the answer was cut",
                provider=self._name,
                model=request.model,
                hint="the connection dropped mid-answer; retry the call",
            )
        yield self._final(state, where, started)

    async def list_models(self, *, limits: Timeouts | None = None) -> list[str]:
        """The model names the endpoint serves (``GET /models``), within ``limits`` (default:
        the provider's): a cheap call that shows the endpoint answers and takes the
        key. Raises the errors a model call would."""
        where = _Call(self._name, "")
        if self._requires_api_key and not self._api_key:
            self._check(ModelRequest(model="", messages=[]))
        url = f"{self._base_url}/models"
        try:
            answer = await self._transport.request(
                "GET",
                url,
                headers=self._json_headers,
                timeout=self._timeouts if limits is None else limits,
            )
        except TransportError as exc:
            raise provider_failure(exc, provider=self._name, model=None, url=url) from exc
        if not 200 <= answer.status < 300:
            raise status_error(
                answer.status,
                answer.headers,
                answer.body,
                provider=self._name,
                model="",
                api_key=self._api_key,
            )
        data = _loads(answer.body, where)
        listed = data.get("data")
        if not isinstance(listed, list):
            _bad(where, "the model list has no data array", answer.body)
        return [str(m["id"]) for m in listed if isinstance(m, dict) and "id" in m]

    async def aclose(self) -> None:
        """Close the transport this provider made for itself (a shared one belongs to
        whoever created it)."""
        if self._owned_transport is not None:
            await self._owned_transport.aclose()

    def _check(self, request: ModelRequest) -> _Call:
        where = _Call(self._name, request.model)
        if self._requires_api_key and not self._api_key:
            raise ProviderAuthError(
                "no API key is configured",
                provider=self._name,
                model=request.model,
                hint=f"set models.providers.{self._name}.api_key, for example to"
                f' "${{{re.sub(r"[^A-Z0-9]", "_", self._name.upper())}_API_KEY}}"',
            )
        return where

    async def _unstreamed(
        self, answer: StreamResponse, where: _Call, started: float
    ) -> AsyncIterator[StreamDelta | ModelResponse]:
        raw = await answer.read()
        elapsed = (time.perf_counter() - started) * 1000
        response = parse_completion(
            raw, provider=where.provider, model=where.model, latency_ms=elapsed
        )
        if response.message.text:
            yield StreamDelta(text=response.message.text)
        yield ModelResponse(
            message=response.message,
            model=response.model,
            provider=response.provider,
            finish_reason=response.finish_reason,
            usage=response.usage,
            latency_ms=elapsed,
            ttft_ms=elapsed,
            response_id=response.response_id,
        )

    def _final(self, state: _StreamState, where: _Call, started: float) -> ModelResponse:
        now = time.perf_counter()
        calls = [
            _assembled(call_id, name or "", "".join(args), where)
            for _, (call_id, name, args) in sorted(state.calls.items())
        ]
        for call in calls:
            if not call.name:
                _bad(where, "a streamed tool call never said its function name")
        text = "".join(state.text)
        reasoning = "".join(state.reasoning)
        first = state.first_token if state.first_token is not None else now
        return ModelResponse(
            message=assistant_message(text, calls, reasoning),
            model=state.model or where.model,
            provider=where.provider,
            finish_reason=_finish(state.finish_reason, bool(calls)),
            usage=_usage(state.usage),
            latency_ms=(now - started) * 1000,
            ttft_ms=(first - started) * 1000,
            response_id=state.response_id,
        )


def _event_deltas(events: list[SseEvent], state: _StreamState, where: _Call) -> list[StreamDelta]:
    """The deltas of the events up to ``[DONE]`` (after which ``state.done`` is set)."""
    out: list[StreamDelta] = []
    for event in events:
        data = event.data
        if data == "[DONE]":
            state.done = True
            break
        _chunk_deltas(data, state, where, out)
    if out and state.first_token is None:
        state.first_token = time.perf_counter()
    return out


def _chunk_deltas(data: str, state: _StreamState, where: _Call, out: list[StreamDelta]) -> None:
    """Append the deltas of one ``chat.completion.chunk`` to ``out`` (and tell ``state`` the
    rest). Runs once per streamed token, so lookups are kept to what each chunk needs."""
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        _bad(where, "a stream event is not valid JSON", data)
    if not isinstance(chunk, dict):
        _bad(where, "a stream event is not a JSON object", data)
    get = chunk.get
    error = get("error")
    if error is not None:
        said = error.get("message") if isinstance(error, dict) else error
        raise ProviderUnavailable(
            f"the provider reported an error mid-stream: {said}",
            provider=where.provider,
            model=where.model,
            hint="retry the call, or fail over to another model",
        )
    if state.response_id is None and isinstance(get("id"), str):
        state.response_id = chunk["id"]
    if state.model is None and isinstance(get("model"), str):
        state.model = chunk["model"]
    usage = get("usage")
    if usage:
        state.usage = usage
    choices = get("choices")
    if choices is None:
        return
    if not isinstance(choices, list):
        _bad(where, "choices is not a list")
    for choice in choices:
        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
            continue  # n > 1 is not part of the common shape; the first choice is the answer
        finish = choice.get("finish_reason")
        if finish:
            state.finish_reason = finish
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            continue
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            state.reasoning.append(reasoning)
            out.append(StreamDelta(reasoning=reasoning))
        text = delta.get("content")
        if isinstance(text, str) and text:
            state.text.append(text)
            out.append(StreamDelta(text))  # positional: cheaper, and this runs per token
        calls = delta.get("tool_calls")
        if calls is not None:
            for wire in _list(calls, where, "tool_calls"):
                out.append(_call_fragment(wire, state, where))


def _call_fragment(wire: Any, state: _StreamState, where: _Call) -> StreamDelta:
    if not isinstance(wire, dict):
        _bad(where, "a streamed tool call is not an object")
    index = wire.get("index", len(state.calls))
    if not isinstance(index, int):
        _bad(where, "a streamed tool call has no index")
    function: dict[str, Any] = wire["function"] if isinstance(wire.get("function"), dict) else {}
    call_id = wire.get("id") if isinstance(wire.get("id"), str) and wire.get("id") else None
    name = function.get("name") if isinstance(function.get("name"), str) else None
    arguments = function.get("arguments")
    if isinstance(arguments, dict):
        arguments = orjson.dumps(arguments).decode()
    arguments = arguments if isinstance(arguments, str) else ""
    slot = state.calls.setdefault(index, [None, None, []])
    if call_id and slot[0] is None:
        slot[0] = call_id
    if name and not slot[1]:
        slot[1] = name
    slot[2].append(arguments)
    return StreamDelta(tool_call=ToolCallDelta(index, call_id, name, arguments))
