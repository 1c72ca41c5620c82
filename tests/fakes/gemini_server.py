"""A fake Google Gemini API server that speaks the real ``generateContent`` wire protocol.

Each ``POST /{version}/models/{model}:generateContent`` (or ``:streamGenerateContent?alt=sse``)
takes the next entry of the script; every request is recorded so a test can assert what its client
sent. Requests are checked like the real API checks them: an API key, a known model, and a body
whose field names exist in Google's schema (an unknown field is a 400, as it is for real).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from fakes.serving import ScriptedFake, StreamCut, serve_app

__all__ = [
    "ApiError",
    "BlockedPrompt",
    "CutStream",
    "FakeFunctionCall",
    "FakeGemini",
    "FakeUsage",
    "FunctionCallsReply",
    "Hang",
    "MalformedBody",
    "RecordedRequest",
    "ScriptEntry",
    "TextReply",
    "invalid_argument",
    "rate_limited",
    "running_fake_gemini",
    "server_error",
]

# Field names of Google's JSON schema for the request (camelCase; snake_case is accepted too).
REQUEST_FIELDS = frozenset(
    {
        "contents",
        "tools",
        "toolConfig",
        "safetySettings",
        "systemInstruction",
        "generationConfig",
        "cachedContent",
        "labels",
        "model",
    }
)
GENERATION_CONFIG_FIELDS = frozenset(
    {
        "stopSequences",
        "responseMimeType",
        "responseSchema",
        "responseJsonSchema",
        "responseModalities",
        "candidateCount",
        "maxOutputTokens",
        "temperature",
        "topP",
        "topK",
        "seed",
        "presencePenalty",
        "frequencyPenalty",
        "responseLogprobs",
        "logprobs",
        "enableEnhancedCivicAnswers",
        "speechConfig",
        "thinkingConfig",
        "imageConfig",
        "mediaResolution",
    }
)
PART_FIELDS = frozenset(
    {
        "text",
        "inlineData",
        "fileData",
        "functionCall",
        "functionResponse",
        "executableCode",
        "codeExecutionResult",
        "thought",
        "thoughtSignature",
        "videoMetadata",
        "partMetadata",
    }
)
SCHEMA_FIELDS = frozenset(
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
SCHEMA_TYPES = frozenset({"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"})
DEFAULT_MODELS = ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.0-flash")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


# --- the script -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeUsage:
    """Token counts reported for one scripted reply."""

    prompt_tokens: int = 12
    candidates_tokens: int = 7
    cached_tokens: int = 0
    thoughts_tokens: int = 0

    def to_wire(self) -> dict[str, Any]:
        """The ``usageMetadata`` object as Gemini sends it (zero counts left out, as it does)."""
        total = self.prompt_tokens + self.candidates_tokens + self.thoughts_tokens
        wire: dict[str, Any] = {
            "promptTokenCount": self.prompt_tokens,
            "candidatesTokenCount": self.candidates_tokens,
            "totalTokenCount": total,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": self.prompt_tokens}],
        }
        if self.cached_tokens:
            wire["cachedContentTokenCount"] = self.cached_tokens
            wire["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": self.cached_tokens}]
        if self.thoughts_tokens:
            wire["thoughtsTokenCount"] = self.thoughts_tokens
        return wire


@dataclass(frozen=True)
class FakeFunctionCall:
    """One function call the fake model makes.

    ``args`` given as a mapping is sent as the JSON object Gemini sends; given as a string it is
    sent verbatim as a JSON string, so a test can script arguments that are not an object.
    ``thought_signature`` is put on the part, as Gemini's thinking models do.
    """

    name: str
    args: Mapping[str, Any] | str = field(default_factory=dict)
    thought_signature: str | None = None

    def to_part(self) -> dict[str, Any]:
        """The ``functionCall`` part on the wire."""
        args = self.args if isinstance(self.args, str) else dict(self.args)
        part: dict[str, Any] = {"functionCall": {"name": self.name, "args": args}}
        if self.thought_signature is not None:
            part["thoughtSignature"] = self.thought_signature
        return part


@dataclass(frozen=True)
class TextReply:
    """A text answer, streamed as ``chunks`` (default: word by word); ``thoughts`` come first as
    a ``thought`` part, as thinking models send their summaries."""

    text: str
    chunks: Sequence[str] | None = None
    finish_reason: str = "STOP"
    usage: FakeUsage = field(default_factory=FakeUsage)
    thoughts: str | None = None
    finish_message: str | None = None

    def pieces(self) -> list[str]:
        """The text of each streamed chunk; they join back to ``text``."""
        if self.chunks is not None:
            return list(self.chunks)
        return re.findall(r"\s*\S+", self.text) or ([self.text] if self.text else [])


@dataclass(frozen=True)
class FunctionCallsReply:
    """A turn that calls one function or several in parallel (optionally after some text)."""

    calls: Sequence[FakeFunctionCall]
    text: str | None = None
    finish_reason: str = "STOP"
    usage: FakeUsage = field(default_factory=FakeUsage)


@dataclass(frozen=True)
class ApiError:
    """Any Google API error: ``{"error": {"code", "message", "status", "details"}}``."""

    code: int
    status: str
    message: str
    details: Sequence[Mapping[str, Any]] = ()
    headers: Mapping[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """The error envelope as Google sends it."""
        error: dict[str, Any] = {"code": self.code, "message": self.message, "status": self.status}
        if self.details:
            error["details"] = [dict(detail) for detail in self.details]
        return {"error": error}


def rate_limited(retry_after: int | None = None, retry_delay: str | None = "7s") -> ApiError:
    """429 ``RESOURCE_EXHAUSTED``, with a ``RetryInfo`` detail and/or a ``Retry-After`` header."""
    details: list[dict[str, Any]] = [
        {
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [{"description": "Learn more", "url": "https://ai.google.dev/gemini-api"}],
        }
    ]
    if retry_delay is not None:
        details.append(
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}
        )
    return ApiError(
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details.",
        details,
        {"retry-after": str(retry_after)} if retry_after is not None else {},
    )


def server_error(code: int = 500) -> ApiError:
    """A 5xx: 500 ``INTERNAL``, 503 ``UNAVAILABLE`` (overloaded) or 504 ``DEADLINE_EXCEEDED``."""
    status, message = {
        503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
        504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
    }.get(code, ("INTERNAL", "An internal error has occurred. Please retry or report it."))
    return ApiError(code, status, message)


def invalid_argument(message: str = "Request contains an invalid argument.") -> ApiError:
    """400 ``INVALID_ARGUMENT``."""
    return ApiError(400, "INVALID_ARGUMENT", message)


@dataclass(frozen=True)
class BlockedPrompt:
    """The prompt itself was blocked: no candidates, only ``promptFeedback.blockReason``."""

    reason: str = "SAFETY"


@dataclass(frozen=True)
class Hang:
    """Never answer: the request waits until its client disconnects or the server stops."""


@dataclass(frozen=True)
class MalformedBody:
    """A success status whose body claims to be JSON but is not (in a stream: one bad event)."""

    body: bytes = b'{"candidates": [{"content": {"parts": [{"text": "Hel'


@dataclass(frozen=True)
class CutStream:
    """Start answering ``reply``, then drop the connection mid-body.

    A streamed request gets the first ``after_events`` SSE events; a plain one gets the first
    half of its JSON body under a ``Content-Length`` announcing all of it.
    """

    reply: TextReply | FunctionCallsReply
    after_events: int = 2


ScriptEntry = (
    TextReply | FunctionCallsReply | ApiError | BlockedPrompt | Hang | MalformedBody | CutStream
)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as received: method, path, query, lower-cased headers, JSON body (or None)."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    raw_body: bytes
    body: Any

    @property
    def model(self) -> str:
        """The model named in the path."""
        return self.path.rsplit("/models/", 1)[-1].split(":", 1)[0]


# --- wire shapes ------------------------------------------------------------------------------


def _candidate(
    parts: list[dict[str, Any]], finish: str | None, finish_message: str | None = None
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
        if finish_message is not None:
            candidate["finishMessage"] = finish_message
    return candidate


def _reply_parts(reply: TextReply | FunctionCallsReply) -> list[dict[str, Any]]:
    if isinstance(reply, TextReply):
        parts: list[dict[str, Any]] = []
        if reply.thoughts:
            parts.append({"text": reply.thoughts, "thought": True})
        return [*parts, {"text": reply.text}]
    head = [{"text": reply.text}] if reply.text else []
    return head + [call.to_part() for call in reply.calls]


def response_body(
    reply: TextReply | FunctionCallsReply, *, model: str, response_id: str
) -> dict[str, Any]:
    """A non-streamed ``GenerateContentResponse`` for ``reply``."""
    message = reply.finish_message if isinstance(reply, TextReply) else None
    return {
        "candidates": [_candidate(_reply_parts(reply), reply.finish_reason, message)],
        "usageMetadata": reply.usage.to_wire(),
        "modelVersion": model,
        "responseId": response_id,
    }


def stream_chunks(
    reply: TextReply | FunctionCallsReply, *, model: str, response_id: str
) -> list[dict[str, Any]]:
    """The partial ``GenerateContentResponse`` objects of a streamed answer, in order.

    Like Gemini, every chunk carries the usage so far and the last one the finish reason.
    """
    parts: list[list[dict[str, Any]]] = []
    if isinstance(reply, TextReply):
        if reply.thoughts:
            parts.append([{"text": reply.thoughts, "thought": True}])
        parts.extend([{"text": piece}] for piece in reply.pieces())
    else:
        if reply.text:
            parts.extend([{"text": piece}] for piece in re.findall(r"\s*\S+", reply.text))
        # Gemini sends the calls of one turn whole, together, in one chunk.
        parts.append([call.to_part() for call in reply.calls])
    if not parts:
        parts.append([{"text": ""}])
    running = {"promptTokenCount": reply.usage.prompt_tokens, "totalTokenCount": 0}
    chunks = []
    for index, chunk_parts in enumerate(parts):
        last = index == len(parts) - 1
        message = reply.finish_message if isinstance(reply, TextReply) else None
        chunks.append(
            {
                "candidates": [
                    _candidate(chunk_parts, reply.finish_reason if last else None, message)
                ],
                "usageMetadata": reply.usage.to_wire() if last else running,
                "modelVersion": model,
                "responseId": response_id,
            }
        )
    return chunks


def sse_event(payload: Mapping[str, Any] | bytes) -> bytes:
    """One server-sent event, framed with CRLF line ends as Google frames them."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return b"data: " + data + b"\r\n\r\n"


