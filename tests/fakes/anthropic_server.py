"""A fake Anthropic Messages server that speaks the real wire protocol, driven by a script.

Each request to ``POST /v1/messages`` takes the next entry of the script; every request is
recorded so a test can assert what its client sent.
"""

from __future__ import annotations

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

from fakes.serving import RawResponse as _RawResponse
from fakes.serving import ScriptedFake, serve_app

__all__ = [
    "CutStream",
    "FakeAnthropic",
    "FakeToolUse",
    "FakeUsage",
    "Hang",
    "InvalidRequest",
    "MalformedBody",
    "Overloaded",
    "RateLimited",
    "RecordedRequest",
    "ScriptEntry",
    "ServerError",
    "StreamError",
    "TextReply",
    "ToolUseReply",
    "running_fake_anthropic",
]

CONTENT_BLOCK_TYPES = ("text", "image", "document", "tool_use", "tool_result", "thinking")
IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


# --- the script -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeUsage:
    """Token counts reported for one scripted reply (Anthropic counts cache reads and writes
    apart from ``input_tokens``)."""

    input_tokens: int = 12
    output_tokens: int = 7
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    thinking_tokens: int | None = None

    def to_wire(self) -> dict[str, Any]:
        """The ``usage`` object exactly as Anthropic sends it on a message."""
        usage: dict[str, Any] = {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache_creation_input_tokens,
                "ephemeral_1h_input_tokens": 0,
            },
            "output_tokens": self.output_tokens,
            "service_tier": "standard",
        }
        if self.thinking_tokens is not None:
            usage["output_tokens_details"] = {"thinking_tokens": self.thinking_tokens}
        return usage


@dataclass(frozen=True)
class FakeToolUse:
    """One tool the fake model calls.

    ``input`` given as a mapping is the tool input; given as a string it is streamed verbatim as
    ``partial_json`` (and cannot be sent unstreamed), so a test can script input that is not JSON.
    """

    name: str
    input: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    def input_json(self) -> str:
        """The input as the JSON text streamed in ``input_json_delta`` events."""
        if isinstance(self.input, str):
            return self.input
        return json.dumps(dict(self.input), separators=(",", ":"))


@dataclass(frozen=True)
class TextReply:
    """An assistant text answer; streamed as ``chunks`` (default: word by word) when asked to.

    ``thinking`` adds a thinking block before the text.
    """

    text: str
    chunks: Sequence[str] | None = None
    stop_reason: str = "end_turn"
    usage: FakeUsage = field(default_factory=FakeUsage)
    thinking: str | None = None

    def pieces(self) -> list[str]:
        """The text deltas of a streamed answer; they join back to ``text``."""
        if self.chunks is not None:
            return list(self.chunks)
        return _words(self.text)


@dataclass(frozen=True)
class ToolUseReply:
    """An assistant turn that calls one tool or several in parallel (optionally after text)."""

    calls: Sequence[FakeToolUse]
    text: str | None = None
    stop_reason: str = "tool_use"
    usage: FakeUsage = field(default_factory=FakeUsage)
    thinking: str | None = None


@dataclass(frozen=True)
class RateLimited:
    """HTTP 429 ``rate_limit_error`` with ``retry-after`` (seconds)."""

    retry_after: int = 1
    message: str = "Number of request tokens has exceeded your per-minute rate limit"


@dataclass(frozen=True)
class Overloaded:
    """HTTP 529 ``overloaded_error``: Anthropic's own status for a busy API."""

    message: str = "Overloaded"


@dataclass(frozen=True)
class ServerError:
    """An HTTP 5xx ``api_error``."""

    status: int = 500
    message: str = "Internal server error"


@dataclass(frozen=True)
class InvalidRequest:
    """A 4xx the way Anthropic rejects a request (400 ``invalid_request_error`` by default)."""

    message: str = "Invalid request."
    status: int = 400
    type: str = "invalid_request_error"


@dataclass(frozen=True)
class Hang:
    """Never answer: the request waits until its client disconnects or the server stops."""


@dataclass(frozen=True)
class MalformedBody:
    """A success status whose body claims to be JSON (or, streamed, SSE) but is broken."""

    body: bytes = b'{"id": "msg_broken", "type": "message", "content": ['
    stream_body: bytes = b"event: message_start\ndata: {not json\n\n"


@dataclass(frozen=True)
class CutStream:
    """Start answering ``reply``, then drop the connection mid-body.

    A streamed request gets the first ``after_events`` SSE events and no ``message_stop``; a
    plain one gets half of its JSON body under a ``Content-Length`` announcing all of it.
    """

    reply: TextReply | ToolUseReply
    after_events: int = 3


