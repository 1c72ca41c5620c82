"""The fake OpenAI server is faithful: the official `openai` SDK talks to it as to the real one."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionFunctionToolParam, ChatCompletionMessageFunctionToolCall

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

MODEL = "gpt-4o-mini"
HELLO: list[Any] = [{"role": "user", "content": "Say hello."}]
WEATHER_TOOL: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture
async def client(openai_fake: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official SDK pointed at the fake, without retries so each error surfaces once."""
    sdk = openai.AsyncOpenAI(base_url=openai_fake.base_url, api_key="test", max_retries=0)
    async with sdk:
        yield sdk


async def test_plain_text_reply_parses_with_all_fields(
    client: openai.AsyncOpenAI, openai_fake: FakeOpenAI
) -> None:
    openai_fake.script(
        TextReply(
            "Hello there!",
            usage=FakeUsage(
                prompt_tokens=20, completion_tokens=3, cached_tokens=8, reasoning_tokens=2
            ),
        )
    )
    completion = await client.chat.completions.create(model=MODEL, messages=HELLO)

    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.model == MODEL
    assert completion.created == openai_fake.created
    choice = completion.choices[0]
    assert (choice.index, choice.finish_reason) == (0, "stop")
    assert choice.message.role == "assistant"
    assert choice.message.content == "Hello there!"
    assert choice.message.tool_calls is None
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (20, 3, 23)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 8
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 2


async def test_request_is_recorded_as_the_sdk_sent_it(
    client: openai.AsyncOpenAI, openai_fake: FakeOpenAI
) -> None:
    openai_fake.script(TextReply("ok"))
    await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "Be brief."}, *HELLO],
        temperature=0.2,
        max_completion_tokens=50,
        tools=[WEATHER_TOOL],
        extra_headers={"X-Trace": "abc"},
    )

    (request,) = openai_fake.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == "Bearer test"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-trace"] == "abc"
    assert json.loads(request.raw_body) == request.body
    assert request.body == {
        "model": MODEL,
        "messages": [{"role": "system", "content": "Be brief."}, *HELLO],
        "temperature": 0.2,
        "max_completion_tokens": 50,
        "tools": [WEATHER_TOOL],
    }


async def test_streamed_text_joins_deltas_and_ends_with_usage_chunk(
    client: openai.AsyncOpenAI, openai_fake: FakeOpenAI
) -> None:
    openai_fake.script(
        TextReply("Hello, streaming world!", usage=FakeUsage(prompt_tokens=9, completion_tokens=4))
    )
    stream = await client.chat.completions.create(
        model=MODEL, messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]

    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) == 3  # word by word, so the stream really is incremental
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "Hello, streaming world!"
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    finishing = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishing[-1] == "stop"
    assert all(reason is None for reason in finishing[:-1])
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.total_tokens) == (9, 13)
    assert all(c.usage is None for c in chunks[:-1])
    assert openai_fake.requests[0].body["stream"] is True


async def test_streamed_text_without_include_usage_has_no_usage_chunk(
    client: openai.AsyncOpenAI, openai_fake: FakeOpenAI
) -> None:
    openai_fake.script(TextReply("Hi", chunks=["H", "i"]))
    stream = await client.chat.completions.create(model=MODEL, messages=HELLO, stream=True)
    chunks = [chunk async for chunk in stream]

    assert [c.choices[0].delta.content for c in chunks] == ["", "H", "i", None]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)


async def test_tool_call_reply_has_id_name_and_json_arguments(
    client: openai.AsyncOpenAI, openai_fake: FakeOpenAI
) -> None:
    openai_fake.script(
        ToolCallsReply([FakeToolCall("get_weather", {"city": "Paris"}, id="call_weather1")])
    )
    completion = await client.chat.completions.create(
        model=MODEL, messages=HELLO, tools=[WEATHER_TOOL]
    )

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert call.type == "function"
    assert call.id == "call_weather1"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}


