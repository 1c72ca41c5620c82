"""A fake OpenAI chat-completions server that speaks the real wire protocol, driven by a script.

Each request to ``POST /v1/chat/completions`` takes the next entry of the script; every request is
recorded so a test can assert what its client sent.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fakes.serving import RawResponse as _RawResponse
from fakes.serving import ScriptedFake, serve_app

__all__ = [
    "CutStream",
    "FakeOpenAI",
    "FakeToolCall",
    "FakeUsage",
    "Hang",
    "InvalidRequest",
    "MalformedBody",
    "RateLimited",
    "RecordedRequest",
    "ScriptEntry",
    "ServerError",
    "TextReply",
    "ToolCallsReply",
    "running_fake_openai",
]

MESSAGE_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
CONTENT_PART_TYPES = ("text", "image_url", "input_audio", "file", "refusal")


# --- the script -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeUsage:
    """Token counts reported for one scripted reply."""

    prompt_tokens: int = 12
    completion_tokens: int = 7
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    def to_wire(self) -> dict[str, Any]:
        """The ``usage`` object exactly as OpenAI sends it."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": self.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }


@dataclass(frozen=True)
class FakeToolCall:
    """One function call the fake model makes.

    ``arguments`` given as a mapping is JSON-encoded; given as a string it is sent verbatim, so a
    test can script arguments that are not valid JSON.
    """

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    def arguments_json(self) -> str:
        """The ``function.arguments`` string sent on the wire."""
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(dict(self.arguments), separators=(",", ":"))


@dataclass(frozen=True)
class TextReply:
    """An assistant text answer; streamed as ``chunks`` (default: word by word) when asked to."""

    text: str
    chunks: Sequence[str] | None = None
    finish_reason: str = "stop"
    usage: FakeUsage = field(default_factory=FakeUsage)

    def pieces(self) -> list[str]:
        """The content deltas of a streamed answer; they join back to ``text``."""
        if self.chunks is not None:
            return list(self.chunks)
        return re.findall(r"\s*\S+", self.text) or ([self.text] if self.text else [])


@dataclass(frozen=True)
class ToolCallsReply:
    """An assistant turn that calls one tool or several in parallel (optionally with text)."""

    calls: Sequence[FakeToolCall]
    text: str | None = None
    finish_reason: str = "tool_calls"
    usage: FakeUsage = field(default_factory=FakeUsage)


@dataclass(frozen=True)
class RateLimited:
    """HTTP 429 with ``Retry-After`` (seconds) and OpenAI's rate-limit error body."""

    retry_after: int = 1
    message: str = "Rate limit reached for requests. Please try again in 1s."


@dataclass(frozen=True)
class ServerError:
    """An HTTP 5xx with an OpenAI-style error body."""

    status: int = 500
    message: str = "The server had an error while processing your request. Sorry about that!"


@dataclass(frozen=True)
class InvalidRequest:
    """HTTP 400 ``invalid_request_error``, as OpenAI answers a request it rejects."""

    message: str = "Invalid request."
    param: str | None = None
    code: str | None = None


@dataclass(frozen=True)
class Hang:
    """Never answer: the request waits until its client disconnects or the server stops."""


@dataclass(frozen=True)
class MalformedBody:
    """A success status whose body claims to be JSON but is not."""

    body: bytes = b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": ['
    status: int = 200


@dataclass(frozen=True)
class CutStream:
    """Start answering ``reply``, then drop the connection mid-body.

    A streamed request gets the first ``after_events`` SSE events and no ``[DONE]``; a plain one
    gets the first half of its JSON body under a ``Content-Length`` announcing all of it.
    """

    reply: TextReply | ToolCallsReply
    after_events: int = 2


ScriptEntry = (
    TextReply
    | ToolCallsReply
    | RateLimited
    | ServerError
    | InvalidRequest
    | Hang
    | MalformedBody
    | CutStream
)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it: lower-cased headers and the JSON body (or None)."""

    method: str
    path: str
    headers: Mapping[str, str]
    raw_body: bytes
    body: Any


# --- wire shapes ------------------------------------------------------------------------------


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> Any:
    """OpenAI's error envelope."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _tool_call_id(call: FakeToolCall, index: int, completion_id: str) -> str:
    # Stable per completion so a test can predict it when it did not script one.
    return call.id or f"call_{completion_id[-16:]}{index:02d}"


def completion_body(
    reply: TextReply | ToolCallsReply, *, completion_id: str, model: str, created: int
) -> dict[str, Any]:
    """A non-streamed ``chat.completion`` object for ``reply``."""
    message: dict[str, Any] = {"role": "assistant", "refusal": None, "annotations": []}
    if isinstance(reply, TextReply):
        message["content"] = reply.text
    else:
        message["content"] = reply.text
        message["tool_calls"] = [
            {
                "id": _tool_call_id(call, index, completion_id),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json()},
            }
            for index, call in enumerate(reply.calls)
        ]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": reply.finish_reason,
            }
        ],
        "usage": reply.usage.to_wire(),
        "service_tier": "default",
        "system_fingerprint": "fp_fake0001",
    }