@dataclass(frozen=True)
class StreamError:
    """Start streaming ``reply``, then send an ``error`` event (as Anthropic does when it gets
    overloaded mid-answer) and end the stream."""

    reply: TextReply | ToolUseReply
    after_events: int = 3
    type: str = "overloaded_error"
    message: str = "Overloaded"


ScriptEntry = (
    TextReply
    | ToolUseReply
    | RateLimited
    | Overloaded
    | ServerError
    | InvalidRequest
    | Hang
    | MalformedBody
    | CutStream
    | StreamError
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


def error_body(type_: str, message: str) -> dict[str, Any]:
    """Anthropic's error envelope (also the data of a stream's ``error`` event)."""
    return {
        "type": "error",
        "error": {"type": type_, "message": message},
        "request_id": f"req_{uuid.uuid4().hex[:24]}",
    }


def _tool_use_id(call: FakeToolUse, index: int, message_id: str) -> str:
    # Stable per message so a test can predict it when it did not script one.
    return call.id or f"toolu_{message_id[-16:]}{index:02d}"


def content_blocks(reply: TextReply | ToolUseReply, message_id: str) -> list[dict[str, Any]]:
    """The ``content`` of a non-streamed message for ``reply``."""
    blocks: list[dict[str, Any]] = []
    if reply.thinking is not None:
        blocks.append({"type": "thinking", "thinking": reply.thinking, "signature": "c2lnbmVk"})
    if reply.text:
        blocks.append({"type": "text", "text": reply.text})
    if isinstance(reply, ToolUseReply):
        for index, call in enumerate(reply.calls):
            if isinstance(call.input, str):
                raise ValueError("a string tool input can only be streamed")
            blocks.append(
                {
                    "type": "tool_use",
                    "id": _tool_use_id(call, index, message_id),
                    "name": call.name,
                    "input": dict(call.input),
                }
            )
    return blocks


def message_body(reply: TextReply | ToolUseReply, *, message_id: str, model: str) -> dict[str, Any]:
    """A non-streamed ``message`` object for ``reply``."""
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content_blocks(reply, message_id),
        "stop_reason": reply.stop_reason,
        "stop_sequence": None,
        "usage": reply.usage.to_wire(),
    }


def stream_events(
    reply: TextReply | ToolUseReply, *, message_id: str, model: str
) -> list[tuple[str, dict[str, Any]]]:
    """The (event name, data) pairs of a streamed answer, in order, ``message_stop`` last."""
    start_usage = reply.usage.to_wire() | {"output_tokens": 1}
    start_usage.pop("output_tokens_details", None)
    events: list[tuple[str, dict[str, Any]]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": start_usage,
                },
            },
        )
    ]
    index = 0

    def block(start: dict[str, Any], deltas: list[dict[str, Any]]) -> None:
        nonlocal index
        events.append(
            ("content_block_start", {"type": "content_block_start", "index": index, **start})
        )
        if index == 0:
            events.append(("ping", {"type": "ping"}))  # Anthropic sends one early on
        events.extend(
            ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
            for d in deltas
        )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1

    if reply.thinking is not None:
        block(
            {"content_block": {"type": "thinking", "thinking": "", "signature": ""}},
            [{"type": "thinking_delta", "thinking": piece} for piece in _words(reply.thinking)]
            + [{"type": "signature_delta", "signature": "c2lnbmVk"}],
        )
    pieces = reply.pieces() if isinstance(reply, TextReply) else _words(reply.text or "")
    if pieces:
        block(
            {"content_block": {"type": "text", "text": ""}},
            [{"type": "text_delta", "text": piece} for piece in pieces],
        )
    if isinstance(reply, ToolUseReply):
        for number, call in enumerate(reply.calls):
            head = {"type": "tool_use", "id": _tool_use_id(call, number, message_id)}
            block(
                {"content_block": head | {"name": call.name, "input": {}}},
                # Input arrives in fragments that only make JSON once joined, as it does for real.
                [
                    {"type": "input_json_delta", "partial_json": fragment}
                    for fragment in ["", *_split(call.input_json(), parts=2)]
                ],
            )
    delta_usage: dict[str, Any] = {"output_tokens": reply.usage.output_tokens}
    if reply.usage.thinking_tokens is not None:
        delta_usage["output_tokens_details"] = {"thinking_tokens": reply.usage.thinking_tokens}
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
                "usage": delta_usage,
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def _words(text: str) -> list[str]:
    return re.findall(r"\s*\S+", text) or ([text] if text else [])