# --- request validation -----------------------------------------------------------------------


def validate_request(body: Any) -> str | None:
    """Gemini's 400 message for a malformed ``generateContent`` body, or None when it is valid."""
    if not isinstance(body, dict):
        return "Invalid JSON payload received. Expected an object."
    for name in body:
        if _camel(name) not in REQUEST_FIELDS:
            return f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.'
    body = {_camel(key): value for key, value in body.items()}
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified\n"
    for index, content in enumerate(contents):
        problem = _validate_content(content, f"contents[{index}]", roles=("user", "model"))
        if problem:
            return problem
    system = body.get("systemInstruction")
    if system is not None:
        problem = _validate_content(system, "system_instruction", roles=(None, "user", "system"))
        if problem:
            return problem
    for index, tool in enumerate(body.get("tools") or []):
        tool = {_camel(key): value for key, value in tool.items()}
        for number, declaration in enumerate(tool.get("functionDeclarations") or []):
            where = f"tools[{index}].function_declarations[{number}]"
            if not isinstance(declaration, dict) or not declaration.get("name"):
                return f"* GenerateContentRequest.{where}.name: Name cannot be empty.\n"
            if "parameters" in declaration:
                problem = _validate_schema(declaration["parameters"], f"{where}.parameters")
                if problem:
                    return problem
    config = body.get("generationConfig") or {}
    for name in config:
        if _camel(name) not in GENERATION_CONFIG_FIELDS:
            return (
                f'Invalid JSON payload received. Unknown name "{name}" at'
                " 'generation_config': Cannot find field."
            )
    schema = {_camel(key): value for key, value in config.items()}.get("responseSchema")
    if schema is not None:
        return _validate_schema(schema, "generation_config.response_schema")
    return None


