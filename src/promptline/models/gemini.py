"""Google Gemini ``generateContent`` wire format: requests, answers, streaming and errors mapped to
the common model-layer shapes."""

from __future__ import annotations

import mimetypes
import re
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import orjson

from promptline.core.errors import (
    InvalidInputError,
    ProviderAuthError,
    ProviderBadResponse,
    ProviderError,
    ProviderRateLimited,
    ProviderRequestRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from promptline.core.ids import new_id
from promptline.core.messages import FilePart, ImagePart, Message, TextPart, ToolCall, Usage
from promptline.models.sse import SseParser
from promptline.models.transport import (
    HttpTransport,
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
    StreamDelta,
    ToolCallDelta,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "THOUGHT_SIGNATURES_KEY",
    "GeminiProvider",
    "gemini_error",
    "gemini_request_body",
    "gemini_schema",
]

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"

THOUGHT_SIGNATURES_KEY = "gemini_thought_signatures"
"""``Message.metadata`` key holding ``{tool call id: thoughtSignature}`` of an assistant turn.

Gemini's thinking models sign their function calls and reject a follow-up turn that drops the
signature, so it travels with the message and is sent back on the matching ``functionCall``."""

# Fields of Gemini's `Schema` (an OpenAPI 3.0 subset); any other JSON-schema key is rejected.
_SCHEMA_KEYS = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "maxItems",
        "minItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "anyOf",
        "propertyOrdering",
        "default",
        "items",
        "minimum",
        "maximum",
    }
)
_FORMATS = {
    "STRING": {"enum", "date-time"},
    "NUMBER": {"float", "double"},
    "INTEGER": {"int32", "int64"},
}
_FINISH_REASONS: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "LANGUAGE": "content_filter",
}
_TOOL_CHOICE_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
# Magic prefixes of base64-encoded images, for image data that came without a media type.
_BASE64_MAGIC = {
    "iVBORw0KGgo": "image/png",
    "/9j/": "image/jpeg",
    "R0lGOD": "image/gif",
    "UklGR": "image/webp",
}
_DATA_URL = re.compile(r"data:(?P<mime>[^;,]+)?(?:;[^,]*)?;base64,(?P<data>.*)", re.DOTALL)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)s")


# --- request ----------------------------------------------------------------------------------


def gemini_request_body(request: ModelRequest) -> dict[str, Any]:
    """The JSON body of a ``generateContent`` call for ``request`` (``extra`` merged last).

    Raises `InvalidInputError` for input Gemini cannot express (no user or model turn, a tool
    result whose tool name cannot be found, a file without a media type, a recursive schema).
    """
    body: dict[str, Any] = {}
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    for message in request.messages:
        if message.role == "system":
            system.extend({"text": p.text} for p in message.content if isinstance(p, TextPart))
            continue
        if message.role == "assistant":
            role, parts = "model", _model_parts(message, call_names)
        elif message.role == "tool":
            role, parts = "user", [_function_response(message, call_names)]
        else:
            role, parts = "user", [p for p in map(_content_part, message.content) if p]
        if not parts:
            continue
        # Gemini wants turns to alternate, and the answers to parallel calls in one turn.
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    if not contents:
        raise InvalidInputError(
            "a Gemini request needs at least one user or assistant message",
            hint="add a user message; system messages alone become the system instruction",
        )
    body["contents"] = contents
    if system:
        body["systemInstruction"] = {"parts": system}
    if request.tools:
        declarations = []
        for tool in request.tools:
            declaration: dict[str, Any] = {"name": tool.name}
            if tool.description:
                declaration["description"] = tool.description
            parameters = gemini_schema(tool.parameters)
            # Gemini rejects an OBJECT without properties: a tool without arguments omits it.
            if parameters.get("properties") or parameters.get("type") not in (None, "OBJECT"):
                declaration["parameters"] = parameters
            declarations.append(declaration)
        body["tools"] = [{"functionDeclarations": declarations}]
    if request.tool_choice is not None:
        mode = _TOOL_CHOICE_MODES.get(request.tool_choice)
        calling: dict[str, Any] = {"mode": mode or "ANY"}
        if mode is None:
            calling["allowedFunctionNames"] = [request.tool_choice]
        body["toolConfig"] = {"functionCallingConfig": calling}
    config = _generation_config(request)
    if config:
        body["generationConfig"] = config
    return _merged(body, request.extra)


