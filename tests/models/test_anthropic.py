"""The Anthropic Messages provider against the fake Anthropic server: the contract scenarios, the
request on the wire, errors, and agreement with the official SDK."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from fakes.anthropic_fixtures import anthropic_fake, anthropic_fake_server
from fakes.anthropic_server import (
    CutStream,
    FakeAnthropic,
    FakeToolUse,
    FakeUsage,
    Hang,
    InvalidRequest,
    MalformedBody,
    Overloaded,
    RateLimited,
    ServerError,
    StreamError,
    TextReply,
    ToolUseReply,
)
from promptline.config import load_settings
from promptline.core.errors import (
    CapabilityError,
    InvalidInputError,
    ProviderAuthError,
    ProviderBadResponse,
    ProviderRateLimited,
    ProviderRequestRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from promptline.core.messages import FilePart, ImagePart, Message, TextPart, ToolCall, Usage
from promptline.models.anthropic import (
    THINKING_METADATA_KEY,
    AnthropicProvider,
    build_messages_body,
    parse_message_body,
)
from promptline.models.http import SharedHttpTransport
from promptline.models.registry import ProviderRegistry
from promptline.models.types import (
    ModelRequest,
    ModelResponse,
    ResponseFormat,
    StreamDelta,
    ToolSpec,
)

__all__ = ["anthropic_fake", "anthropic_fake_server"]  # fixtures used by name below

MODEL = "claude-sonnet-4-6"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather for a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)


def ask(text: str = "Say hello.", **fields: Any) -> ModelRequest:
    return ModelRequest(model=MODEL, messages=[Message(role="user", content=text)], **fields)


def body_of(request: ModelRequest, *, stream: bool = False) -> dict[str, Any]:
    return build_messages_body(
        request, provider="anthropic", default_max_tokens=4096, stream=stream
    )


@pytest.fixture
async def transport() -> AsyncIterator[SharedHttpTransport]:
    shared = SharedHttpTransport()
    yield shared
    await shared.aclose()


@pytest.fixture
def provider(anthropic_fake: FakeAnthropic, transport: SharedHttpTransport) -> AnthropicProvider:
    return AnthropicProvider(
        api_key="sk-ant-test", transport=transport, base_url=anthropic_fake.base_url
    )


async def collect(
    provider: AnthropicProvider, request: ModelRequest
) -> tuple[list[StreamDelta], ModelResponse]:
    items = [item async for item in provider.stream(request)]
    *deltas, final = items
    assert all(isinstance(delta, StreamDelta) for delta in deltas)
    assert isinstance(final, ModelResponse)
    return [delta for delta in deltas if isinstance(delta, StreamDelta)], final


async def drain(
    provider: AnthropicProvider, request: ModelRequest, into: list[StreamDelta] | None = None
) -> list[StreamDelta]:
    """Stream ``request`` to the end, keeping the deltas in ``into`` (kept when it raises)."""
    received = into if into is not None else []
    async for item in provider.stream(request):
        if isinstance(item, StreamDelta):
            received.append(item)
    return received


# --- contract scenarios -----------------------------------------------------------------------


async def test_anthropic_plain_text(
    provider: AnthropicProvider, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script(TextReply("Hello there!"))
    response = await provider.complete(ask())

    assert response.message.role == "assistant"
    assert response.message.text == "Hello there!"
    assert response.message.tool_calls == []
    assert (response.provider, response.model, response.finish_reason) == (
        "anthropic",
        MODEL,
        "stop",
    )
    assert response.response_id is not None
    assert response.response_id.startswith("msg_")
    assert response.latency_ms > 0
    (request,) = anthropic_fake.requests
    assert (request.method, request.path) == ("POST", "/v1/messages")
    assert request.headers["x-api-key"] == "sk-ant-test"
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.body == {
        "model": MODEL,
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello."}]}],
    }


async def test_anthropic_streamed_text(
    provider: AnthropicProvider, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script(
        TextReply("Hello, streaming world!", usage=FakeUsage(input_tokens=9, output_tokens=4))
    )
    deltas, final = await collect(provider, ask())

    assert [delta.text for delta in deltas] == ["Hello,", " streaming", " world!"]
    assert "".join(delta.text for delta in deltas) == final.message.text
    assert final.message.text == "Hello, streaming world!"
    assert final.finish_reason == "stop"
    assert final.usage == Usage(input_tokens=9, output_tokens=4)
    assert final.ttft_ms is not None
    assert 0 <= final.ttft_ms <= final.latency_ms
    assert final.response_id is not None
    assert anthropic_fake.requests[0].body["stream"] is True
    assert anthropic_fake.requests[0].headers["accept"] == "text/event-stream"


async def test_anthropic_tool_call(
    provider: AnthropicProvider, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script(
        ToolUseReply([FakeToolUse("get_weather", {"city": "Paris"}, id="toolu_1")]),
        ToolUseReply([FakeToolUse("get_weather", {"city": "Oslo"}, id="toolu_2")]),
    )
    request = ask("Weather in Paris?", tools=[WEATHER], tool_choice="auto")
    response = await provider.complete(request)
    deltas, streamed = await collect(provider, request)

    assert response.finish_reason == "tool_calls"
    assert response.message.tool_calls == [
        ToolCall(id="toolu_1", name="get_weather", arguments={"city": "Paris"})
    ]
    assert streamed.finish_reason == "tool_calls"
    assert streamed.message.tool_calls == [
        ToolCall(id="toolu_2", name="get_weather", arguments={"city": "Oslo"})
    ]
    fragments = [d.tool_call for d in deltas if d.tool_call is not None]
    assert (fragments[0].index, fragments[0].id, fragments[0].name) == (0, "toolu_2", "get_weather")
    assert "".join(f.arguments for f in fragments) == '{"city":"Oslo"}'
    sent = anthropic_fake.requests[0].body
    assert sent["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "input_schema": WEATHER.parameters,
        }
    ]
    assert sent["tool_choice"] == {"type": "auto"}


async def test_anthropic_parallel_tool_calls(
    provider: AnthropicProvider, anthropic_fake: FakeAnthropic
) -> None:
    calls = [
        FakeToolUse("get_weather", {"city": "Paris"}, id="toolu_a"),
        FakeToolUse("get_weather", {"city": "Tokyo"}, id="toolu_b"),
        FakeToolUse("get_time", {}, id="toolu_c"),
    ]
    anthropic_fake.script(
        ToolUseReply(calls, text="Checking both."), ToolUseReply(calls, text="Checking both.")
    )
    response = await provider.complete(ask(tools=[WEATHER]))
    deltas, streamed = await collect(provider, ask(tools=[WEATHER]))

    expected = [
        ToolCall(id="toolu_a", name="get_weather", arguments={"city": "Paris"}),
        ToolCall(id="toolu_b", name="get_weather", arguments={"city": "Tokyo"}),
        ToolCall(id="toolu_c", name="get_time", arguments={}),
    ]
    assert response.message.tool_calls == expected
    assert response.message.text == "Checking both."
    assert streamed.message.tool_calls == expected
    assert streamed.message.text == "Checking both."
    # Tool-call deltas are numbered per call, not per content block (the text is block 0).
    starts = [d.tool_call for d in deltas if d.tool_call is not None and d.tool_call.id]
    assert [(s.index, s.id) for s in starts] == [(0, "toolu_a"), (1, "toolu_b"), (2, "toolu_c")]


async def test_anthropic_image_part(
    provider: AnthropicProvider, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script(TextReply("Two pictures."))
    message = Message(
        role="user",
        content=[
            TextPart(text="Compare these."),
            ImagePart(data=PNG, media_type="image/png"),
            ImagePart(url="https://example.com/cat.jpg"),
            ImagePart(url=f"data:image/png;base64,{PNG}"),
        ],
    )
    response = await provider.complete(ModelRequest(model=MODEL, messages=[message]))

    assert response.message.text == "Two pictures."
    blocks = anthropic_fake.requests[0].body["messages"][0]["content"]
    base64_source = {"type": "base64", "media_type": "image/png", "data": PNG}
    assert blocks == [
        {"type": "text", "text": "Compare these."},
        {"type": "image", "source": base64_source},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "image", "source": base64_source},
    ]


async def test_anthropic_usage_figures(
    provider: AnthropicProvider, anthropic_fake: FakeAnthropic
) -> None:
    usage = FakeUsage(
        input_tokens=20,
        output_tokens=30,
        cache_read_input_tokens=100,
        cache_creation_input_tokens=5,
        thinking_tokens=12,
    )
    anthropic_fake.script(TextReply("42", usage=usage), TextReply("42", usage=usage))
    response = await provider.complete(ask())
    _, streamed = await collect(provider, ask())

    # Claude counts cache reads and writes apart from input_tokens; the common shape counts
    # every prompt token as input and the cache hits again as cached.
    expected = Usage(input_tokens=125, output_tokens=30, cached_tokens=100, reasoning_tokens=12)
    assert response.usage == expected
    assert streamed.usage == expected


# --- contract error scenarios -----------------------------------------------------------------


async def test_anthropic_rate_limited_with_retry_after(
    provider: AnthropicProvider, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script(RateLimited(retry_after=7), RateLimited(retry_after=3))
    with pytest.raises(ProviderRateLimited) as caught:
        await provider.complete(ask())
    with pytest.raises(ProviderRateLimited) as streamed:
        await drain(provider, ask())

    assert caught.value.retry_after == 7
    assert caught.value.retryable
    assert (caught.value.provider, caught.value.model, caught.value.status) == (
        "anthropic",
        MODEL,
        429,
    )
    assert "rate_limit_error" in caught.value.message
    assert streamed.value.retry_after == 3


async def test_anthropic_server_error_is_retryable(
    provider: AnthropicProvider, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script(ServerError(message="upstream exploded"), Overloaded(), Overloaded())
    with pytest.raises(ProviderUnavailable) as server:
        await provider.complete(ask())
    with pytest.raises(ProviderUnavailable) as overloaded:
        await provider.complete(ask())
    with pytest.raises(ProviderUnavailable) as streamed:
        await drain(provider, ask())

    assert server.value.retryable
    assert server.value.status == 500
    assert "upstream exploded" in server.value.message
    assert overloaded.value.status == 529
    assert "overloaded_error" in overloaded.value.message
    assert streamed.value.status == 529


async def test_anthropic_bad_request_is_not_retryable(
    provider: AnthropicProvider, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script(
        InvalidRequest("max_tokens: 999999 > 64000, the maximum"),
        InvalidRequest("model: claude-9", status=404, type="not_found_error"),
    )
    with pytest.raises(ProviderRequestRejected) as rejected:
        await provider.complete(ask())
    with pytest.raises(ProviderRequestRejected) as missing:
        await provider.complete(ModelRequest(model="claude-9", messages=ask().messages))

    assert not rejected.value.retryable
    assert rejected.value.status == 400
    assert "max_tokens: 999999" in rejected.value.message
    assert missing.value.status == 404
    assert missing.value.model == "claude-9"
    assert missing.value.hint is not None
    assert "claude-9" in missing.value.hint


async def test_anthropic_hang_times_out(
    anthropic_fake: FakeAnthropic, transport: SharedHttpTransport
) -> None:
    provider = AnthropicProvider(
        api_key="k", transport=transport, base_url=anthropic_fake.base_url, timeout=0.3
    )
    anthropic_fake.script(Hang(), Hang())
    with pytest.raises(ProviderTimeout) as plain:
        await provider.complete(ask())
    with pytest.raises(ProviderTimeout) as streamed:
        await drain(provider, ask())

    assert plain.value.retryable
    assert (plain.value.provider, plain.value.model) == ("anthropic", MODEL)
    assert streamed.value.retryable


async def test_anthropic_malformed_json(
    provider: AnthropicProvider, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script(MalformedBody(), MalformedBody())
    with pytest.raises(ProviderBadResponse) as plain:
        await provider.complete(ask())
    with pytest.raises(ProviderBadResponse) as streamed:
        await drain(provider, ask())

    assert "not JSON" in plain.value.message
    assert plain.value.model == MODEL
    assert "message_start" in streamed.value.message


async def test_anthropic_cut_stream(
    provider: AnthropicProvider, anthropic_fake: FakeAnthropic
) -> None:
    # message_start, content_block_start, ping, then two words, then the connection drops
    anthropic_fake.script(
        CutStream(TextReply("one two three four"), after_events=5),
        CutStream(TextReply("never complete")),
    )
    received: list[StreamDelta] = []
    with pytest.raises(ProviderUnavailable) as streamed:
        await drain(provider, ask(), into=received)
    with pytest.raises(ProviderUnavailable) as plain:
        await provider.complete(ask())

    assert "".join(delta.text for delta in received) == "one two"
    assert streamed.value.retryable
    assert "cut" in streamed.value.message
    assert plain.value.retryable


async def test_anthropic_invalid_tool_arguments_json(
    provider: AnthropicProvider, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script(ToolUseReply([FakeToolUse("get_weather", '{"city": "Par')]))
    with pytest.raises(ProviderBadResponse) as caught:
        await drain(provider, ask(tools=[WEATHER]))

    assert "get_weather" in caught.value.message
    assert "not a JSON object" in caught.value.message
    assert (caught.value.provider, caught.value.model) == ("anthropic", MODEL)


async def test_anthropic_error_quoting_the_key_has_it_masked(
    provider: AnthropicProvider, anthropic_fake: FakeAnthropic
) -> None:
    refused = "invalid x-api-key: sk-ant-test"
    anthropic_fake.script(ServerError(401, refused), ServerError(401, refused))
    with pytest.raises(ProviderAuthError) as plain:
        await provider.complete(ask())
    with pytest.raises(ProviderAuthError) as streamed:
        await drain(provider, ask())

    for error in (plain.value, streamed.value):
        assert "invalid x-api-key: ***" in error.message
        assert "sk-ant-test" not in str(error)


async def test_anthropic_missing_api_key(
    anthropic_fake: FakeAnthropic, transport: SharedHttpTransport
) -> None:
    provider = AnthropicProvider(
        api_key=None, transport=transport, base_url=anthropic_fake.base_url
    )
    with pytest.raises(ProviderAuthError) as plain:
        await provider.complete(ask())
    with pytest.raises(ProviderAuthError):
        await drain(provider, ask())

    assert (plain.value.provider, plain.value.model) == ("anthropic", MODEL)
    assert plain.value.hint is not None
    assert "models.providers.anthropic.api_key" in plain.value.hint
    assert not plain.value.retryable
    assert anthropic_fake.requests == []  # nothing was sent without a key


# --- more errors ------------------------------------------------------------------------------


async def test_rejected_key_is_an_auth_error(
    anthropic_fake: FakeAnthropic, transport: SharedHttpTransport
) -> None:
    provider = AnthropicProvider(api_key="", transport=transport, base_url=anthropic_fake.base_url)
    anthropic_fake.script(InvalidRequest("invalid x-api-key", 401, "authentication_error"))
    with pytest.raises(ProviderAuthError):  # an empty key counts as no key
        await provider.complete(ask())
    keyed = AnthropicProvider(api_key="bad", transport=transport, base_url=anthropic_fake.base_url)
    with pytest.raises(ProviderAuthError) as caught:
        await keyed.complete(ask())

    assert caught.value.status == 401
    assert "invalid x-api-key" in caught.value.message


async def test_error_event_mid_stream_maps_by_its_type(
    provider: AnthropicProvider, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script(
        StreamError(TextReply("one two three"), after_events=4),
        StreamError(TextReply("x"), after_events=1, type="invalid_request_error", message="bad"),
    )
    with pytest.raises(ProviderUnavailable) as overloaded:
        await drain(provider, ask())
    with pytest.raises(ProviderRequestRejected) as rejected:
        await drain(provider, ask())

    assert "mid-stream overloaded_error" in overloaded.value.message
    assert overloaded.value.retryable
    assert not rejected.value.retryable


async def test_refused_connection_is_unavailable(transport: SharedHttpTransport) -> None:
    provider = AnthropicProvider(api_key="k", transport=transport, base_url="http://127.0.0.1:9")
    with pytest.raises(ProviderUnavailable) as caught:
        await provider.complete(ask())

    assert caught.value.retryable
    assert caught.value.model == MODEL


async def test_answer_that_is_json_but_not_a_message_is_a_bad_response() -> None:
    with pytest.raises(ProviderBadResponse):
        parse_message_body({"type": "message"}, provider="anthropic", model=MODEL)
    with pytest.raises(ProviderBadResponse):
        parse_message_body(
            {"content": [{"type": "tool_use", "id": "t", "name": "f", "input": "[]"}]},
            provider="anthropic",
            model=MODEL,
        )


# --- the request on the wire ------------------------------------------------------------------


def test_system_messages_go_to_the_top_level_system() -> None:
    request = ModelRequest(
        model=MODEL,
        messages=[
            Message(role="system", content="Be brief."),
            Message(role="user", content="Hi"),
            Message(role="system", content="Answer in French."),
        ],
    )
    body = body_of(request)

    assert body["system"] == [
        {"type": "text", "text": "Be brief."},
        {"type": "text", "text": "Answer in French."},
    ]
    assert [turn["role"] for turn in body["messages"]] == ["user"]


def test_tool_results_of_one_turn_merge_into_one_user_message() -> None:
    calls = [
        ToolCall(id="toolu_a", name="get_weather", arguments={"city": "Paris"}),
        ToolCall(id="toolu_b", name="get_weather", arguments={"city": "Oslo"}),
    ]
    request = ModelRequest(
        model=MODEL,
        messages=[
            Message(role="user", content="Weather?"),
            Message(role="assistant", content="Checking.", tool_calls=calls),
            Message(role="tool", tool_call_id="toolu_a", content="sunny"),
            Message(
                role="tool",
                tool_call_id="toolu_b",
                content="station offline",
                metadata={"is_error": True},
            ),
            Message(role="user", content="And tomorrow?"),
        ],
    )
    turns = body_of(request)["messages"]

    assert turns[1] == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Checking."},
            {
                "type": "tool_use",
                "id": "toolu_a",
                "name": "get_weather",
                "input": {"city": "Paris"},
            },
            {"type": "tool_use", "id": "toolu_b", "name": "get_weather", "input": {"city": "Oslo"}},
        ],
    }
    assert turns[2] == {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "toolu_a",
                "content": [{"type": "text", "text": "sunny"}],
            },
            {
                "type": "tool_result",
                "tool_use_id": "toolu_b",
                "content": [{"type": "text", "text": "station offline"}],
                "is_error": True,
            },
            {"type": "text", "text": "And tomorrow?"},
        ],
    }
    assert len(turns) == 3


async def test_a_tool_round_trip_is_accepted_by_the_fake(
    provider: AnthropicProvider, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script(
        ToolUseReply([FakeToolUse("get_weather", {"city": "Paris"})]), TextReply("Sunny.")
    )
    first = await provider.complete(ask(tools=[WEATHER]))
    (call,) = first.message.tool_calls
    history = [
        *ask().messages,
        first.message,
        Message(role="tool", tool_call_id=call.id, name=call.name, content="sunny, 24C"),
    ]
    second = await provider.complete(ModelRequest(model=MODEL, messages=history, tools=[WEATHER]))

    assert second.message.text == "Sunny."
    tool_result = anthropic_fake.requests[1].body["messages"][2]["content"][0]
    assert tool_result["tool_use_id"] == call.id


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ("get_weather", {"type": "tool", "name": "get_weather"}),
    ],
)
def test_tool_choice_maps_to_claude_shapes(choice: str, wire: dict[str, Any]) -> None:
    assert body_of(ask(tools=[WEATHER], tool_choice=choice))["tool_choice"] == wire


def test_sampling_knobs_stop_sequences_and_extra_are_sent() -> None:
    request = ask(
        temperature=0.2,
        top_p=0.9,
        max_tokens=256,
        stop=["END"],
        extra={"top_k": 5, "metadata": {"user_id": "u1"}},
    )
    body = body_of(request, stream=True)

    assert body["temperature"] == 0.2
    assert body["top_p"] == 0.9
    assert body["max_tokens"] == 256
    assert body["stop_sequences"] == ["END"]
    assert body["top_k"] == 5
    assert body["metadata"] == {"user_id": "u1"}
    assert body["stream"] is True


def test_json_schema_response_format_becomes_output_config() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = body_of(ask(response_format=ResponseFormat(schema=schema)))

    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}


def test_documents_map_to_document_blocks() -> None:
    text = base64.b64encode(b"hello").decode()
    message = Message(
        role="user",
        content=[
            FilePart(name="notes.txt", data=text, media_type="text/plain"),
            FilePart(data="JVBERi0=", media_type="application/pdf"),
            FilePart(url="https://example.com/a.pdf"),
        ],
    )
    blocks = body_of(ModelRequest(model=MODEL, messages=[message]))["messages"][0]["content"]

    assert blocks == [
        {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": "hello"},
            "title": "notes.txt",
        },
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
        },
        {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}},
    ]


@pytest.mark.parametrize(
    ("part", "error"),
    [
        (ImagePart(data=PNG), InvalidInputError),
        (ImagePart(), InvalidInputError),
        (ImagePart(url="data:image/png,rawbytes"), InvalidInputError),
        (FilePart(data="AAAA", media_type="application/zip"), CapabilityError),
    ],
)
def test_parts_claude_cannot_take_raise_before_sending(
    part: ImagePart | FilePart, error: type[Exception]
) -> None:
    request = ModelRequest(model=MODEL, messages=[Message(role="user", content=[part])])
    with pytest.raises(error) as caught:
        body_of(request)

    assert MODEL in str(caught.value)


def test_tool_result_without_call_id_and_empty_conversation_are_refused() -> None:
    orphan = ModelRequest(model=MODEL, messages=[Message(role="tool", content="42")])
    only_system = ModelRequest(model=MODEL, messages=[Message(role="system", content="x")])

    with pytest.raises(InvalidInputError, match="tool_call_id"):
        body_of(orphan)
    with pytest.raises(InvalidInputError, match="no user or assistant message"):
        body_of(only_system)


async def test_base_url_with_or_without_v1_reaches_the_same_endpoint(
    anthropic_fake: FakeAnthropic, transport: SharedHttpTransport
) -> None:
    anthropic_fake.script(TextReply("a"), TextReply("b"))
    for base_url in (anthropic_fake.base_url + "/", anthropic_fake.base_url + "/v1"):
        provider = AnthropicProvider(api_key="k", transport=transport, base_url=base_url)
        await provider.complete(ask())

    assert [request.path for request in anthropic_fake.requests] == ["/v1/messages"] * 2


def test_default_max_tokens_must_be_positive(transport: SharedHttpTransport) -> None:
    with pytest.raises(InvalidInputError, match="default_max_tokens"):
        AnthropicProvider(api_key="k", transport=transport, default_max_tokens=0)


# --- response mapping -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "pause_turn"),
    ],
)
async def test_stop_reason_maps_to_finish_reason(
    provider: AnthropicProvider, anthropic_fake: FakeAnthropic, stop_reason: str, finish: str
) -> None:
    anthropic_fake.script(TextReply("x", stop_reason=stop_reason))
    _, response = await collect(provider, ask())

    assert response.finish_reason == finish


async def test_thinking_stays_out_of_the_text_and_goes_back_on_the_next_turn(
    provider: AnthropicProvider, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script(
        ToolUseReply([FakeToolUse("get_weather", {"city": "Rome"})], thinking="Need weather."),
        TextReply("42", thinking="Six times seven."),
        TextReply("done"),
    )
    deltas, streamed = await collect(provider, ask(tools=[WEATHER]))
    plain = await provider.complete(ask())
    (call,) = streamed.message.tool_calls
    history = [
        *ask().messages,
        streamed.message,
        Message(role="tool", tool_call_id=call.id, content="sunny"),
    ]
    await provider.complete(ModelRequest(model=MODEL, messages=history, tools=[WEATHER]))

    assert "".join(d.reasoning for d in deltas) == "Need weather."
    assert all(not d.text for d in deltas)
    assert streamed.message.text == ""
    assert streamed.message.metadata["reasoning"] == "Need weather."
    assert plain.message.text == "42"
    assert plain.message.metadata["reasoning"] == "Six times seven."
    sent_back = anthropic_fake.requests[2].body["messages"][1]["content"][0]
    assert sent_back == {"type": "thinking", "thinking": "Need weather.", "signature": "c2lnbmVk"}
    assert streamed.message.metadata[THINKING_METADATA_KEY] == [sent_back]


async def test_provider_and_official_sdk_read_the_same_answer(
    provider: AnthropicProvider, anthropic_fake: FakeAnthropic
) -> None:
    reply = ToolUseReply(
        [FakeToolUse("get_weather", {"city": "Paris"}, id="toolu_x")],
        text="Let me look.",
        usage=FakeUsage(input_tokens=11, output_tokens=22, cache_read_input_tokens=3),
    )
    anthropic_fake.script(reply, reply)
    ours = await provider.complete(ask(tools=[WEATHER]))
    sdk = anthropic.AsyncAnthropic(base_url=anthropic_fake.base_url, api_key="k", max_retries=0)
    async with sdk:
        theirs = await sdk.messages.create(
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "Say hello."}]
        )

    text = "".join(block.text for block in theirs.content if block.type == "text")
    uses = [block for block in theirs.content if block.type == "tool_use"]
    assert ours.message.text == text
    assert [(c.id, c.name, c.arguments) for c in ours.message.tool_calls] == [
        (u.id, u.name, u.input) for u in uses
    ]
    assert ours.usage.output_tokens == theirs.usage.output_tokens
    assert ours.usage.cached_tokens == theirs.usage.cache_read_input_tokens


# --- docs/providers/anthropic.md --------------------------------------------------------------

DOC = Path(__file__).parents[2] / "docs" / "providers" / "anthropic.md"


async def test_doc_config_example_builds_an_anthropic_provider_that_answers(
    tmp_path: Path, anthropic_fake: FakeAnthropic, transport: SharedHttpTransport
) -> None:
    (example,) = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    # Point the documented config at the fake, leaving everything else as written.
    config = example.replace(
        'api_key: "${ANTHROPIC_API_KEY}"',
        f'api_key: "${{ANTHROPIC_API_KEY}}"\n      base_url: "{anthropic_fake.base_url}"',
    )
    path = tmp_path / "config.yaml"
    path.write_text(config, encoding="utf-8")
    registry = ProviderRegistry(
        load_settings(path, environ={"ANTHROPIC_API_KEY": "sk-ant-doc"}), transport=transport
    )
    provider, resolved = registry.provider_for(None)
    anthropic_fake.script(TextReply("Documented."))
    response = await provider.complete(ask())

    assert isinstance(provider, AnthropicProvider)
    assert resolved.id == "anthropic/claude-sonnet-4-0"
    assert response.message.text == "Documented."
    assert anthropic_fake.requests[0].headers["x-api-key"] == "sk-ant-doc"