def _validate_content(content: Any, where: str, roles: Sequence[str | None]) -> str | None:
    if not isinstance(content, dict):
        return f"Invalid value at '{where}': expected an object."
    role = content.get("role")
    if role not in roles:
        return f"Please use a valid role: user, model. (got {role!r} at {where})"
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        return f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.\n"
    for index, part in enumerate(parts):
        problem = _validate_part(part, f"{where}.parts[{index}]")
        if problem:
            return problem
    return None


def _validate_part(part: Any, where: str) -> str | None:
    if not isinstance(part, dict):
        return f"Invalid value at '{where}': expected an object."
    part = {_camel(key): value for key, value in part.items()}
    for name in part:
        if name not in PART_FIELDS:
            return f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}'."
    data_fields = [name for name in part if name not in ("thought", "thoughtSignature")]
    if len(data_fields) != 1:
        return (
            f"* GenerateContentRequest.{where}.data: required oneof field 'data' must have one"
            " initialized field\n"
        )
    if "text" in part and (not isinstance(part["text"], str) or not part["text"]):
        return "Unable to submit request because it has an empty text parameter."
    inline = part.get("inlineData")
    if inline is not None:
        inline = {_camel(key): value for key, value in inline.items()}
        if not inline.get("mimeType"):
            return f"* GenerateContentRequest.{where}.inline_data.mime_type: required\n"
        try:
            base64.b64decode(inline.get("data", ""), validate=True)
        except (binascii.Error, ValueError):
            return (
                f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), Base64 decoding failed"
            )
    file_data = part.get("fileData")
    if file_data is not None:
        file_data = {_camel(key): value for key, value in file_data.items()}
        if not file_data.get("fileUri"):
            return f"* GenerateContentRequest.{where}.file_data.file_uri: required\n"
    response = part.get("functionResponse")
    if response is not None and (
        not response.get("name") or not isinstance(response.get("response"), dict)
    ):
        return f"* GenerateContentRequest.{where}.function_response: name and response required\n"
    call = part.get("functionCall")
    if call is not None and (not call.get("name") or not isinstance(call.get("args", {}), dict)):
        return f"* GenerateContentRequest.{where}.function_call: name and object args required\n"
    return None