def _generation_config(request: ModelRequest) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    if request.max_tokens is not None:
        config["maxOutputTokens"] = request.max_tokens
    if request.stop:
        config["stopSequences"] = list(request.stop)
    fmt = request.response_format
    if fmt is not None and fmt.type != "text":
        config["responseMimeType"] = "application/json"
        if fmt.type == "json_schema" and fmt.schema is not None:
            config["responseSchema"] = gemini_schema(fmt.schema)
    return config


def _merged(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    # Nested objects merge, so extra={"generationConfig": {"topK": 3}} keeps the temperature.
    for key, value in extra.items():
        current = base.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            base[key] = _merged(dict(current), value)
        else:
            base[key] = value
    return base


def _model_parts(message: Message, call_names: dict[str, str]) -> list[dict[str, Any]]:
    parts = [p for p in map(_content_part, message.content) if p is not None]
    signatures = message.metadata.get(THOUGHT_SIGNATURES_KEY) or {}
    for call in message.tool_calls:
        call_names[call.id] = call.name
        part: dict[str, Any] = {"functionCall": {"name": call.name, "args": call.arguments}}
        signature = signatures.get(call.id) if isinstance(signatures, Mapping) else None
        if isinstance(signature, str):
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _function_response(message: Message, call_names: Mapping[str, str]) -> dict[str, Any]:
    name = message.name or call_names.get(message.tool_call_id or "")
    if not name:
        raise InvalidInputError(
            f"the tool result for call {message.tool_call_id!r} names no tool, and no earlier"
            " assistant message made that call",
            hint="set the tool message's name, or keep the assistant turn with the call in the"
            " history",
        )
    key = "error" if message.metadata.get("is_error") else "result"
    return {"functionResponse": {"name": name, "response": {key: message.text}}}


def _content_part(part: TextPart | ImagePart | FilePart) -> dict[str, Any] | None:
    if isinstance(part, TextPart):
        # Gemini rejects empty text parts.
        return {"text": part.text} if part.text else None
    default = "image/jpeg" if isinstance(part, ImagePart) else None
    if part.data is not None:
        mime = part.media_type or _sniff(part.data) or default
        return {"inlineData": {"mimeType": _required_mime(mime, part), "data": part.data}}
    if part.url is None:
        raise InvalidInputError(
            f"an {part.type} part has neither url nor data", hint="give the part a url or data"
        )
    match = _DATA_URL.fullmatch(part.url)
    if match:
        mime = part.media_type or match["mime"] or _sniff(match["data"]) or default
        return {"inlineData": {"mimeType": _required_mime(mime, part), "data": match["data"]}}
    mime = part.media_type or mimetypes.guess_type(part.url)[0] or default
    return {"fileData": {"mimeType": _required_mime(mime, part), "fileUri": part.url}}


def _sniff(data: str) -> str | None:
    return next((mime for magic, mime in _BASE64_MAGIC.items() if data.startswith(magic)), None)


def _required_mime(mime: str | None, part: ImagePart | FilePart) -> str:
    if mime is None:
        raise InvalidInputError(
            f"Gemini needs the media type of the {part.type} part",
            hint="set media_type on the part (for example application/pdf)",
        )
    return mime


def gemini_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON schema converted to Gemini's OpenAPI subset.

    ``$ref`` is inlined from ``$defs``, ``["x", "null"]`` and ``anyOf [x, null]`` become
    ``nullable``, ``oneOf`` becomes ``anyOf``, ``const`` an enum, and keys Gemini does not know
    (``additionalProperties``, ``$schema``, ``exclusiveMinimum``...) are dropped. A recursive
    schema raises `InvalidInputError`: Gemini's schema cannot express it.
    """
    defs = schema.get("$defs") or schema.get("definitions") or {}
    return _schema(schema, defs, ())


def _schema(node: Any, defs: Mapping[str, Any], seen: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(node, Mapping):
        return {}  # `true` / `false` schemas: nothing Gemini can check
    ref = node.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        if name in seen or name not in defs:
            why = "refers to itself" if name in seen else "points to no definition"
            raise InvalidInputError(
                f"schema reference {ref!r} {why}",
                hint="Gemini schemas cannot be recursive; flatten the schema or bound its depth",
            )
        rest = {key: value for key, value in node.items() if key != "$ref"}
        return _schema({**defs[name], **rest}, defs, (*seen, name))
    out: dict[str, Any] = {}
    kind = node.get("type")
    if isinstance(kind, list):
        if "null" in kind:
            out["nullable"] = True
        kinds = [k for k in kind if k != "null"]
        if len(kinds) > 1:
            out["anyOf"] = [{"type": str(k).upper()} for k in kinds]
        kind = kinds[0] if len(kinds) == 1 else None
    if isinstance(kind, str) and kind != "null":
        out["type"] = kind.upper()
    for key, value in node.items():
        if key == "properties" and isinstance(value, Mapping):
            out[key] = {name: _schema(sub, defs, seen) for name, sub in value.items()}
        elif key == "items":
            out[key] = _schema(value[0] if isinstance(value, list) and value else value, defs, seen)
        elif key in ("anyOf", "oneOf") and isinstance(value, list):
            variants = [
                v for v in value if not (isinstance(v, Mapping) and v.get("type") == "null")
            ]
            if len(variants) < len(value):
                out["nullable"] = True
            if len(variants) == 1:
                out.update(_schema(variants[0], defs, seen))
            elif variants:
                out["anyOf"] = [_schema(v, defs, seen) for v in variants]
        elif key == "allOf" and isinstance(value, list):
            for sub in value:
                out.update(_schema(sub, defs, seen))
        elif key in ("enum", "const"):
            values = value if key == "enum" else [value]
            # Gemini enums are string enums only.
            out["enum"] = [v if isinstance(v, str) else orjson.dumps(v).decode() for v in values]
            out["type"] = "STRING"
        elif key == "format":
            if value not in _FORMATS.get(str(out.get("type")), set()):
                continue  # an unsupported format is an error on Gemini's side
            out[key] = value
        elif key in _SCHEMA_KEYS and key not in out and key != "type":
            out[key] = value
    return out


# --- response ---------------------------------------------------------------------------------


class _Answer:
    """Builds one `ModelResponse` from a whole answer or from the chunks of a streamed one."""

    def __init__(self, provider: str, model: str, started: float) -> None:
        self.provider = provider
        self.model = model
        self.started = started
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.calls: list[ToolCall] = []
        self.signatures: dict[str, str] = {}
        self.finish: str | None = None
        self.finish_message: str | None = None
        self.usage: Mapping[str, Any] | None = None
        self.response_id: str | None = None
        self.model_version: str | None = None
        self.ttft_ms: float | None = None

    def feed(self, chunk: Any) -> list[StreamDelta]:
        """Take one (partial) ``GenerateContentResponse``; return the deltas it carries."""
        if not isinstance(chunk, dict):
            raise self.bad(f"expected a JSON object, got {type(chunk).__name__}")
        if isinstance(chunk.get("error"), dict):
            raise gemini_error(500, {}, chunk, self.provider, self.model)
        self.response_id = chunk.get("responseId") or self.response_id
        self.model_version = chunk.get("modelVersion") or self.model_version
        if isinstance(chunk.get("usageMetadata"), dict):
            self.usage = chunk["usageMetadata"]
        feedback = chunk.get("promptFeedback")
        if isinstance(feedback, dict) and feedback.get("blockReason"):
            self.finish = "SAFETY"
            self.finish_message = f"prompt blocked: {feedback['blockReason']}"
        candidates = chunk.get("candidates", [])
        if not isinstance(candidates, list):
            raise self.bad("'candidates' is not a list")
        if not candidates:
            return []
        candidate = candidates[0]
        if not isinstance(candidate, dict):
            raise self.bad("a candidate is not an object")
        if candidate.get("finishReason"):
            self.finish = str(candidate["finishReason"])
            self.finish_message = candidate.get("finishMessage")
        content = candidate.get("content") or {}
        parts = content.get("parts", []) if isinstance(content, dict) else None
        if not isinstance(parts, list):
            raise self.bad("'content.parts' is not a list")
        deltas = [delta for part in parts if (delta := self._part(part)) is not None]
        if deltas and self.ttft_ms is None:
            self.ttft_ms = (time.perf_counter() - self.started) * 1000
        return deltas

    def _part(self, part: Any) -> StreamDelta | None:
        if not isinstance(part, dict):
            raise self.bad("a content part is not an object")
        call = part.get("functionCall")
        if isinstance(call, dict):
            return self._call(call, part.get("thoughtSignature"))
        text = part.get("text")
        if not isinstance(text, str) or not text:
            return None  # code execution, inline output data: nothing the common shape carries
        if part.get("thought"):
            self.reasoning.append(text)
            return StreamDelta(reasoning=text)
        self.text.append(text)
        return StreamDelta(text=text)

    def _call(self, call: dict[str, Any], signature: Any) -> StreamDelta:
        name = call.get("name")
        if not isinstance(name, str) or not name:
            raise self.bad("a functionCall has no name")
        args = call.get("args", {})
        if isinstance(args, str):
            try:
                args = orjson.loads(args) if args.strip() else {}
            except orjson.JSONDecodeError:
                args = None
        if not isinstance(args, dict):
            raise self.bad(
                f"the call to tool {name!r} has arguments that are not a JSON object",
                arguments=call.get("args"),
            )
        given = call.get("id")
        call_id = given if isinstance(given, str) and given else new_id("call_")
        tool_call = ToolCall(id=call_id, name=name, arguments=args)
        if isinstance(signature, str):
            self.signatures[call_id] = signature
        index = len(self.calls)
        self.calls.append(tool_call)
        arguments = orjson.dumps(args).decode()
        return StreamDelta(tool_call=ToolCallDelta(index, call_id, name, arguments))

    def response(self, *, streamed: bool) -> ModelResponse:
        """The complete answer; raises when a stream ended before its last chunk."""
        if self.finish is None and streamed:
            raise ProviderUnavailable(
                "the stream ended before the answer was complete (no finishReason)",
                provider=self.provider,
                model=self.model,
                hint="the connection was cut; retry the request",
            )
        if self.finish == "MALFORMED_FUNCTION_CALL":
            raise self.bad(
                "the model produced a malformed function call",
                finish_message=self.finish_message,
            )
        metadata: dict[str, Any] = {}
        if self.reasoning:
            metadata["reasoning"] = "".join(self.reasoning)
        if self.signatures:
            metadata[THOUGHT_SIGNATURES_KEY] = dict(self.signatures)
        if self.finish_message:
            metadata["finish_message"] = self.finish_message
        text = "".join(self.text)
        message = Message(
            role="assistant",
            content=[TextPart(text=text)] if text else [],
            tool_calls=self.calls,
            metadata=metadata,
        )
        finish: FinishReason | str | None
        if self.calls:
            finish = "tool_calls"
        elif self.finish is None:
            finish = None
        else:
            finish = _FINISH_REASONS.get(self.finish, self.finish.lower())
        return ModelResponse(
            message=message,
            model=self.model_version or self.model,
            provider=self.provider,
            finish_reason=finish,
            usage=_usage(self.usage or {}),
            latency_ms=(time.perf_counter() - self.started) * 1000,
            ttft_ms=self.ttft_ms,
            response_id=self.response_id,
        )

    def bad(self, message: str, **details: Any) -> ProviderBadResponse:
        """The error for an answer that is not Gemini's protocol."""
        return ProviderBadResponse(
            message,
            provider=self.provider,
            model=self.model,
            hint="retry; if it persists, check that base_url points to the Gemini API",
            **details,
        )


def _usage(meta: Mapping[str, Any]) -> Usage:
    def count(key: str) -> int:
        value = meta.get(key)
        return value if isinstance(value, int) else 0

    thoughts = count("thoughtsTokenCount")
    # Thinking is billed as output: output_tokens includes it, as OpenAI's completion_tokens do.
    return Usage(
        input_tokens=count("promptTokenCount") + count("toolUsePromptTokenCount"),
        output_tokens=count("candidatesTokenCount") + thoughts,
        cached_tokens=count("cachedContentTokenCount"),
        reasoning_tokens=thoughts,
    )


# --- errors -----------------------------------------------------------------------------------


def gemini_error(
    status: int, headers: Mapping[str, str], body: Any, provider: str, model: str
) -> ProviderError:
    """The `ProviderError` for an error answer (Google's ``{"error": {code, message, status}}``)."""
    error = body.get("error") if isinstance(body, dict) else None
    code, status_name, details = status, "", []
    if isinstance(error, dict):
        if isinstance(error.get("code"), int):
            code = error["code"]
        status_name = str(error.get("status") or "")
        text = str(error.get("message") or "no message")
        if isinstance(error.get("details"), list):
            details = error["details"]
    else:
        raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
        text = raw.strip()[:300] or "empty error body"
    message = f"{status_name} ({code}): {text}" if status_name else f"HTTP {code}: {text}"
    kw: dict[str, Any] = {"provider": provider, "model": model, "status": code}
    reasons = {d.get("reason") for d in details if isinstance(d, dict)}
    if code in (401, 403) or "API_KEY_INVALID" in reasons or status_name == "UNAUTHENTICATED":
        return ProviderAuthError(
            message,
            hint=f"check models.providers.{provider}.api_key (keys: https://aistudio.google.com/apikey)",
            **kw,
        )
    if code == 429 or status_name == "RESOURCE_EXHAUSTED":
        return ProviderRateLimited(
            message, provider=provider, model=model, retry_after=_retry_after(headers, details)
        )
    if code == 404:
        return ProviderRequestRejected(
            message,
            hint="check the model name; GET /v1beta/models lists the models the key can use",
            **kw,
        )
    if code in (408, 504) or status_name == "DEADLINE_EXCEEDED":
        return ProviderTimeout(message, hint="retry, or raise the request timeout", **kw)
    if code >= 500:
        return ProviderUnavailable(message, hint="retry later or fail over", **kw)
    return ProviderRequestRejected(
        message, hint="the request is invalid as sent; fix what the message names", **kw
    )


def _retry_after(headers: Mapping[str, str], details: list[Any]) -> float | None:
    from_header = retry_after_seconds(headers)
    if from_header is not None:
        return from_header
    for detail in details:  # google.rpc.RetryInfo in the error body
        delay = detail.get("retryDelay") if isinstance(detail, dict) else None
        match = _DURATION.fullmatch(delay) if isinstance(delay, str) else None
        if match:
            return float(match[1])
    return None


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw


# --- the provider -----------------------------------------------------------------------------


class GeminiProvider:
    """Gemini over its REST API (``generateContent`` / ``streamGenerateContent?alt=sse``).

    The transport is shared with other providers and closed by its owner, not by `aclose`.
    ``timeout`` is a `Timeouts`, or the seconds a whole call may take.
    """

    def __init__(
        self,
        name: str = "gemini",
        *,
        api_key: str | None,
        transport: HttpTransport,
        base_url: str = DEFAULT_BASE_URL,
        api_version: str = "v1beta",
        timeout: float | Timeouts = Timeouts(),
    ) -> None:
        """Talk to ``base_url`` (a proxy or the fake in tests) with ``api_key``."""
        self._name = name
        self._api_key = api_key
        self._transport = transport
        self._root = f"{base_url.rstrip('/')}/{api_version.strip('/')}"
        self._timeouts = Timeouts.of(timeout)

    @property
    def name(self) -> str:
        """The configured provider name."""
        return self._name

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """One ``generateContent`` call; the whole answer."""
        model, url, headers, body = self._prepare(request, "generateContent")
        answer = _Answer(self._name, model, time.perf_counter())
        try:
            reply = await self._transport.request(
                "POST",
                url,
                headers=headers,
                body=body,
                timeout=self._timeouts.within(request.timeout),
            )
        except TransportError as exc:
            raise self._transport_error(exc, model, url) from exc
        if reply.status >= 400:
            payload = _json(without_key(reply.body, self._api_key))
            raise gemini_error(reply.status, reply.headers, payload, self._name, model)
        payload = _json(reply.body)
        if isinstance(payload, bytes):
            raise answer.bad("the answer is not valid JSON", body=payload[:200].decode("latin-1"))
        answer.feed(payload)
        return answer.response(streamed=False)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamDelta | ModelResponse]:
        """``streamGenerateContent`` over SSE: deltas, then one final `ModelResponse`."""
        model, url, headers, body = self._prepare(request, "streamGenerateContent?alt=sse")
        answer = _Answer(self._name, model, time.perf_counter())
        parser = SseParser()
        try:
            async with self._transport.stream(
                "POST",
                url,
                headers=headers,
                body=body,
                timeout=self._timeouts.within(request.timeout),
            ) as reply:
                if reply.status >= 400:
                    raw = await reply.read()
                    payload = _json(without_key(raw, self._api_key))
                    raise gemini_error(reply.status, reply.headers, payload, self._name, model)
                async for chunk in reply.iter_bytes():
                    for event in parser.feed(chunk):
                        for delta in self._event(answer, event.data):
                            yield delta
                for event in parser.close():
                    for delta in self._event(answer, event.data):
                        yield delta
        except TransportError as exc:
            raise self._transport_error(exc, model, url) from exc
        except InvalidInputError as exc:  # the SSE parser gave up on the byte stream
            raise answer.bad(exc.message) from exc
        yield answer.response(streamed=True)

    def _event(self, answer: _Answer, data: str) -> list[StreamDelta]:
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise answer.bad("a stream event is not valid JSON", data=data[:200]) from None
        return answer.feed(chunk)

    async def list_models(self, *, limits: Timeouts | None = None) -> list[str]:
        """The model names the key may use (``GET models``, without the ``models/`` prefix),
        within ``limits`` (default: the provider's): a cheap call that shows the endpoint
        answers and takes the key. Raises the errors a model call would."""
        if not self._api_key:
            self._prepare(ModelRequest(model="", messages=[]), "")
        url = f"{self._root}/models"
        headers = {"x-goog-api-key": self._api_key or ""}
        try:
            reply = await self._transport.request(
                "GET", url, headers=headers, timeout=self._timeouts if limits is None else limits
            )
        except TransportError as exc:
            raise self._transport_error(exc, "", url) from exc
        if reply.status >= 400:
            payload = _json(without_key(reply.body, self._api_key))
            raise gemini_error(reply.status, reply.headers, payload, self._name, "")
        payload = _json(reply.body)
        listed = payload.get("models") if isinstance(payload, dict) else None
        if not isinstance(listed, list):
            raise _Answer(self._name, "", 0.0).bad("the model list has no models array")
        return [
            str(m["name"]).removeprefix("models/")
            for m in listed
            if isinstance(m, dict) and "name" in m
        ]

    async def aclose(self) -> None:
        """Nothing to release: the shared transport belongs to whoever built it."""

    def _prepare(
        self, request: ModelRequest, method: str
    ) -> tuple[str, str, dict[str, str], bytes]:
        model = request.model.removeprefix("models/")
        if not self._api_key:
            raise ProviderAuthError(
                "no API key configured",
                provider=self._name,
                model=model,
                hint=f"set models.providers.{self._name}.api_key"
                " (keys: https://aistudio.google.com/apikey)",
            )
        url = f"{self._root}/models/{quote(model, safe='')}:{method}"
        headers = {"content-type": "application/json", "x-goog-api-key": self._api_key}
        return model, url, headers, orjson.dumps(gemini_request_body(request))

    def _transport_error(self, exc: TransportError, model: str, url: str) -> ProviderError:
        # The URL names the model and the method, never the key (it travels in a header).
        return provider_failure(exc, provider=self._name, model=model, url=url)