def _split(text: str, parts: int = 2) -> list[str]:
    if not text:
        return []
    size = max(1, -(-len(text) // parts))
    return [text[start : start + size] for start in range(0, len(text), size)]


def sse_event(event: str, data: Mapping[str, Any]) -> bytes:
    """One server-sent event as Anthropic frames it (named event, one data line)."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


# --- request validation -----------------------------------------------------------------------


def validate_request(headers: Mapping[str, str], body: Any) -> tuple[int, str, str] | None:
    """(status, error type, message) Anthropic would answer a malformed request with, or None."""
    # Anthropic takes the key as x-api-key or, as its newer SDKs send it, as a bearer token.
    bearer = headers.get("authorization", "").removeprefix("Bearer").strip()
    if not headers.get("x-api-key") and not bearer:
        return 401, "authentication_error", "x-api-key header is required"
    if not headers.get("anthropic-version"):
        return 400, "invalid_request_error", "anthropic-version: header is required"
    if not isinstance(body, dict):
        return 400, "invalid_request_error", "The request body is not valid JSON."
    if not isinstance(body.get("model"), str) or not body["model"]:
        return 400, "invalid_request_error", "model: Field required"
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return 400, "invalid_request_error", "max_tokens: Field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return 400, "invalid_request_error", "messages: at least one message is required"
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        return 400, "invalid_request_error", "system: Input should be a valid string or list"
    previous_tool_uses: set[str] = set()
    for index, message in enumerate(messages):
        problem = _validate_message(message, index, previous_tool_uses)
        if problem is not None:
            return 400, "invalid_request_error", problem
        content = message["content"]
        blocks = content if isinstance(content, list) else []
        previous_tool_uses = {
            b["id"] for b in blocks if b.get("type") == "tool_use" and message["role"] != "user"
        }
    if previous_tool_uses:
        return (
            400,
            "invalid_request_error",
            "messages: `tool_use` ids were found without `tool_result` blocks immediately after",
        )
    for index, tool in enumerate(body.get("tools") or []):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            return 400, "invalid_request_error", f"tools.{index}.name: Field required"
        if not isinstance(tool.get("input_schema"), dict):
            return 400, "invalid_request_error", f"tools.{index}.input_schema: Field required"
    return None


def _validate_message(message: Any, index: int, open_tool_uses: set[str]) -> str | None:
    where = f"messages.{index}"
    if not isinstance(message, dict):
        return f"{where}: Input should be a valid dictionary"
    role = message.get("role")
    if role not in ("user", "assistant"):
        return f"{where}.role: Input should be 'user' or 'assistant'"
    content = message.get("content")
    if isinstance(content, str):
        blocks: list[Any] = []
    elif isinstance(content, list) and content:
        blocks = content
    else:
        return f"{where}: all messages must have non-empty content"
    results: set[str] = set()
    for number, block in enumerate(blocks):
        problem = _validate_block(block, f"{where}.content.{number}", role)
        if problem is not None:
            return problem
        if block["type"] == "tool_result":
            results.add(block["tool_use_id"])
    if open_tool_uses and open_tool_uses - results:
        return (
            f"{where}: `tool_use` ids were found without `tool_result` blocks immediately after:"
            f" {', '.join(sorted(open_tool_uses - results))}"
        )
    if results - open_tool_uses:
        return f"{where}: unexpected `tool_use_id` found in `tool_result` blocks"
    return None


def _validate_block(block: Any, where: str, role: str) -> str | None:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind not in CONTENT_BLOCK_TYPES:
        return f"{where}.type: Input tag {kind!r} does not match any of the expected tags"
    assert isinstance(block, dict)
    if kind == "text" and (not isinstance(block.get("text"), str) or not block["text"]):
        return f"{where}: text content blocks must be non-empty"
    if kind == "image":
        source = block.get("source")
        source_type = source.get("type") if isinstance(source, dict) else None
        if source_type == "base64":
            assert isinstance(source, dict)
            if source.get("media_type") not in IMAGE_MEDIA_TYPES:
                return f"{where}.source.base64.media_type: Input should be an image media type"
            if not isinstance(source.get("data"), str):
                return f"{where}.source.base64.data: Field required"
        elif source_type == "url":
            assert isinstance(source, dict)
            if not isinstance(source.get("url"), str):
                return f"{where}.source.url.url: Field required"
        else:
            return f"{where}.source: Input tag {source_type!r} does not match 'base64', 'url'"
    if kind == "tool_use":
        if role != "assistant":
            return f"{where}: tool_use blocks are only allowed in assistant messages"
        if not isinstance(block.get("id"), str) or not isinstance(block.get("input"), dict):
            return f"{where}: tool_use needs id, name and an object input"
    if kind == "tool_result":
        if role != "user":
            return f"{where}: tool_result blocks are only allowed in user messages"
        if not isinstance(block.get("tool_use_id"), str):
            return f"{where}.tool_use_id: Field required"
    return None


# --- the app ----------------------------------------------------------------------------------


class FakeAnthropic(ScriptedFake[ScriptEntry, RecordedRequest]):
    """The fake's state (script, recorded requests) and its Starlette app.

    All methods are safe to call from the test's thread while the app serves from another.
    """

    def __init__(self) -> None:
        super().__init__()
        self.app = Starlette(
            routes=[Route("/v1/messages", self._messages, methods=["POST"])],
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

    async def _messages(self, request: Request) -> Response:
        recorded = await self._record(request)
        problem = validate_request(recorded.headers, recorded.body)
        if problem is not None:
            status, type_, message = problem
            return _json(error_body(type_, message), status=status)
        entry = self._next_entry()
        if entry is None:
            return _json(error_body("api_error", "fake Anthropic: no scripted reply left"), 500)
        return await self._answer(entry, request, recorded.body)

    async def _answer(self, entry: ScriptEntry, request: Request, body: dict[str, Any]) -> Response:
        if isinstance(entry, RateLimited):
            return _json(
                error_body("rate_limit_error", entry.message),
                status=429,
                headers={
                    "retry-after": str(entry.retry_after),
                    "anthropic-ratelimit-requests-limit": "50",
                    "anthropic-ratelimit-requests-remaining": "0",
                },
            )
        if isinstance(entry, Overloaded):
            return _json(error_body("overloaded_error", entry.message), status=529)
        if isinstance(entry, ServerError):
            return _json(error_body("api_error", entry.message), status=entry.status)
        if isinstance(entry, InvalidRequest):
            return _json(error_body(entry.type, entry.message), status=entry.status)
        if isinstance(entry, Hang):
            await self._hang(request)
            return _json(error_body("overloaded_error", "fake Anthropic is stopping"), 529)
        streamed = body.get("stream") is True
        if isinstance(entry, MalformedBody):
            if streamed:
                return _RawResponse(
                    [entry.stream_body], status_code=200, headers=_sse_headers(), cut=False
                )
            return Response(
                entry.body, status_code=200, media_type="application/json", headers=_ids()
            )
        reply = entry.reply if isinstance(entry, CutStream | StreamError) else entry
        message_id = f"msg_{uuid.uuid4().hex[:24]}"
        model = str(body["model"])
        if streamed:
            events = stream_events(reply, message_id=message_id, model=model)
            parts = [sse_event(name, data) for name, data in events]
            if isinstance(entry, CutStream):
                parts = parts[: entry.after_events]
            elif isinstance(entry, StreamError):
                error = sse_event("error", error_body(entry.type, entry.message))
                parts = [*parts[: entry.after_events], error]
            return _RawResponse(
                parts,
                status_code=200,
                headers=_sse_headers(),
                cut=isinstance(entry, CutStream),
            )
        payload = json.dumps(message_body(reply, message_id=message_id, model=model)).encode()
        if not isinstance(entry, CutStream):
            return Response(payload, status_code=200, media_type="application/json", headers=_ids())
        return _RawResponse(
            [payload[: len(payload) // 2]],
            status_code=200,
            headers={"content-type": "application/json", "content-length": str(len(payload))}
            | _ids(),
            cut=True,
        )

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        kind = "not_found_error" if status == 404 else "invalid_request_error"
        return _json(error_body(kind, f"{request.method} {request.url.path}"), status=status)


def _ids() -> dict[str, str]:
    return {"request-id": f"req_{uuid.uuid4().hex[:24]}"}


def _sse_headers() -> dict[str, str]:
    return {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
    } | _ids()


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, headers=_ids() | dict(headers or {}))


# --- running it -------------------------------------------------------------------------------


@contextlib.contextmanager
def running_fake_anthropic(
    fake: FakeAnthropic | None = None, *, start_timeout: float = 10.0
) -> Iterator[FakeAnthropic]:
    """Serve ``fake`` on 127.0.0.1 on a free port in a background thread; stop it on exit.

    While it runs, ``fake.base_url`` is the URL to give a client (the API root, no ``/v1``, as
    the Anthropic SDK expects).
    """
    fake = fake or FakeAnthropic()
    with serve_app(fake.app, name="fake-anthropic", start_timeout=start_timeout) as port:
        fake.base_url = f"http://127.0.0.1:{port}"
        try:
            yield fake
        finally:
            fake.base_url = ""
            fake.release_hangs()
