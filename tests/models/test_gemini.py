"""The Gemini provider against the fake Gemini server: the contract scenarios, the request on the
wire, schema conversion, and every failure mapped to a typed error."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fakes.gemini_fixtures import gemini_fake, gemini_fake_server
from fakes.gemini_server import (
    ApiError,
    BlockedPrompt,
    CutStream,
    FakeFunctionCall,
    FakeGemini,
    FakeUsage,
    FunctionCallsReply,
    Hang,
    MalformedBody,
    TextReply,
    invalid_argument,
    rate_limited,
    running_fake_gemini,
    server_error,
)
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
from promptline.core.messages import FilePart, ImagePart, Message, TextPart, ToolCall, Usage
from promptline.models.gemini import (
    THOUGHT_SIGNATURES_KEY,
    GeminiProvider,
    gemini_error,
    gemini_request_body,
    gemini_schema,
)
from promptline.models.http import SharedHttpTransport
from promptline.models.types import (
    ModelRequest,
    ModelResponse,
    ResponseFormat,
    StreamDelta,
    ToolSpec,
)

__all__ = ["gemini_fake", "gemini_fake_server"]  # fixtures used by name below

MODEL = "gemini-2.5-flash"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather for a city.",
    parameters={
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
)


@pytest.fixture
async def transport() -> AsyncIterator[SharedHttpTransport]:
    shared = SharedHttpTransport()
    yield shared
    await shared.aclose()


@pytest.fixture
def provider(gemini_fake: FakeGemini, transport: SharedHttpTransport) -> GeminiProvider:
    return GeminiProvider(api_key="test-key", transport=transport, base_url=gemini_fake.base_url)


def ask(text: str = "Hi", **kwargs: Any) -> ModelRequest:
    return ModelRequest(model=MODEL, messages=[Message(role="user", content=text)], **kwargs)


async def collect(
    provider: GeminiProvider, request: ModelRequest
) -> tuple[list[StreamDelta], ModelResponse]:
    deltas: list[StreamDelta] = []
    final: list[ModelResponse] = []
    async for item in provider.stream(request):
        if isinstance(item, ModelResponse):
            final.append(item)
        else:
            assert not final, "a delta arrived after the final response"
            deltas.append(item)
    assert len(final) == 1
    return deltas, final[0]


# --- contract scenarios -----------------------------------------------------------------------


async def test_gemini_plain_text(provider: GeminiProvider, gemini_fake: FakeGemini) -> None:
    gemini_fake.script(TextReply("Hello there!"))
    response = await provider.complete(
        ModelRequest(
            model=MODEL,
            messages=[
                Message(role="system", content="Be brief."),
                Message(role="user", content="Say hello."),
            ],
        )
    )

    assert response.message.role == "assistant"
    assert response.message.text == "Hello there!"
    assert (response.provider, response.model, response.finish_reason) == (
        "gemini",
        MODEL,
        "stop",
    )
    assert response.response_id
    assert response.latency_ms > 0
    sent = gemini_fake.requests[0]
    assert sent.path == f"/v1beta/models/{MODEL}:generateContent"
    assert sent.headers["x-goog-api-key"] == "test-key"
    assert "key" not in sent.query  # the key never travels in the URL
    assert sent.body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert sent.body["contents"] == [{"role": "user", "parts": [{"text": "Say hello."}]}]


async def test_gemini_streamed_text(provider: GeminiProvider, gemini_fake: FakeGemini) -> None:
    gemini_fake.script(TextReply("Streaming is fun", thoughts="Let me think."))
    deltas, final = await collect(provider, ask())

    assert [d.text for d in deltas if d.text] == ["Streaming", " is", " fun"]
    assert "".join(d.text for d in deltas) == final.message.text == "Streaming is fun"
    assert [d.reasoning for d in deltas if d.reasoning] == ["Let me think."]
    assert final.message.metadata["reasoning"] == "Let me think."
    assert final.finish_reason == "stop"
    assert final.usage == Usage(input_tokens=12, output_tokens=7)
    assert final.ttft_ms is not None
    assert 0 <= final.ttft_ms <= final.latency_ms
    sent = gemini_fake.requests[0]
    assert sent.path == f"/v1beta/models/{MODEL}:streamGenerateContent"
    assert sent.query == {"alt": "sse"}


async def test_gemini_tool_call(provider: GeminiProvider, gemini_fake: FakeGemini) -> None:
    gemini_fake.script(FunctionCallsReply([FakeFunctionCall("get_weather", {"city": "Paris"})]))
    response = await provider.complete(ask("Weather in Paris?", tools=[WEATHER]))

    assert response.finish_reason == "tool_calls"
    [call] = response.message.tool_calls
    assert (call.name, call.arguments) == ("get_weather", {"city": "Paris"})
    assert call.id.startswith("call_")
    declaration = gemini_fake.requests[0].body["tools"][0]["functionDeclarations"][0]
    assert declaration == {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "OBJECT",
            "properties": {"city": {"type": "STRING"}},
            "required": ["city"],
        },
    }


async def test_gemini_parallel_tool_calls(
    provider: GeminiProvider, gemini_fake: FakeGemini
) -> None:
    calls = [
        FakeFunctionCall("get_weather", {"city": "Paris"}, thought_signature="c2lnMQ=="),
        FakeFunctionCall("get_weather", {"city": "Rome"}),
    ]
    gemini_fake.script(FunctionCallsReply(calls, text="Checking both."), TextReply("Sunny both."))
    deltas, first = await collect(provider, ask("Paris and Rome?", tools=[WEATHER]))

    fragments = [d.tool_call for d in deltas if d.tool_call is not None]
    assert [(f.index, f.name, f.arguments) for f in fragments] == [
        (0, "get_weather", '{"city":"Paris"}'),
        (1, "get_weather", '{"city":"Rome"}'),
    ]
    paris, rome = first.message.tool_calls
    assert [f.id for f in fragments] == [paris.id, rome.id]
    assert paris.id != rome.id
    assert (paris.arguments, rome.arguments) == ({"city": "Paris"}, {"city": "Rome"})
    assert first.message.text == "Checking both."
    assert first.message.metadata[THOUGHT_SIGNATURES_KEY] == {paris.id: "c2lnMQ=="}

    # The results go back as one user turn of functionResponse parts, the signature with its call.
    history = [
        Message(role="user", content="Paris and Rome?"),
        first.message,
        Message(role="tool", tool_call_id=paris.id, content="sun"),
        Message(role="tool", tool_call_id=rome.id, content="rain", name="get_weather"),
    ]
    second = await provider.complete(ModelRequest(model=MODEL, messages=history, tools=[WEATHER]))
    assert second.message.text == "Sunny both."
    contents = gemini_fake.requests[1].body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[1]["parts"] == [
        {"text": "Checking both."},
        {
            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
            "thoughtSignature": "c2lnMQ==",
        },
        {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
    ]
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"result": "sun"}}},
        {"functionResponse": {"name": "get_weather", "response": {"result": "rain"}}},
    ]


async def test_gemini_image_part(provider: GeminiProvider, gemini_fake: FakeGemini) -> None:
    gemini_fake.script(TextReply("A tiny image."))
    message = Message(
        role="user",
        content=[
            TextPart(text="What are these?"),
            ImagePart(data=PNG),  # media type sniffed from the bytes
            ImagePart(url=f"data:image/png;base64,{PNG}"),
            ImagePart(url="https://example.com/cat.webp"),
            FilePart(url="gs://bucket/report.pdf", media_type="application/pdf"),
        ],
    )
    response = await provider.complete(ModelRequest(model=MODEL, messages=[message]))

    assert response.message.text == "A tiny image."
    parts = gemini_fake.requests[0].body["contents"][0]["parts"]
    assert parts == [
        {"text": "What are these?"},
        {"inlineData": {"mimeType": "image/png", "data": PNG}},
        {"inlineData": {"mimeType": "image/png", "data": PNG}},
        {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp"}},
        {"fileData": {"mimeType": "application/pdf", "fileUri": "gs://bucket/report.pdf"}},
    ]


async def test_gemini_usage_figures(provider: GeminiProvider, gemini_fake: FakeGemini) -> None:
    usage = FakeUsage(prompt_tokens=100, candidates_tokens=20, cached_tokens=64, thoughts_tokens=30)
    gemini_fake.script(TextReply("ok", usage=usage), TextReply("ok", usage=usage))
    expected = Usage(input_tokens=100, output_tokens=50, cached_tokens=64, reasoning_tokens=30)

    assert (await provider.complete(ask())).usage == expected
    _, streamed = await collect(provider, ask())
    assert streamed.usage == expected


# --- errors -----------------------------------------------------------------------------------


async def test_gemini_rate_limited_with_retry_after(
    provider: GeminiProvider, gemini_fake: FakeGemini
) -> None:
    gemini_fake.script(
        rate_limited(retry_after=3), rate_limited(retry_after=None, retry_delay="7s")
    )
    with pytest.raises(ProviderRateLimited) as header:
        await provider.complete(ask())
    assert header.value.retry_after == 3.0
    assert header.value.retryable
    assert (header.value.provider, header.value.model, header.value.status) == (
        "gemini",
        MODEL,
        429,
    )
    assert "RESOURCE_EXHAUSTED" in str(header.value)
    with pytest.raises(ProviderRateLimited) as detail:
        await collect(provider, ask())
    assert detail.value.retry_after == 7.0  # from the RetryInfo detail


@pytest.mark.parametrize(
    ("code", "kind"),
    [(500, ProviderUnavailable), (503, ProviderUnavailable), (504, ProviderTimeout)],
)
async def test_gemini_server_error_is_retryable(
    provider: GeminiProvider, gemini_fake: FakeGemini, code: int, kind: type[ProviderError]
) -> None:
    gemini_fake.script(server_error(code), server_error(code))
    for attempt in (provider.complete(ask()), collect(provider, ask())):
        with pytest.raises(kind) as caught:
            await attempt
        assert caught.value.retryable
        assert caught.value.status == code
        assert "gemini/" + MODEL in str(caught.value)


async def test_gemini_bad_request_is_not_retryable(
    provider: GeminiProvider, gemini_fake: FakeGemini
) -> None:
    gemini_fake.script(invalid_argument("temperature must be <= 2"))
    with pytest.raises(ProviderRequestRejected) as caught:
        await provider.complete(ask())
    assert not caught.value.retryable
    assert "INVALID_ARGUMENT (400): temperature must be <= 2" in str(caught.value)
    assert caught.value.hint


async def test_gemini_unknown_model_is_rejected_with_a_hint(provider: GeminiProvider) -> None:
    with pytest.raises(ProviderRequestRejected) as caught:
        await provider.complete(ModelRequest(model="gemini-0-nope", messages=ask().messages))
    assert caught.value.status == 404
    assert "gemini/gemini-0-nope" in str(caught.value)
    assert "models/gemini-0-nope is not found" in str(caught.value)
    assert "model name" in (caught.value.hint or "")


async def test_gemini_hang_times_out(provider: GeminiProvider, gemini_fake: FakeGemini) -> None:
    gemini_fake.script(Hang(), Hang())
    with pytest.raises(ProviderTimeout) as plain:
        await provider.complete(ask(timeout=0.3))
    assert plain.value.retryable
    with pytest.raises(ProviderTimeout):
        await collect(provider, ask(timeout=0.3))


async def test_gemini_malformed_json(provider: GeminiProvider, gemini_fake: FakeGemini) -> None:
    gemini_fake.script(MalformedBody(), MalformedBody())
    with pytest.raises(ProviderBadResponse) as plain:
        await provider.complete(ask())
    assert "not valid JSON" in str(plain.value)
    assert plain.value.model == MODEL
    with pytest.raises(ProviderBadResponse) as streamed:
        await collect(provider, ask())
    assert "stream event is not valid JSON" in str(streamed.value)


async def test_gemini_cut_stream(provider: GeminiProvider, gemini_fake: FakeGemini) -> None:
    gemini_fake.script(CutStream(TextReply("one two three four")), CutStream(TextReply("a b c")))
    seen: list[str] = []

    async def drain() -> None:
        async for item in provider.stream(ask()):
            if isinstance(item, StreamDelta):
                seen.append(item.text)

    with pytest.raises(ProviderUnavailable) as streamed:
        await drain()
    assert seen == ["one", " two"]
    assert streamed.value.retryable
    with pytest.raises(ProviderUnavailable):
        await provider.complete(ask())


async def test_gemini_invalid_tool_arguments_json(
    provider: GeminiProvider, gemini_fake: FakeGemini
) -> None:
    gemini_fake.script(
        FunctionCallsReply([FakeFunctionCall("get_weather", '{"city": "Par')]),
        TextReply("", finish_reason="MALFORMED_FUNCTION_CALL", finish_message="bad call"),
    )
    with pytest.raises(ProviderBadResponse) as string_args:
        await provider.complete(ask(tools=[WEATHER]))
    assert "'get_weather'" in str(string_args.value)
    assert "not a JSON object" in str(string_args.value)
    with pytest.raises(ProviderBadResponse) as malformed:
        await collect(provider, ask(tools=[WEATHER]))
    assert malformed.value.details["finish_message"] == "bad call"


async def test_gemini_missing_api_key(
    transport: SharedHttpTransport, gemini_fake: FakeGemini
) -> None:
    provider = GeminiProvider(api_key=None, transport=transport, base_url=gemini_fake.base_url)
    with pytest.raises(ProviderAuthError) as caught:
        await provider.complete(ask())
    assert "gemini/" + MODEL in str(caught.value)
    assert "models.providers.gemini.api_key" in (caught.value.hint or "")
    assert gemini_fake.requests == []  # nothing was sent without a key


async def test_gemini_rejected_key_is_an_auth_error(transport: SharedHttpTransport) -> None:
    fake = FakeGemini(api_keys=["good"])
    with running_fake_gemini(fake):
        provider = GeminiProvider(api_key="bad", transport=transport, base_url=fake.base_url)
        # Google answers a wrong key with 400 INVALID_ARGUMENT + reason API_KEY_INVALID.
        with pytest.raises(ProviderAuthError) as caught:
            await provider.complete(ask())
        assert caught.value.status == 400
        assert not caught.value.retryable


# --- request mapping --------------------------------------------------------------------------


async def test_gemini_generation_config_tool_choice_and_extra_reach_the_wire(
    provider: GeminiProvider, gemini_fake: FakeGemini
) -> None:
    gemini_fake.script(TextReply('{"city": "Paris"}'))
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    await provider.complete(
        ask(
            tools=[WEATHER],
            tool_choice="get_weather",
            temperature=0.2,
            top_p=0.9,
            max_tokens=256,
            stop=["END"],
            response_format=ResponseFormat(schema=schema),
            extra={"generationConfig": {"topK": 4}, "safetySettings": []},
        )
    )
    body = gemini_fake.requests[0].body
    assert body["generationConfig"] == {
        "temperature": 0.2,
        "topP": 0.9,
        "maxOutputTokens": 256,
        "stopSequences": ["END"],
        "responseMimeType": "application/json",
        "responseSchema": {
            "type": "OBJECT",
            "properties": {"city": {"type": "STRING"}},
            "required": ["city"],
        },
        "topK": 4,
    }
    assert body["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }
    assert body["safetySettings"] == []


@pytest.mark.parametrize(
    ("choice", "mode"), [("auto", "AUTO"), ("none", "NONE"), ("required", "ANY")]
)
def test_tool_choice_maps_to_function_calling_mode(choice: str, mode: str) -> None:
    body = gemini_request_body(ask(tools=[WEATHER], tool_choice=choice))
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": mode}}


def test_tool_without_arguments_omits_parameters() -> None:
    body = gemini_request_body(ask(tools=[ToolSpec(name="now")]))
    assert body["tools"] == [{"functionDeclarations": [{"name": "now"}]}]


def test_schema_conversion_inlines_refs_and_maps_nullable_and_const() -> None:
    schema = {
        "$defs": {"Unit": {"enum": ["c", "f"], "type": "string"}},
        "type": "object",
        "properties": {
            "unit": {"$ref": "#/$defs/Unit"},
            "days": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}]},
            "note": {"type": ["string", "null"], "format": "email", "maxLength": 9},
            "kind": {"const": 3},
            "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        },
    }
    assert gemini_schema(schema) == {
        "type": "OBJECT",
        "properties": {
            "unit": {"type": "STRING", "enum": ["c", "f"]},
            "days": {"nullable": True, "type": "INTEGER", "minimum": 1},
            "note": {"nullable": True, "type": "STRING", "maxLength": 9},
            "kind": {"enum": ["3"], "type": "STRING"},
            "tags": {"type": "ARRAY", "items": {"type": "STRING"}},
        },
    }


def test_recursive_schema_is_invalid_input() -> None:
    schema = {
        "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
        "$ref": "#/$defs/Node",
    }
    with pytest.raises(InvalidInputError, match="refers to itself"):
        gemini_schema(schema)


def test_tool_result_without_a_known_call_is_invalid_input() -> None:
    request = ModelRequest(
        model=MODEL,
        messages=[Message(role="user", content="x"), Message(role="tool", tool_call_id="c1")],
    )
    with pytest.raises(InvalidInputError, match="names no tool"):
        gemini_request_body(request)


def test_file_without_media_type_is_invalid_input() -> None:
    message = Message(role="user", content=[FilePart(url="https://example.com/blob")])
    with pytest.raises(InvalidInputError) as caught:
        gemini_request_body(ModelRequest(model=MODEL, messages=[message]))
    assert "media_type" in (caught.value.hint or "")


def test_only_system_messages_is_invalid_input() -> None:
    with pytest.raises(InvalidInputError, match="at least one user"):
        gemini_request_body(
            ModelRequest(model=MODEL, messages=[Message(role="system", content="Be brief.")])
        )


def test_failed_tool_result_is_sent_as_error() -> None:
    messages = [
        Message(role="user", content="x"),
        Message(role="assistant", tool_calls=[ToolCall(id="c1", name="get_weather")]),
        Message(role="tool", tool_call_id="c1", content="boom", metadata={"is_error": True}),
    ]
    body = gemini_request_body(ModelRequest(model=MODEL, messages=messages))
    assert body["contents"][2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"error": "boom"}}}
    ]


def test_error_body_that_is_not_json_still_names_provider_and_model() -> None:
    error = gemini_error(502, {}, b"<html>Bad Gateway</html>", "gemini", MODEL)
    assert isinstance(error, ProviderUnavailable)
    assert str(error).startswith(f"gemini/{MODEL}: HTTP 502: <html>Bad Gateway</html>")


async def test_gemini_blocked_prompt_is_content_filter(
    provider: GeminiProvider, gemini_fake: FakeGemini
) -> None:
    gemini_fake.script(BlockedPrompt("SAFETY"), BlockedPrompt("PROHIBITED_CONTENT"))
    plain = await provider.complete(ask())
    _, streamed = await collect(provider, ask())
    for response in (plain, streamed):
        assert response.finish_reason == "content_filter"
        assert response.message.text == ""
        assert response.usage.input_tokens == 5
    assert streamed.message.metadata["finish_message"] == "prompt blocked: PROHIBITED_CONTENT"


async def test_gemini_error_quoting_the_key_has_it_masked(
    provider: GeminiProvider, gemini_fake: FakeGemini
) -> None:
    refused = ApiError(400, "INVALID_ARGUMENT", "API key not valid: test-key")
    gemini_fake.script(refused, refused)
    with pytest.raises(ProviderError) as plain:
        await provider.complete(ask())
    with pytest.raises(ProviderError) as streamed:
        await collect(provider, ask())

    for error in (plain.value, streamed.value):
        assert "API key not valid: ***" in error.message
        assert "test-key" not in str(error)


async def test_gemini_error_event_inside_stream_is_mapped(
    provider: GeminiProvider, gemini_fake: FakeGemini
) -> None:
    gemini_fake.script(ApiError(503, "UNAVAILABLE", "The model is overloaded."))
    with pytest.raises(ProviderUnavailable, match="overloaded"):
        await collect(provider, ask())


def test_schema_with_several_types_becomes_any_of() -> None:
    assert gemini_schema({"type": ["string", "integer", "null"]}) == {
        "nullable": True,
        "anyOf": [{"type": "STRING"}, {"type": "INTEGER"}],
    }


@pytest.mark.parametrize(
    ("headers", "details", "expected"),
    [
        ({"retry-after": "2.5"}, [], 2.5),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, [], 0.0),  # a date in the past
        ({"retry-after": "soon"}, [{"retryDelay": "4s"}], 4.0),
        ({}, [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.5s"}], 1.5),
        ({}, [], None),
    ],
)
def test_retry_after_from_header_or_retry_info(
    headers: dict[str, str], details: list[Any], expected: float | None
) -> None:
    body = {"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}}
    body["error"]["details"] = details  # type: ignore[index]
    error = gemini_error(429, headers, body, "gemini", MODEL)
    assert isinstance(error, ProviderRateLimited)
    assert error.retry_after == expected