def _validate_schema(schema: Any, where: str) -> str | None:
    if not isinstance(schema, dict):
        return f"Invalid value at '{where}': expected an object."
    for name, value in schema.items():
        if _camel(name) not in SCHEMA_FIELDS:
            return (
                f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}':"
                " Cannot find field."
            )
        if name == "type" and str(value).upper() not in SCHEMA_TYPES:
            return (
                f"Invalid value at '{where}.type'"
                f' (type.googleapis.com/google.ai.generativelanguage.v1beta.Type), "{value}"'
            )
    if str(schema.get("type", "")).upper() == "OBJECT" and schema.get("properties") == {}:
        return f"* GenerateContentRequest.{where}.properties: should be non-empty for OBJECT type\n"
    for name, sub in (schema.get("properties") or {}).items():
        problem = _validate_schema(sub, f"{where}.properties[{name}].value")
        if problem:
            return problem
    if "items" in schema:
        return _validate_schema(schema["items"], f"{where}.items")
    for index, sub in enumerate(schema.get("anyOf") or []):
        problem = _validate_schema(sub, f"{where}.any_of[{index}]")
        if problem:
            return problem
    return None


# --- the app ----------------------------------------------------------------------------------


class _RawResponse(Response):
    """Sends ``parts`` as separate body frames, and drops the connection instead of ending."""

    def __init__(
        self, parts: Sequence[bytes], *, status_code: int, headers: Mapping[str, str], cut: bool
    ) -> None:
        super().__init__(status_code=status_code)
        self.raw_headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in headers.items()
        ]
        self._parts = list(parts)
        self._cut = cut

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        for part in self._parts:
            await send({"type": "http.response.body", "body": part, "more_body": True})
        if self._cut:
            # uvicorn closes the transport when the app fails after the response started.
            raise StreamCut("connection cut by the script")
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class FakeGemini(ScriptedFake[ScriptEntry, RecordedRequest]):
    """The fake's state (script, recorded requests) and its Starlette app.

    ``api_keys``: the keys it accepts (None: any non-empty key). All methods are safe to call
    from the test's thread while the app serves from another.
    """

    def __init__(
        self,
        *,
        models: Sequence[str] = DEFAULT_MODELS,
        api_keys: Sequence[str] | None = None,
    ) -> None:
        self.models = tuple(models)
        self.api_keys = None if api_keys is None else frozenset(api_keys)
        super().__init__()
        self.app = Starlette(
            routes=[
                Route("/{version}/models/{target}", self._models_call, methods=["POST"]),
                Route("/{version}/models", self._list_models, methods=["GET"]),
            ],
            exception_handlers={HTTPException: self._http_error},
        )

    # -- handlers

    async def _record(self, request: Request) -> RecordedRequest:
        raw = await request.body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        recorded = RecordedRequest(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers={name.lower(): value for name, value in request.headers.items()},
            raw_body=raw,
            body=body,
        )
        return self._keep(recorded)

    def _auth_error(self, recorded: RecordedRequest) -> ApiError | None:
        key = recorded.headers.get("x-goog-api-key") or recorded.query.get("key")
        if not key:
            return ApiError(
                403,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established"
                " identity). Please use API Key or other form of API consumer identity to call"
                " this API.",
            )
        if self.api_keys is not None and key not in self.api_keys:
            return ApiError(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"},
                    }
                ],
            )
        return None

    async def _list_models(self, request: Request) -> Response:
        recorded = await self._record(request)
        auth = self._auth_error(recorded)
        if auth is not None:
            return _error(auth)
        return _json(
            {
                "models": [
                    {
                        "name": f"models/{model}",
                        "displayName": model,
                        "supportedGenerationMethods": ["generateContent", "countTokens"],
                    }
                    for model in self.models
                ]
            }
        )

    async def _models_call(self, request: Request) -> Response:
        recorded = await self._record(request)
        model, _, method = request.path_params["target"].partition(":")
        version = request.path_params["version"]
        if method not in ("generateContent", "streamGenerateContent"):
            return _error(ApiError(404, "NOT_FOUND", f"Method not found: {method!r}."))
        auth = self._auth_error(recorded)
        if auth is not None:
            return _error(auth)
        if model not in self.models:
            return _error(
                ApiError(
                    404,
                    "NOT_FOUND",
                    f"models/{model} is not found for API version {version}, or is not supported"
                    f" for {method}. Call ListModels to see the list of available models and"
                    " their supported methods.",
                )
            )
        if recorded.body is None:
            return _error(
                invalid_argument(
                    f"Invalid JSON payload received. Unexpected token.\n{recorded.raw_body[:40]!r}"
                )
            )
        problem = validate_request(recorded.body)
        if problem is not None:
            return _error(invalid_argument(problem))
        entry = self._next_entry()
        if entry is None:
            return _error(ApiError(500, "INTERNAL", "fake Gemini server: no scripted reply left"))
        streaming = method == "streamGenerateContent"
        return await self._answer(entry, request, model, streaming, recorded.query.get("alt"))

    async def _answer(
        self, entry: ScriptEntry, request: Request, model: str, streaming: bool, alt: str | None
    ) -> Response:
        if isinstance(entry, ApiError):
            return _error(entry)
        if isinstance(entry, Hang):
            await self._hang(request)
            return _error(ApiError(503, "UNAVAILABLE", "fake Gemini server is stopping"))
        response_id = uuid.uuid4().hex[:22]
        if isinstance(entry, BlockedPrompt):
            blocked = {
                "promptFeedback": {"blockReason": entry.reason},
                "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5},
                "modelVersion": model,
                "responseId": response_id,
            }
            if streaming and alt == "sse":
                return _RawResponse(
                    [sse_event(blocked)],
                    status_code=200,
                    headers={"content-type": "text/event-stream"},
                    cut=False,
                )
            return _json(blocked)
        if isinstance(entry, MalformedBody):
            if streaming and alt == "sse":
                return _RawResponse(
                    [sse_event(entry.body)],
                    status_code=200,
                    headers={"content-type": "text/event-stream"},
                    cut=False,
                )
            return Response(entry.body, status_code=200, media_type="application/json")
        reply = entry.reply if isinstance(entry, CutStream) else entry
        cut_after = entry.after_events if isinstance(entry, CutStream) else None
        if streaming:
            chunks = stream_chunks(reply, model=model, response_id=response_id)
            if alt == "sse":
                events = [sse_event(chunk) for chunk in chunks]
                content_type = "text/event-stream"
            else:
                # Without alt=sse Google streams one JSON array, element by element.
                text = json.dumps(chunks, indent=2)
                events = [text.encode()]
                content_type = "application/json; charset=UTF-8"
            if cut_after is not None:
                events = events[:cut_after]
            return _RawResponse(
                events,
                status_code=200,
                headers={"content-type": content_type},
                cut=cut_after is not None,
            )
        payload = json.dumps(response_body(reply, model=model, response_id=response_id)).encode()
        if cut_after is None:
            return Response(payload, status_code=200, media_type="application/json")
        return _RawResponse(
            [payload[: len(payload) // 2]],
            status_code=200,
            headers={"content-type": "application/json", "content-length": str(len(payload))},
            cut=True,
        )

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return _error(
            ApiError(status, "NOT_FOUND", f"The requested URL {request.url.path} was not found.")
        )


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def _error(error: ApiError) -> Response:
    return _json(error.body(), status=error.code, headers=error.headers)


# --- running it -------------------------------------------------------------------------------


@contextlib.contextmanager
def running_fake_gemini(
    fake: FakeGemini | None = None, *, start_timeout: float = 10.0
) -> Iterator[FakeGemini]:
    """Serve ``fake`` on 127.0.0.1 on a free port in a background thread; stop it on exit.

    While it runs, ``fake.base_url`` is the URL to give a client (no version path).
    """
    fake = fake or FakeGemini()
    with serve_app(fake.app, name="fake-gemini", start_timeout=start_timeout) as port:
        fake.base_url = f"http://127.0.0.1:{port}"
        try:
            yield fake
        finally:
            fake.base_url = ""
            fake.release_hangs()