def stream_chunks(
    reply: TextReply | ToolCallsReply,
    *,
    completion_id: str,
    model: str,
    created: int,
    include_usage: bool,
) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects of a streamed answer, in order (without [DONE])."""

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": "fp_fake0001",
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if include_usage:
            # OpenAI puts "usage": null on every chunk but the last when usage is requested.
            body["usage"] = None
        return body

    chunks = [chunk({"role": "assistant", "content": "", "refusal": None})]
    text_pieces = reply.pieces() if isinstance(reply, TextReply) else _split(reply.text or "")
    chunks.extend(chunk({"content": piece}) for piece in text_pieces)
    if isinstance(reply, ToolCallsReply):
        for index, call in enumerate(reply.calls):
            head = {
                "index": index,
                "id": _tool_call_id(call, index, completion_id),
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            chunks.append(chunk({"tool_calls": [head]}))
            # Arguments arrive in fragments that only make JSON once joined, as they do for real.
            for fragment in _split(call.arguments_json(), parts=2):
                chunks.append(
                    chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})
                )
    chunks.append(chunk({}, reply.finish_reason))
    if include_usage:
        final = {key: value for key, value in chunks[0].items() if key != "choices"}
        final["choices"] = []
        final["usage"] = reply.usage.to_wire()
        chunks.append(final)
    return chunks


def _split(text: str, parts: int = 2) -> list[str]:
    if not text:
        return []
    size = max(1, -(-len(text) // parts))
    return [text[start : start + size] for start in range(0, len(text), size)]


def sse_event(payload: Mapping[str, Any] | str) -> bytes:
    """One server-sent event line as OpenAI frames it."""
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


# --- request validation -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Rejection:
    message: str
    param: str | None
    code: str | None


def validate_request(body: Any) -> _Rejection | None:
    """OpenAI's answer to a malformed chat-completions request, or None when it looks right."""
    if not isinstance(body, dict):
        return _Rejection("The request body must be a JSON object.", None, None)
    if not isinstance(body.get("model"), str) or not body["model"]:
        return _Rejection("you must provide a model parameter", "model", None)
    messages = body.get("messages")
    if messages is None:
        return _Rejection(
            "Missing required parameter: 'messages'.", "messages", "missing_required_parameter"
        )
    if not isinstance(messages, list) or not messages:
        return _Rejection(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            "messages",
            "empty_array",
        )
    for index, message in enumerate(messages):
        rejection = _validate_message(message, f"messages[{index}]")
        if rejection is not None:
            return rejection
    return None


def _validate_message(message: Any, where: str) -> _Rejection | None:
    if not isinstance(message, dict):
        return _Rejection(f"Invalid type for '{where}': expected an object.", where, "invalid_type")
    role = message.get("role")
    if role not in MESSAGE_ROLES:
        supported = ", ".join(f"'{name}'" for name in MESSAGE_ROLES)
        return _Rejection(
            f"Invalid value: '{role}'. Supported values are: {supported}.",
            f"{where}.role",
            "invalid_value",
        )
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        return _Rejection(
            f"Missing parameter 'tool_call_id': messages with role 'tool' must have a "
            f"'tool_call_id'. ({where})",
            f"{where}.tool_call_id",
            "missing_required_parameter",
        )
    content = message.get("content")
    if content is None:
        if role == "assistant":
            return None
        return _Rejection(
            f"Invalid value for '{where}.content': expected a string or array, got null.",
            f"{where}.content",
            "invalid_type",
        )
    if isinstance(content, str):
        return None
    if not isinstance(content, list):
        return _Rejection(
            f"Invalid type for '{where}.content': expected one of a string or array of objects.",
            f"{where}.content",
            "invalid_type",
        )
    for index, part in enumerate(content):
        rejection = _validate_part(part, f"{where}.content[{index}]")
        if rejection is not None:
            return rejection
    return None


def _validate_part(part: Any, where: str) -> _Rejection | None:
    part_type = part.get("type") if isinstance(part, dict) else None
    if part_type not in CONTENT_PART_TYPES:
        supported = ", ".join(f"'{name}'" for name in CONTENT_PART_TYPES)
        return _Rejection(
            f"Invalid value: '{part_type}'. Supported values are: {supported}.",
            f"{where}.type",
            "invalid_value",
        )
    assert isinstance(part, dict)
    if part_type == "text" and not isinstance(part.get("text"), str):
        return _Rejection(
            f"Missing required parameter: '{where}.text'.",
            f"{where}.text",
            "missing_required_parameter",
        )
    if part_type == "image_url":
        image = part.get("image_url")
        if not isinstance(image, dict) or not isinstance(image.get("url"), str):
            return _Rejection(
                f"Missing required parameter: '{where}.image_url.url'.",
                f"{where}.image_url.url",
                "missing_required_parameter",
            )
    return None


# --- the app ----------------------------------------------------------------------------------