async def test_parallel_tool_calls_keep_order_and_distinct_ids(
    client: openai.AsyncOpenAI, openai_fake: FakeOpenAI
) -> None:
    openai_fake.script(
        ToolCallsReply(
            [
                FakeToolCall("get_weather", {"city": "Paris"}),
                FakeToolCall("get_weather", {"city": "Tokyo"}),
                FakeToolCall("get_time", '{"tz": "UTC"}'),
            ]
        )
    )
    completion = await client.chat.completions.create(
        model=MODEL, messages=HELLO, tools=[WEATHER_TOOL], parallel_tool_calls=True
    )

    raw_calls = completion.choices[0].message.tool_calls or []
    calls = [c for c in raw_calls if isinstance(c, ChatCompletionMessageFunctionToolCall)]
    assert len(calls) == len(raw_calls) == 3
    assert [c.function.name for c in calls] == ["get_weather", "get_weather", "get_time"]
    assert [json.loads(c.function.arguments) for c in calls] == [
        {"city": "Paris"},
        {"city": "Tokyo"},
        {"tz": "UTC"},
    ]
    assert len({c.id for c in calls}) == 3
    assert all(c.id.startswith("call_") for c in calls)


async def test_streamed_parallel_tool_calls_assemble_from_fragments(
    client: openai.AsyncOpenAI, openai_fake: FakeOpenAI
) -> None:
    openai_fake.script(
        ToolCallsReply(
            [
                FakeToolCall("get_weather", {"city": "Paris"}, id="call_a"),
                FakeToolCall("get_weather", {"city": "Oslo"}, id="call_b"),
            ]
        )
    )
    stream = await client.chat.completions.create(
        model=MODEL, messages=HELLO, tools=[WEATHER_TOOL], stream=True
    )
    calls: dict[int, dict[str, str]] = {}
    fragments = 0
    finish_reason = None
    async for chunk in stream:
        choice = chunk.choices[0]
        finish_reason = choice.finish_reason or finish_reason
        for delta in choice.delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            if delta.function is not None:
                call["name"] += delta.function.name or ""
                call["arguments"] += delta.function.arguments or ""
                fragments += bool(delta.function.arguments)

    assert finish_reason == "tool_calls"
    assert fragments > len(calls)  # arguments really arrive split
    assert [calls[0]["id"], calls[1]["id"]] == ["call_a", "call_b"]
    assert [json.loads(calls[i]["arguments"]) for i in (0, 1)] == [
        {"city": "Paris"},
        {"city": "Oslo"},
    ]


async def test_image_part_in_request_is_accepted_and_recorded(
    client: openai.AsyncOpenAI, openai_fake: FakeOpenAI
) -> None:
    image_url = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()
    messages: list[Any] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": image_url, "detail": "low"}},
            ],
        }
    ]
    openai_fake.script(TextReply("A tiny PNG."))
    completion = await client.chat.completions.create(model=MODEL, messages=messages)

    assert completion.choices[0].message.content == "A tiny PNG."
    sent = openai_fake.requests[0].body["messages"][0]["content"][1]
    assert sent == {"type": "image_url", "image_url": {"url": image_url, "detail": "low"}}


async def test_models_list_parses(client: openai.AsyncOpenAI, openai_fake: FakeOpenAI) -> None:
    page = await client.models.list()

    assert [model.id for model in page.data] == list(openai_fake.models)
    assert all(model.owned_by == "openai" for model in page.data)
    assert openai_fake.requests[0].path == "/v1/models"


async def test_rate_limit_raises_rate_limit_error_with_retry_after(
    client: openai.AsyncOpenAI, openai_fake: FakeOpenAI
) -> None:
    openai_fake.script(RateLimited(retry_after=7))
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model=MODEL, messages=HELLO)

    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.request_id is not None
    assert caught.value.request_id.startswith("req_")


async def test_server_error_raises_internal_server_error_with_message(
    client: openai.AsyncOpenAI, openai_fake: FakeOpenAI
) -> None:
    openai_fake.script(ServerError(message="upstream exploded"))
    with pytest.raises(openai.InternalServerError) as caught:
        await client.chat.completions.create(model=MODEL, messages=HELLO)

    assert caught.value.status_code == 500
    assert caught.value.type == "server_error"
    assert "upstream exploded" in caught.value.message


