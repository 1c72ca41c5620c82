"""The OpenAI chat-completions provider against the fake OpenAI server: the contract scenarios,
the request on the wire, errors, endpoints and keys, and agreement with the official SDK."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import openai
import pytest

from fakes.openai_fixtures import openai_fake, openai_fake_server
from fakes.openai_server import (
    CutStream,
    FakeOpenAI,
    FakeToolCall,
    FakeUsage,
    Hang,
    InvalidRequest,
    MalformedBody,
    RateLimited,
    ServerError,
    TextReply,
    ToolCallsReply,
)
from promptline.config import load_settings
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
from promptline.core.messages import ImagePart, Message, TextPart, ToolCall, Usage
from promptline.models.http import SharedHttpTransport
from promptline.models.http11 import Http11Transport
from promptline.models.openai_chat import (
    OPENAI_COMPATIBLE_ENDPOINTS,
    OpenAIChatProvider,
    build_request_body,
    normalize_base_url,
    parse_completion,
    status_error,
)
from promptline.models.transport import HttpTransport
from promptline.models.types import (
    ModelRequest,
    ModelResponse,
    ResponseFormat,
    StreamDelta,
    ToolSpec,
)

__all__ = ["openai_fake", "openai_fake_server"]  # fixtures used by name below

MODEL = "gpt-4o-mini"
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


@pytest.fixture(params=["aiohttp", "http11"])
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[HttpTransport]:
    """Each transport implementation in turn: the contract holds on both."""
    shared: HttpTransport = (
        SharedHttpTransport() if request.param == "aiohttp" else Http11Transport()
    )
    yield shared
    await shared.aclose()


@pytest.fixture
def provider(openai_fake: FakeOpenAI, transport: SharedHttpTransport) -> OpenAIChatProvider:
    return OpenAIChatProvider(
        "openai", base_url=openai_fake.base_url, api_key="sk-test", transport=transport
    )


async def collect(
    provider: OpenAIChatProvider, request: ModelRequest
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


async def test_openai_plain_text(provider: OpenAIChatProvider, openai_fake: FakeOpenAI) -> None:
    openai_fake.script(TextReply("Hello there!"))

    response = await provider.complete(ask())

    assert response.message.role == "assistant"
    assert response.message.text == "Hello there!"
    assert response.message.tool_calls == []
    assert (response.provider, response.model) == ("openai", MODEL)
    assert response.finish_reason == "stop"
    assert response.response_id is not None
    assert response.response_id.startswith("chatcmpl-")
    assert response.latency_ms > 0
    assert response.ttft_ms is None


async def test_openai_streamed_text(provider: OpenAIChatProvider, openai_fake: FakeOpenAI) -> None:
    openai_fake.script(
        TextReply("The quick brown fox", usage=FakeUsage(prompt_tokens=9, completion_tokens=4))
    )

    deltas, final = await collect(provider, ask())

    assert [d.text for d in deltas] == ["The", " quick", " brown", " fox"]
    assert final.message.text == "".join(d.text for d in deltas)
    assert final.usage == Usage(input_tokens=9, output_tokens=4)
    assert final.finish_reason == "stop"
    assert final.ttft_ms is not None
    assert 0 < final.ttft_ms <= final.latency_ms
    body = openai_fake.requests[0].body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_openai_tool_call(provider: OpenAIChatProvider, openai_fake: FakeOpenAI) -> None:
    call = FakeToolCall("get_weather", {"city": "Paris", "unit": "C"}, id="call_1")
    openai_fake.script(ToolCallsReply([call]), ToolCallsReply([call]))

    response = await provider.complete(ask("Weather in Paris?", tools=[WEATHER]))
    deltas, streamed = await collect(provider, ask("Weather in Paris?", tools=[WEATHER]))

    expected = [ToolCall(id="call_1", name="get_weather", arguments={"city": "Paris", "unit": "C"})]
    assert response.message.tool_calls == expected
    assert response.finish_reason == "tool_calls"
    assert streamed.message.tool_calls == expected
    assert streamed.finish_reason == "tool_calls"
    fragments = [d.tool_call for d in deltas if d.tool_call is not None]
    assert fragments[0].name == "get_weather"
    assert fragments[0].id == "call_1"
    assert "".join(f.arguments for f in fragments) == '{"city":"Paris","unit":"C"}'


async def test_openai_parallel_tool_calls(
    provider: OpenAIChatProvider, openai_fake: FakeOpenAI
) -> None:
    calls = [
        FakeToolCall("get_weather", {"city": "Paris"}, id="call_a"),
        FakeToolCall("get_weather", {"city": "Tokyo"}, id="call_b"),
        FakeToolCall("get_time", {}, id="call_c"),
    ]
    openai_fake.script(ToolCallsReply(calls, text="Checking."), ToolCallsReply(calls))

    response = await provider.complete(ask(tools=[WEATHER]))
    _, streamed = await collect(provider, ask(tools=[WEATHER]))

    expected = [
        ToolCall(id="call_a", name="get_weather", arguments={"city": "Paris"}),
        ToolCall(id="call_b", name="get_weather", arguments={"city": "Tokyo"}),
        ToolCall(id="call_c", name="get_time", arguments={}),
    ]
    assert response.message.tool_calls == expected
    assert response.message.text == "Checking."
    assert streamed.message.tool_calls == expected


async def test_openai_image_part(provider: OpenAIChatProvider, openai_fake: FakeOpenAI) -> None:
    openai_fake.script(TextReply("A cat."))
    message = Message(
        role="user",
        content=[
            TextPart(text="What is in these?"),
            ImagePart(url="https://example.com/cat.jpg", detail="low"),
            ImagePart(data=PNG),  # media type recognised from the data
        ],
    )

    response = await provider.complete(ModelRequest(model=MODEL, messages=[message]))

    assert response.message.text == "A cat."
    sent = openai_fake.requests[0].body["messages"][0]
    assert sent["role"] == "user"
    assert sent["content"] == [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]


async def test_openai_usage_figures(provider: OpenAIChatProvider, openai_fake: FakeOpenAI) -> None:
    usage = FakeUsage(
        prompt_tokens=120, completion_tokens=30, cached_tokens=64, reasoning_tokens=12
    )
    openai_fake.script(TextReply("ok", usage=usage), TextReply("ok", usage=usage))

    response = await provider.complete(ask())
    _, streamed = await collect(provider, ask())

    expected = Usage(input_tokens=120, output_tokens=30, cached_tokens=64, reasoning_tokens=12)
    assert response.usage == expected
    assert streamed.usage == expected


# --- contract scenarios: errors ---------------------------------------------------------------


async def test_openai_rate_limited_with_retry_after(
    provider: OpenAIChatProvider, openai_fake: FakeOpenAI
) -> None:
    openai_fake.script(RateLimited(retry_after=7), RateLimited(retry_after=3))

    with pytest.raises(ProviderRateLimited) as plain:
        await provider.complete(ask())
    with pytest.raises(ProviderRateLimited) as streamed:
        await collect(provider, ask())

    assert plain.value.retry_after == 7
    assert streamed.value.retry_after == 3
    assert plain.value.retryable
    assert plain.value.status == 429
    assert "openai/gpt-4o-mini" in str(plain.value)
    assert "Rate limit reached" in str(plain.value)


async def test_openai_server_error_is_retryable(
    provider: OpenAIChatProvider, openai_fake: FakeOpenAI
) -> None:
    openai_fake.script(ServerError(500), ServerError(503))

    with pytest.raises(ProviderUnavailable) as plain:
        await provider.complete(ask())
    with pytest.raises(ProviderUnavailable) as streamed:
        await collect(provider, ask())

    assert (plain.value.status, streamed.value.status) == (500, 503)
    assert plain.value.retryable
    assert streamed.value.retryable
    assert plain.value.provider == "openai"
    assert plain.value.model == MODEL


async def test_openai_bad_request_is_not_retryable(
    provider: OpenAIChatProvider, openai_fake: FakeOpenAI
) -> None:
    openai_fake.script(InvalidRequest("Invalid value for 'temperature'.", param="temperature"))

    with pytest.raises(ProviderRequestRejected) as caught:
        await provider.complete(ask(temperature=9.0))

    assert not caught.value.retryable
    assert caught.value.status == 400
    assert "Invalid value for 'temperature'." in str(caught.value)
    assert caught.value.hint


async def test_openai_hang_times_out(provider: OpenAIChatProvider, openai_fake: FakeOpenAI) -> None:
    openai_fake.script(Hang(), Hang())

    with pytest.raises(ProviderTimeout) as plain:
        await provider.complete(ask(timeout=0.2))
    with pytest.raises(ProviderTimeout) as streamed:
        await collect(provider, ask(timeout=0.2))

    assert plain.value.retryable
    assert streamed.value.retryable
    assert "openai/gpt-4o-mini" in str(plain.value)


async def test_openai_malformed_json(provider: OpenAIChatProvider, openai_fake: FakeOpenAI) -> None:
    openai_fake.script(MalformedBody())

    with pytest.raises(ProviderBadResponse) as caught:
        await provider.complete(ask())

    assert "not valid JSON" in str(caught.value)
    assert caught.value.model == MODEL
    assert caught.value.hint


async def test_openai_cut_stream(provider: OpenAIChatProvider, openai_fake: FakeOpenAI) -> None:
    openai_fake.script(
        CutStream(TextReply("one two three four five"), after_events=3),
        CutStream(TextReply("one two three four five")),
    )

    seen: list[str] = []

    async def read_until_cut() -> None:
        async for item in provider.stream(ask()):
            assert isinstance(item, StreamDelta)
            seen.append(item.text)

    with pytest.raises(ProviderUnavailable) as streamed:
        await read_until_cut()
    with pytest.raises(ProviderUnavailable) as plain:
        await provider.complete(ask())

    assert seen == ["one", " two"]  # what arrived before the cut was passed on
    assert streamed.value.retryable
    assert plain.value.retryable
    assert "openai/gpt-4o-mini" in str(streamed.value)


async def test_openai_invalid_tool_arguments_json(
    provider: OpenAIChatProvider, openai_fake: FakeOpenAI
) -> None:
    broken = FakeToolCall("get_weather", '{"city": "Par', id="call_x")
    openai_fake.script(ToolCallsReply([broken]), ToolCallsReply([broken]))

    with pytest.raises(ProviderBadResponse) as plain:
        await provider.complete(ask(tools=[WEATHER]))
    with pytest.raises(ProviderBadResponse) as streamed:
        await collect(provider, ask(tools=[WEATHER]))

    for caught in (plain.value, streamed.value):
        assert "'get_weather'" in str(caught)
        assert caught.details["tool"] == "get_weather"
        assert caught.model == MODEL


async def test_openai_missing_api_key(
    openai_fake: FakeOpenAI, transport: SharedHttpTransport
) -> None:
    provider = OpenAIChatProvider(
        "openai", base_url=openai_fake.base_url, api_key=None, transport=transport
    )

    with pytest.raises(ProviderAuthError) as plain:
        await provider.complete(ask())
    with pytest.raises(ProviderAuthError) as streamed:
        await collect(provider, ask())

    assert "openai/gpt-4o-mini" in str(plain.value)
    assert plain.value.hint is not None
    assert "models.providers.openai.api_key" in plain.value.hint
    assert not plain.value.retryable
    assert not streamed.value.retryable
    assert openai_fake.requests == []  # nothing was sent


async def test_server_ignoring_stream_true_still_streams_its_answer(
    provider: OpenAIChatProvider, openai_fake: FakeOpenAI
) -> None:
    openai_fake.script(TextReply("whole answer", usage=FakeUsage(prompt_tokens=5)))

    # extra turns streaming off on the wire, so the fake answers plain JSON to a stream call.
    deltas, final = await collect(provider, ask(extra={"stream": False}))

    assert [d.text for d in deltas] == ["whole answer"]
    assert final.message.text == "whole answer"
    assert final.usage.input_tokens == 5
    assert final.ttft_ms is not None


async def test_missing_key_hint_names_an_environment_variable(
    transport: SharedHttpTransport,
) -> None:
    provider = OpenAIChatProvider(
        "my-proxy", base_url="http://127.0.0.1:9/v1", api_key="", transport=transport
    )

    with pytest.raises(ProviderAuthError) as caught:
        await provider.complete(ask())

    assert caught.value.hint is not None
    assert "${MY_PROXY_API_KEY}" in caught.value.hint


# --- the request on the wire ------------------------------------------------------------------


async def test_request_carries_bearer_key_json_and_default_headers(
    openai_fake: FakeOpenAI, transport: SharedHttpTransport
) -> None:
    provider = OpenAIChatProvider(
        "openai",
        base_url=openai_fake.base_url + "/",
        api_key="sk-secret",
        transport=transport,
        default_headers={"OpenAI-Organization": "org-1"},
    )
    openai_fake.script(TextReply("hi"))

    await provider.complete(ask())

    sent = openai_fake.requests[0]
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent.headers["authorization"] == "Bearer sk-secret"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["openai-organization"] == "org-1"
    assert sent.body == {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}]}


async def test_request_maps_conversation_tools_and_options(
    provider: OpenAIChatProvider, openai_fake: FakeOpenAI
) -> None:
    openai_fake.script(TextReply("done"))
    request = ModelRequest(
        model=MODEL,
        messages=[
            Message(role="system", content="Be brief."),
            Message(role="user", content="Weather?", name="ana"),
            Message(
                role="assistant",
                tool_calls=[ToolCall(id="call_1", name="get_weather", arguments={"city": "Oslo"})],
            ),
            Message(role="tool", content="4 degrees", tool_call_id="call_1"),
        ],
        tools=[ToolSpec(name="get_weather", parameters=WEATHER.parameters, strict=True)],
        tool_choice="get_weather",
        temperature=0.2,
        top_p=0.9,
        max_tokens=100,
        stop=["END"],
        response_format=ResponseFormat(schema={"type": "object"}, name="answer", strict=True),
        extra={"seed": 7, "user": "u-1"},
    )

    await provider.complete(request)

    body = openai_fake.requests[0].body
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?", "name": "ana"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "4 degrees"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {"name": "get_weather", "parameters": WEATHER.parameters, "strict": True},
        }
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.2, 0.9, 100)
    assert body["stop"] == ["END"]
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
    }
    assert (body["seed"], body["user"]) == (7, "u-1")
    assert "stream" not in body


def test_max_completion_tokens_only_when_extra_asks() -> None:
    plain = build_request_body(ask(max_tokens=50), stream=False)
    moved = build_request_body(
        ask(max_tokens=50, extra={"max_completion_tokens": True}), stream=False
    )
    given = build_request_body(ask(extra={"max_completion_tokens": 80}), stream=False)

    assert plain["max_tokens"] == 50
    assert "max_completion_tokens" not in plain
    assert moved["max_completion_tokens"] == 50
    assert "max_tokens" not in moved
    assert given["max_completion_tokens"] == 80
    assert "max_tokens" not in given


def test_json_object_format_and_tool_choice_keywords() -> None:
    body = build_request_body(
        ask(response_format=ResponseFormat(type="json_object"), tool_choice="required"),
        stream=False,
    )

    assert body["response_format"] == {"type": "json_object"}
    assert body["tool_choice"] == "required"


def test_extra_none_removes_a_field() -> None:
    body = build_request_body(ask(extra={"stream_options": None, "seed": 1}), stream=True)

    assert body["stream"] is True
    assert "stream_options" not in body
    assert body["seed"] == 1


@pytest.mark.parametrize(
    ("message", "needle"),
    [
        (Message(role="tool", content="x"), "tool_call_id"),
        (Message(role="user", content=[ImagePart()]), "neither url nor data"),
        (Message(role="user", content=[ImagePart(data="AAAA")]), "media_type"),
    ],
)
def test_unmappable_message_is_a_clear_input_error(message: Message, needle: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        build_request_body(ModelRequest(model=MODEL, messages=[message]), stream=False)

    assert needle in str(caught.value)
    assert caught.value.hint


def test_json_schema_format_without_schema_is_an_input_error() -> None:
    with pytest.raises(InvalidInputError, match="needs a schema"):
        build_request_body(ask(response_format=ResponseFormat()), stream=False)


# --- endpoints and keys -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "given", "expected"),
    [
        ("ollama", "http://localhost:11434", "http://localhost:11434/v1"),
        ("ollama", "http://localhost:11434/", "http://localhost:11434/v1"),
        ("ollama", "http://gpu-box:11434/v1/", "http://gpu-box:11434/v1"),
        ("openai", "https://api.openai.com/v1/", "https://api.openai.com/v1"),
        ("vllm", "http://10.0.0.5:8000/v1", "http://10.0.0.5:8000/v1"),
        ("custom", "https://proxy.example.com", "https://proxy.example.com"),
    ],
)
def test_base_url_normalisation(name: str, given: str, expected: str) -> None:
    assert normalize_base_url(name, given) == expected


def test_base_url_that_is_not_http_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"models\.providers\.kimi\.base_url"):
        normalize_base_url("kimi", "api.moonshot.cn/v1")


def test_well_known_endpoints_and_key_rules(transport: SharedHttpTransport) -> None:
    kimi = OpenAIChatProvider.for_endpoint("kimi", transport=transport, api_key="k")
    ollama = OpenAIChatProvider.for_endpoint("ollama", transport=transport)
    deepseek = OpenAIChatProvider.for_endpoint("deepseek", transport=transport, api_key="k")

    assert kimi.base_url == "https://api.moonshot.cn/v1"
    assert deepseek.base_url == OPENAI_COMPATIBLE_ENDPOINTS["deepseek"]
    assert ollama.base_url == "http://localhost:11434/v1"
    with pytest.raises(ConfigError, match=r"models\.providers\.mybox has no base_url"):
        OpenAIChatProvider.for_endpoint("mybox", transport=transport)


async def test_ollama_without_api_key_sends_no_authorization(
    openai_fake: FakeOpenAI, transport: SharedHttpTransport
) -> None:
    root = openai_fake.base_url.removesuffix("/v1")  # configured as in the seed: no /v1
    ollama = OpenAIChatProvider.for_endpoint("ollama", base_url=root, transport=transport)
    openai_fake.script(TextReply("llama says hi"))

    response = await ollama.complete(
        ModelRequest(model="llama2", messages=[Message(role="user", content="hi")])
    )

    assert response.message.text == "llama says hi"
    assert response.provider == "ollama"
    assert "authorization" not in openai_fake.requests[0].headers
    assert openai_fake.requests[0].path == "/v1/chat/completions"


async def test_custom_base_url_without_key_is_treated_as_local(
    openai_fake: FakeOpenAI, transport: SharedHttpTransport
) -> None:
    vllm = OpenAIChatProvider.for_endpoint(
        "mybox", base_url=openai_fake.base_url, transport=transport
    )
    openai_fake.script(TextReply("ok"))

    assert (await vllm.complete(ask())).message.text == "ok"


# --- more error mapping -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (401, ProviderAuthError, False),
        (403, ProviderAuthError, False),
        (404, ProviderRequestRejected, False),
        (422, ProviderRequestRejected, False),
        (408, ProviderTimeout, True),
        (502, ProviderUnavailable, True),
    ],
)
def test_status_codes_map_to_typed_errors(
    status: int, kind: type[ProviderError], retryable: bool
) -> None:
    error = status_error(
        status, {}, b'{"error": {"message": "nope"}}', provider="deepseek", model="deepseek-chat"
    )

    assert type(error) is kind
    assert error.retryable is retryable
    assert error.status == status
    assert str(error).startswith("deepseek/deepseek-chat: HTTP")
    assert "nope" in str(error)
    assert error.hint


def test_unknown_model_404_hint_names_the_model() -> None:
    error = status_error(
        404, {}, b'{"error": "model not found"}', provider="ollama", model="llama9"
    )

    assert "model not found" in str(error)
    assert error.hint is not None
    assert "'llama9'" in error.hint


def test_a_key_the_endpoint_quotes_back_is_masked_out_of_the_error() -> None:
    body = b'{"error": {"message": "Incorrect API key provided: sk-live-42ab. See docs."}}'

    error = status_error(401, {}, body, provider="p", model="m", api_key="sk-live-42ab")

    assert "Incorrect API key provided: ***. See docs." in str(error)
    assert "sk-live-42ab" not in str(error)


def test_retry_after_as_http_date_and_in_milliseconds() -> None:
    dated = status_error(
        429, {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, b"{}", provider="p", model="m"
    )
    millis = status_error(429, {"retry-after-ms": "1500"}, b"{}", provider="p", model="m")

    assert isinstance(dated, ProviderRateLimited)
    assert dated.retry_after == 0.0
    assert isinstance(millis, ProviderRateLimited)
    assert millis.retry_after == 1.5


async def test_connection_refused_is_retryable_unavailable(transport: SharedHttpTransport) -> None:
    provider = OpenAIChatProvider(
        "vllm",
        base_url="http://127.0.0.1:9/v1",
        api_key=None,
        transport=transport,
        requires_api_key=False,
    )

    with pytest.raises(ProviderUnavailable) as caught:
        await provider.complete(ask())

    assert caught.value.retryable
    assert caught.value.hint is not None
    assert "127.0.0.1:9" in caught.value.hint


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"[1, 2]", "not a JSON object"),
        (b'{"choices": []}', "no choices"),
        (b'{"choices": [{"index": 0}]}', "no message"),
        (b'{"choices": [{"message": {"content": 5}}]}', "not a string"),
    ],
)
def test_completion_of_the_wrong_shape_is_a_bad_response(raw: bytes, needle: str) -> None:
    with pytest.raises(ProviderBadResponse, match=needle):
        parse_completion(raw, provider="openai", model=MODEL)


def test_compatible_servers_quirks_are_absorbed() -> None:
    # DeepSeek: reasoning_content and prompt_cache_hit_tokens; Ollama: "stop" after tool calls.
    raw = (
        b'{"id": "x", "model": "deepseek-reasoner", "choices": [{"index": 0, "finish_reason":'
        b' "stop", "message": {"role": "assistant", "content": "", "reasoning_content": "hmm",'
        b' "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f",'
        b' "arguments": ""}}]}}], "usage": {"prompt_tokens": 10, "completion_tokens": 2,'
        b' "prompt_cache_hit_tokens": 6}}'
    )

    response = parse_completion(raw, provider="deepseek", model="deepseek-reasoner")

    assert response.finish_reason == "tool_calls"
    assert response.message.tool_calls == [ToolCall(id="c1", name="f", arguments={})]
    assert response.message.metadata == {"reasoning": "hmm"}
    assert response.usage == Usage(input_tokens=10, output_tokens=2, cached_tokens=6)


# --- the official SDK as oracle ---------------------------------------------------------------


async def test_sdk_and_provider_read_the_same_answers_alike(
    provider: OpenAIChatProvider, openai_fake: FakeOpenAI
) -> None:
    usage = FakeUsage(prompt_tokens=31, completion_tokens=9, cached_tokens=16, reasoning_tokens=4)
    calls = [
        FakeToolCall("get_weather", {"city": "Lima"}, id="call_1"),
        FakeToolCall("get_weather", {"city": "Quito"}, id="call_2"),
    ]
    replies = [TextReply("Hola, mundo.", usage=usage), ToolCallsReply(calls, usage=usage)]
    sdk = openai.AsyncOpenAI(base_url=openai_fake.base_url, api_key="sk-test", max_retries=0)
    async with sdk:
        for reply in replies:
            openai_fake.script(reply, reply, reply)
            ours = await provider.complete(ask())
            _, ours_streamed = await collect(provider, ask())
            theirs = await sdk.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "Say hello."}]
            )
            choice = theirs.choices[0]
            their_calls = [
                (c.id, c.function.name, c.function.arguments)
                for c in choice.message.tool_calls or []
                if c.type == "function"
            ]
            assert theirs.usage is not None
            assert theirs.usage.prompt_tokens_details is not None
            assert theirs.usage.completion_tokens_details is not None
            for response in (ours, ours_streamed):
                assert response.message.text == (choice.message.content or "")
                assert response.finish_reason == choice.finish_reason
                assert [
                    (c.id, c.name, json.dumps(c.arguments, separators=(",", ":")))
                    for c in response.message.tool_calls
                ] == their_calls
                assert response.usage == Usage(
                    input_tokens=theirs.usage.prompt_tokens,
                    output_tokens=theirs.usage.completion_tokens,
                    cached_tokens=theirs.usage.prompt_tokens_details.cached_tokens or 0,
                    reasoning_tokens=theirs.usage.completion_tokens_details.reasoning_tokens or 0,
                )
            assert ours.response_id != theirs.id  # each request is its own completion


# --- streams the fake does not produce -------------------------------------------------------


@pytest.fixture
async def sse_url() -> AsyncIterator[Callable[[bytes], Awaitable[str]]]:
    """Serves one event-stream body as given; returns the base URL."""
    servers: list[asyncio.Server] = []

    async def start(body: bytes) -> str:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Connection: close\r\n\r\n" + body
            )
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("body", "kind", "needle"),
    [
        (b"data: {not json\n\n", ProviderBadResponse, "not valid JSON"),
        (
            b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n',
            ProviderUnavailable,
            "overloaded",
        ),
        (
            b'data: {"choices": [{"index": 0, "delta": {"content": "hi"}}]}\n\n',
            ProviderUnavailable,
            "before [DONE]",
        ),
    ],
)
async def test_broken_event_streams_are_typed_errors(
    sse_url: Callable[[bytes], Awaitable[str]],
    transport: SharedHttpTransport,
    body: bytes,
    kind: type[ProviderError],
    needle: str,
) -> None:
    provider = OpenAIChatProvider(
        "vllm", base_url=await sse_url(body), api_key="k", transport=transport
    )

    with pytest.raises(kind) as caught:
        await collect(provider, ask())

    assert needle in str(caught.value)
    assert str(caught.value).startswith("vllm/gpt-4o-mini: ")


async def test_reasoning_and_fragmented_tool_calls_are_assembled(
    sse_url: Callable[[bytes], Awaitable[str]], transport: SharedHttpTransport
) -> None:
    chunks: list[dict[str, Any]] = [
        {"choices": [{"index": 0, "delta": {"reasoning_content": "Think. "}}]},
        {"choices": [{"index": 0, "delta": {"reasoning_content": "Done."}}]},
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {"index": 1, "id": "b", "function": {"name": "g", "arguments": '{"y"'}},
                            {"index": 0, "id": "a", "function": {"name": "f", "arguments": ""}},
                        ]
                    },
                }
            ]
        },
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {"index": 1, "function": {"arguments": ": 2}"}},
                            {"index": 0, "function": {"arguments": '{"x": 1}'}},
                        ]
                    },
                }
            ]
        },
        {
            "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
            "usage": {
                "prompt_tokens": 3,
                "completion_tokens": 4,
                "completion_tokens_details": {"reasoning_tokens": 2},
            },
        },
    ]
    body = b"".join(b"data: %s\n\n" % json.dumps(c).encode() for c in chunks)
    provider = OpenAIChatProvider(
        "deepseek",
        base_url=await sse_url(body + b"data: [DONE]\n\n"),
        api_key="k",
        transport=transport,
    )

    deltas, final = await collect(provider, ask())

    assert "".join(d.reasoning for d in deltas) == "Think. Done."
    assert final.message.metadata == {"reasoning": "Think. Done."}
    assert final.message.tool_calls == [
        ToolCall(id="a", name="f", arguments={"x": 1}),
        ToolCall(id="b", name="g", arguments={"y": 2}),
    ]
    assert final.usage == Usage(input_tokens=3, output_tokens=4, reasoning_tokens=2)


# --- connection reuse -------------------------------------------------------------------------


async def test_streams_read_to_done_leave_their_connection_to_the_next_call(
    transport: SharedHttpTransport,
) -> None:
    events = [
        {"id": "c1", "model": MODEL, "choices": [{"index": 0, "delta": {"content": "hi"}}]},
        {"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    sse = b"".join(b"data: %s\n\n" % json.dumps(e).encode() for e in events) + b"data: [DONE]\n\n"
    connections = 0
    delta_seen = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n" % (len(sse), sse)
                )
                await writer.drain()
                # The body's end comes only after [DONE] has reached the client, as it does
                # from a real server: the client must read on to see it.
                await delta_seen.wait()
                delta_seen.clear()
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    provider = OpenAIChatProvider(
        "vllm",
        base_url=f"http://127.0.0.1:{port}/v1",
        api_key=None,
        transport=transport,
        requires_api_key=False,
    )
    texts: list[str] = []
    try:
        for _ in range(3):
            async for item in provider.stream(ask()):
                if isinstance(item, ModelResponse):
                    texts.append(item.message.text)
                else:
                    delta_seen.set()
    finally:
        await transport.aclose()  # the server waits for its kept-alive connection to go
        server.close()
        await server.wait_closed()

    assert texts == ["hi"] * 3
    assert connections == 1


# --- the doc's examples -----------------------------------------------------------------------

DOC = Path(__file__).parent.parent.parent / "docs" / "providers" / "openai-compatible.md"


@pytest.mark.parametrize(
    ("index", "expected"),
    [
        (
            0,
            {
                "openai": "https://api.openai.com/v1",
                "kimi": "https://api.moonshot.cn/v1",
                "deepseek": "https://api.deepseek.com/v1",
                "ollama": "http://localhost:11434/v1",
            },
        ),
        (
            1,
            {
                "gpu-box": "http://10.0.0.5:8000/v1",
                "lmstudio": "http://localhost:1234/v1",
                "openrouter": "https://openrouter.ai/api/v1",
            },
        ),
    ],
)
def test_doc_yaml_examples_build_the_endpoints_they_describe(
    index: int, expected: dict[str, str], tmp_path: Path, transport: SharedHttpTransport
) -> None:
    example = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)[index]
    path = tmp_path / "config.yaml"
    path.write_text(example, encoding="utf-8")
    keys = {f"{n}_API_KEY": "k" for n in ("OPENAI", "KIMI", "DEEPSEEK", "OPENROUTER")}

    settings = load_settings(path, environ=keys)

    built = {
        name: OpenAIChatProvider.for_endpoint(
            name, transport=transport, api_key=config.api_key, base_url=config.base_url
        ).base_url
        for name, config in settings.models.providers.items()
    }
    assert built == expected


async def test_a_provider_made_without_a_transport_brings_its_own_and_closes_it(
    openai_fake: FakeOpenAI,
) -> None:
    openai_fake.script(TextReply("on its own"))
    provider = OpenAIChatProvider("openai", base_url=openai_fake.base_url, api_key="sk-test")

    answer = await provider.complete(
        ModelRequest(model="gpt-4o-mini", messages=[Message(role="user", content="hi")])
    )
    await provider.aclose()

    assert answer.message.text == "on its own"