class FakeOpenAI(ScriptedFake[ScriptEntry, RecordedRequest]):
    """The fake's state (script, recorded requests) and its Starlette app.

    All methods are safe to call from the test's thread while the app serves from another.
    """

    def __init__(
        self,
        *,
        models: Sequence[str] = ("gpt-4o-mini", "gpt-4o"),
        created: int | None = None,
    ) -> None:
        self.models = tuple(models)
        self.created = created if created is not None else int(time.time())
        super().__init__()
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat_completions, methods=["POST"]),
                Route("/v1/models", self._list_models, methods=["GET"]),
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
            headers={name.lower(): value for name, value in request.headers.items()},
            raw_body=raw,
            body=body,
        )
        return self._keep(recorded)

    async def _list_models(self, request: Request) -> Response:
        await self._record(request)
        data = [
            {"id": model, "object": "model", "created": self.created, "owned_by": "openai"}
            for model in self.models
        ]
        return _json({"object": "list", "data": data})

    async def _chat_completions(self, request: Request) -> Response:
        recorded = await self._record(request)
        if recorded.body is None:
            return _json(
                error_body(
                    "We could not parse the JSON body of your request. (HINT: This likely means"
                    " you aren't using your HTTP library correctly. The OpenAI API expects a JSON"
                    " payload, but what was sent was not valid JSON.)",
                    "invalid_request_error",
                ),
                status=400,
            )
        rejection = validate_request(recorded.body)
        if rejection is not None:
            return _json(
                error_body(
                    rejection.message, "invalid_request_error", rejection.param, rejection.code
                ),
                status=400,
            )
        entry = self._next_entry()
        if entry is None:
            return _json(
                error_body("fake OpenAI server: no scripted reply left", "server_error"),
                status=500,
            )
        return await self._answer(entry, request, recorded.body)

    async def _answer(self, entry: ScriptEntry, request: Request, body: dict[str, Any]) -> Response:
        if isinstance(entry, RateLimited):
            return _json(
                error_body(entry.message, "requests", None, "rate_limit_exceeded"),
                status=429,
                headers={
                    "retry-after": str(entry.retry_after),
                    "x-ratelimit-limit-requests": "500",
                    "x-ratelimit-remaining-requests": "0",
                    "x-ratelimit-reset-requests": f"{entry.retry_after}s",
                },
            )
        if isinstance(entry, ServerError):
            return _json(error_body(entry.message, "server_error"), status=entry.status)
        if isinstance(entry, InvalidRequest):
            error = error_body(entry.message, "invalid_request_error", entry.param, entry.code)
            return _json(error, status=400)
        if isinstance(entry, Hang):
            await self._hang(request)
            return _json(error_body("fake OpenAI server is stopping", "server_error"), status=503)
        if isinstance(entry, MalformedBody):
            return Response(
                entry.body,
                status_code=entry.status,
                media_type="application/json",
                headers=_request_headers(),
            )
        reply = entry.reply if isinstance(entry, CutStream) else entry
        cut_after = entry.after_events if isinstance(entry, CutStream) else None
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        model = str(body["model"])
        if body.get("stream") is True:
            options = body.get("stream_options") or {}
            events = [
                sse_event(chunk)
                for chunk in stream_chunks(
                    reply,
                    completion_id=completion_id,
                    model=model,
                    created=self.created,
                    include_usage=bool(options.get("include_usage")),
                )
            ] + [sse_event("[DONE]")]
            if cut_after is not None:
                events = events[:cut_after]
            return _RawResponse(
                events,
                status_code=200,
                headers={"content-type": "text/event-stream; charset=utf-8"} | _request_headers(),
                cut=cut_after is not None,
            )
        payload = json.dumps(
            completion_body(reply, completion_id=completion_id, model=model, created=self.created)
        ).encode()
        if cut_after is None:
            return _json_bytes(payload)
        return _RawResponse(
            [payload[: len(payload) // 2]],
            status_code=200,
            headers={"content-type": "application/json", "content-length": str(len(payload))}
            | _request_headers(),
            cut=True,
        )

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        message = f"Invalid URL ({request.method} {request.url.path})"
        if status == 405:
            message = f"Method {request.method} not allowed for {request.url.path}"
        return _json(error_body(message, "invalid_request_error"), status=status)


def _request_headers() -> dict[str, str]:
    return {"x-request-id": f"req_{uuid.uuid4().hex}", "openai-processing-ms": "1"}


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, headers=_request_headers() | dict(headers or {}))


def _json_bytes(payload: bytes) -> Response:
    return Response(
        payload, status_code=200, media_type="application/json", headers=_request_headers()
    )


# --- running it -------------------------------------------------------------------------------


@contextlib.contextmanager
def running_fake_openai(
    fake: FakeOpenAI | None = None, *, start_timeout: float = 10.0
) -> Iterator[FakeOpenAI]:
    """Serve ``fake`` on 127.0.0.1 on a free port in a background thread; stop it on exit.

    While it runs, ``fake.base_url`` is the URL to give a client (it ends in ``/v1``).
    """
    fake = fake or FakeOpenAI()
    with serve_app(fake.app, name="fake-openai", start_timeout=start_timeout) as port:
        fake.base_url = f"http://127.0.0.1:{port}/v1"
        try:
            yield fake
        finally:
            fake.base_url = ""
            fake.release_hangs()