async def test_scripted_invalid_request_raises_bad_request_error(
    client: openai.AsyncOpenAI, openai_fake: FakeOpenAI
) -> None:
    openai_fake.script(
        InvalidRequest("max_tokens is too large", param="max_tokens", code="invalid_value")
    )
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model=MODEL, messages=HELLO)

    assert caught.value.status_code == 400
    assert (caught.value.param, caught.value.code) == ("max_tokens", "invalid_value")
    assert caught.value.type == "invalid_request_error"


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([], "messages"),
        ([{"role": "robot", "content": "beep"}], "messages[0].role"),
        ([{"role": "tool", "content": "42"}], "messages[0].tool_call_id"),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}],
            "messages[0].content[0].image_url.url",
        ),
        ([{"role": "user", "content": [{"type": "video"}]}], "messages[0].content[0].type"),
    ],
)
async def test_malformed_request_is_rejected_with_400_without_using_the_script(
    client: openai.AsyncOpenAI, openai_fake: FakeOpenAI, messages: list[Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model=MODEL, messages=messages)

    assert caught.value.param == param
    assert caught.value.type == "invalid_request_error"
    assert len(openai_fake.requests) == 1


async def test_body_that_is_not_json_gets_400(openai_fake: FakeOpenAI) -> None:
    async with httpx.AsyncClient(base_url=openai_fake.base_url) as http:
        response = await http.post(
            "/chat/completions", content=b"{nope", headers={"content-type": "application/json"}
        )

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert openai_fake.requests[0].raw_body == b"{nope"


async def test_unknown_path_gets_openai_style_404(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await client.post("/embeddings-v9", cast_to=object, body={})

    assert "Invalid URL" in caught.value.message


async def test_hang_raises_timeout_and_request_was_recorded(
    client: openai.AsyncOpenAI, openai_fake: FakeOpenAI
) -> None:
    openai_fake.script(Hang())
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model=MODEL, messages=HELLO, timeout=0.3)

    (request,) = await asyncio.to_thread(openai_fake.wait_for_requests, 1)
    assert request.body["messages"] == HELLO


async def test_server_answers_again_after_a_hang(
    client: openai.AsyncOpenAI, openai_fake: FakeOpenAI
) -> None:
    openai_fake.script(Hang(), TextReply("back"))
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model=MODEL, messages=HELLO, timeout=0.3)
    completion = await client.chat.completions.create(model=MODEL, messages=HELLO)

    assert completion.choices[0].message.content == "back"


async def test_stream_cut_midway_raises_after_partial_content(
    client: openai.AsyncOpenAI, openai_fake: FakeOpenAI
) -> None:
    openai_fake.script(CutStream(TextReply("one two three four five"), after_events=3))
    received: list[str] = []
    stream = await client.chat.completions.create(model=MODEL, messages=HELLO, stream=True)

    async def drain() -> None:
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")

    with pytest.raises(openai.APIConnectionError):
        await drain()

    assert "".join(received) == "one two"  # the role chunk plus two words came through


async def test_plain_response_cut_midway_raises_connection_error(
    client: openai.AsyncOpenAI, openai_fake: FakeOpenAI
) -> None:
    openai_fake.script(CutStream(TextReply("never complete")))
    with pytest.raises(openai.APIConnectionError):
        await client.chat.completions.create(model=MODEL, messages=HELLO)


async def test_malformed_json_response_raises_decode_error(
    client: openai.AsyncOpenAI, openai_fake: FakeOpenAI
) -> None:
    openai_fake.script(MalformedBody())
    # The SDK does not wrap this in an openai error: a provider must catch ValueError itself.
    with pytest.raises(json.JSONDecodeError):
        await client.chat.completions.create(model=MODEL, messages=HELLO)


async def test_script_is_consumed_in_order(
    client: openai.AsyncOpenAI, openai_fake: FakeOpenAI
) -> None:
    openai_fake.script(RateLimited(), TextReply("first"), TextReply("second"))
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model=MODEL, messages=HELLO)
    first = await client.chat.completions.create(model=MODEL, messages=HELLO)
    second = await client.chat.completions.create(model=MODEL, messages=HELLO)

    assert [first.choices[0].message.content, second.choices[0].message.content] == [
        "first",
        "second",
    ]
    assert openai_fake.pending == 0
    assert len(openai_fake.requests) == 3


async def test_empty_script_answers_500_and_counts_a_miss(
    client: openai.AsyncOpenAI, openai_fake: FakeOpenAI
) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        await client.chat.completions.create(model=MODEL, messages=HELLO)

    assert "no scripted reply" in caught.value.message
    assert openai_fake.misses == 1
    openai_fake.reset()  # so the fixture's own miss check does not fail this test
