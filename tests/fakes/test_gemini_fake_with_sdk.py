"""The fake Gemini server is faithful: the official `google-genai` SDK talks to it as to the real
API (text, streaming, function calls, thoughts, usage, errors)."""

from __future__ import annotations

import pytest
from google import genai
from google.genai import errors, types

from fakes.gemini_fixtures import gemini_fake, gemini_fake_server
from fakes.gemini_server import (
    FakeFunctionCall,
    FakeGemini,
    FakeUsage,
    FunctionCallsReply,
    TextReply,
    invalid_argument,
    rate_limited,
    server_error,
)

__all__ = ["gemini_fake", "gemini_fake_server"]  # fixtures used by name below

MODEL = "gemini-2.5-flash"
WEATHER = types.Tool(
    function_declarations=[
        types.FunctionDeclaration(
            name="get_weather",
            description="Current weather for a city.",
            parameters=types.Schema(
                type=types.Type.OBJECT,
                properties={"city": types.Schema(type=types.Type.STRING)},
                required=["city"],
            ),
        )
    ]
)


@pytest.fixture
def client(gemini_fake: FakeGemini) -> genai.Client:
    """The official SDK pointed at the fake (the SDK does not retry unless told to)."""
    return genai.Client(
        api_key="test",
        http_options=types.HttpOptions(base_url=gemini_fake.base_url, api_version="v1beta"),
    )


async def test_sdk_parses_text_reply_with_usage(
    client: genai.Client, gemini_fake: FakeGemini
) -> None:
    gemini_fake.script(
        TextReply(
            "Hello there!",
            usage=FakeUsage(
                prompt_tokens=20, candidates_tokens=3, cached_tokens=8, thoughts_tokens=5
            ),
        )
    )
    response = await client.aio.models.generate_content(model=MODEL, contents="Say hello.")

    assert response.text == "Hello there!"
    assert response.candidates is not None
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.model_version == MODEL
    assert response.response_id
    usage = response.usage_metadata
    assert usage is not None
    assert (usage.prompt_token_count, usage.candidates_token_count) == (20, 3)
    assert (usage.cached_content_token_count, usage.thoughts_token_count) == (8, 5)
    assert usage.total_token_count == 28
    sent = gemini_fake.requests[0]
    assert sent.path == f"/v1beta/models/{MODEL}:generateContent"
    assert sent.headers["x-goog-api-key"] == "test"
    assert sent.body["contents"] == [{"role": "user", "parts": [{"text": "Say hello."}]}]


async def test_sdk_streams_text_chunks_that_join_to_the_reply(
    client: genai.Client, gemini_fake: FakeGemini
) -> None:
    gemini_fake.script(TextReply("Streaming is fun", thoughts="Think first."))
    stream = await client.aio.models.generate_content_stream(model=MODEL, contents="Go")
    chunks = [chunk async for chunk in stream]

    texts = [
        part.text
        for chunk in chunks
        for part in (chunk.candidates[0].content.parts or [])  # type: ignore[index,union-attr]
        if part.text and not part.thought
    ]
    thoughts = [
        part.text
        for chunk in chunks
        for part in (chunk.candidates[0].content.parts or [])  # type: ignore[index,union-attr]
        if part.thought
    ]
    assert "".join(texts) == "Streaming is fun"
    assert thoughts == ["Think first."]
    last = chunks[-1]
    assert last.candidates is not None
    assert last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata is not None
    assert last.usage_metadata.candidates_token_count == 7
    sent = gemini_fake.requests[0]
    assert sent.path == f"/v1beta/models/{MODEL}:streamGenerateContent"
    assert sent.query["alt"] == "sse"


def test_sdk_sync_client_streams_too(client: genai.Client, gemini_fake: FakeGemini) -> None:
    gemini_fake.script(TextReply("one two three"))
    text = "".join(
        chunk.text or ""
        for chunk in client.models.generate_content_stream(model=MODEL, contents="x")
    )
    assert text == "one two three"


async def test_sdk_parses_parallel_function_calls(
    client: genai.Client, gemini_fake: FakeGemini
) -> None:
    gemini_fake.script(
        FunctionCallsReply(
            [
                FakeFunctionCall("get_weather", {"city": "Paris"}, thought_signature="c2lnMQ=="),
                FakeFunctionCall("get_weather", {"city": "Rome"}),
            ]
        )
    )
    response = await client.aio.models.generate_content(
        model=MODEL,
        contents="Weather in Paris and Rome?",
        config=types.GenerateContentConfig(
            tools=[WEATHER],
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        ),
    )

    calls = response.function_calls
    assert calls is not None
    assert [(call.name, call.args) for call in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "Rome"}),
    ]
    parts = response.candidates[0].content.parts  # type: ignore[index,union-attr]
    assert parts is not None
    assert parts[0].thought_signature == b"sig1"
    sent = gemini_fake.requests[0].body
    declaration = sent["tools"][0]["functionDeclarations"][0]
    assert declaration["name"] == "get_weather"


async def test_sdk_sends_function_responses_the_fake_accepts(
    client: genai.Client, gemini_fake: FakeGemini
) -> None:
    gemini_fake.script(TextReply("It is sunny."))
    contents = [
        types.Content(role="user", parts=[types.Part.from_text(text="Weather in Paris?")]),
        types.Content(
            role="model",
            parts=[types.Part.from_function_call(name="get_weather", args={"city": "Paris"})],
        ),
        types.Content(
            role="user",
            parts=[
                types.Part.from_function_response(name="get_weather", response={"result": "sun"})
            ],
        ),
    ]
    response = await client.aio.models.generate_content(
        model=MODEL, contents=contents, config=types.GenerateContentConfig(tools=[WEATHER])
    )
    assert response.text == "It is sunny."


async def test_sdk_reads_rate_limit_error(client: genai.Client, gemini_fake: FakeGemini) -> None:
    gemini_fake.script(rate_limited(retry_after=3))
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.generate_content(model=MODEL, contents="x")
    assert caught.value.code == 429
    assert caught.value.status == "RESOURCE_EXHAUSTED"
    assert "quota" in (caught.value.message or "")


async def test_sdk_reads_server_and_argument_errors(
    client: genai.Client, gemini_fake: FakeGemini
) -> None:
    gemini_fake.script(server_error(503), invalid_argument("bad temperature"))
    with pytest.raises(errors.ServerError) as server:
        await client.aio.models.generate_content(model=MODEL, contents="x")
    assert (server.value.code, server.value.status) == (503, "UNAVAILABLE")
    with pytest.raises(errors.ClientError) as client_error:
        await client.aio.models.generate_content(model=MODEL, contents="x")
    assert (client_error.value.code, client_error.value.message) == (400, "bad temperature")


async def test_sdk_unknown_model_is_404_not_found(client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.generate_content(model="gemini-0-nope", contents="x")
    assert (caught.value.code, caught.value.status) == (404, "NOT_FOUND")
    assert "models/gemini-0-nope is not found" in (caught.value.message or "")


async def test_fake_rejects_schema_keys_gemini_does_not_know(
    client: genai.Client, gemini_fake: FakeGemini
) -> None:
    # The SDK itself sends a bad raw schema unchanged, so the fake's check is what fires.
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.generate_content(
            model=MODEL,
            contents="x",
            config={
                "response_mime_type": "application/json",
                "response_schema": {
                    "type": "OBJECT",
                    "properties": {"a": {"type": "STRING"}},
                    "additional_properties": False,
                },
            },
        )
    assert caught.value.code == 400
    assert "additional" in (caught.value.message or "")
