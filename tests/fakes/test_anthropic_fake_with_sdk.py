"""The fake Anthropic server is faithful: the official `anthropic` SDK talks to it as to the real
one."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import httpx2
import pytest
from anthropic.types import MessageParam, TextBlock, ThinkingBlock, ToolParam, ToolUseBlock

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

__all__ = ["anthropic_fake", "anthropic_fake_server"]  # fixtures, imported for pytest

MODEL = "claude-sonnet-4-6"
HELLO: list[MessageParam] = [{"role": "user", "content": "Say hello."}]
WEATHER_TOOL: ToolParam = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture
async def client(anthropic_fake: FakeAnthropic) -> AsyncIterator[anthropic.AsyncAnthropic]:
    """The official SDK pointed at the fake, without retries so each error surfaces once."""
    sdk = anthropic.AsyncAnthropic(base_url=anthropic_fake.base_url, api_key="test", max_retries=0)
    async with sdk:
        yield sdk


async def test_plain_text_reply_parses_with_all_fields(
    client: anthropic.AsyncAnthropic, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script(
        TextReply(
            "Hello there!",
            usage=FakeUsage(input_tokens=20, output_tokens=3, cache_read_input_tokens=8),
        )
    )
    message = await client.messages.create(model=MODEL, max_tokens=100, messages=HELLO)

    assert message.id.startswith("msg_")
    assert (message.type, message.role, message.model) == ("message", "assistant", MODEL)
    assert message.stop_reason == "end_turn"
    (block,) = message.content
    assert isinstance(block, TextBlock)
    assert block.text == "Hello there!"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (20, 3)
    assert message.usage.cache_read_input_tokens == 8


async def test_request_is_recorded_as_the_sdk_sent_it(
    client: anthropic.AsyncAnthropic, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script(TextReply("ok"))
    await client.messages.create(
        model=MODEL,
        max_tokens=50,
        system="Be brief.",
        messages=HELLO,
        stop_sequences=["END"],
        tools=[WEATHER_TOOL],
    )

    (request,) = anthropic_fake.requests
    assert (request.method, request.path) == ("POST", "/v1/messages")
    assert request.headers["authorization"] == "Bearer test"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", request.headers["anthropic-version"])
    assert json.loads(request.raw_body) == request.body
    assert request.body == {
        "model": MODEL,
        "max_tokens": 50,
        "system": "Be brief.",
        "messages": HELLO,
        "stop_sequences": ["END"],
        "tools": [WEATHER_TOOL],
    }


async def test_streamed_text_through_the_sdk_stream_helper_joins_to_the_text(
    client: anthropic.AsyncAnthropic, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script(
        TextReply("Hello, streaming world!", usage=FakeUsage(input_tokens=9, output_tokens=4))
    )
    async with client.messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream:
        pieces = [text async for text in stream.text_stream]
        final = await stream.get_final_message()

    assert pieces == ["Hello,", " streaming", " world!"]  # really incremental
    assert isinstance(final.content[0], TextBlock)
    assert final.content[0].text == "Hello, streaming world!"
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (9, 4)
    assert anthropic_fake.requests[0].body["stream"] is True


async def test_raw_stream_events_come_in_protocol_order(
    client: anthropic.AsyncAnthropic, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script(TextReply("Hi", chunks=["H", "i"]))
    stream = await client.messages.create(model=MODEL, max_tokens=10, messages=HELLO, stream=True)
    kinds = [event.type async for event in stream]

    assert kinds == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]  # the ping between them is skipped by the SDK, as it should be


async def test_tool_use_reply_has_id_name_and_object_input(
    client: anthropic.AsyncAnthropic, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script(
        ToolUseReply(
            [FakeToolUse("get_weather", {"city": "Paris"}, id="toolu_weather1")],
            text="Let me check.",
        )
    )
    message = await client.messages.create(
        model=MODEL, max_tokens=100, messages=HELLO, tools=[WEATHER_TOOL]
    )

    assert message.stop_reason == "tool_use"
    text, call = message.content
    assert isinstance(text, TextBlock)
    assert text.text == "Let me check."
    assert isinstance(call, ToolUseBlock)
    assert (call.id, call.name, call.input) == ("toolu_weather1", "get_weather", {"city": "Paris"})


async def test_streamed_parallel_tool_uses_assemble_from_json_fragments(
    client: anthropic.AsyncAnthropic, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script(
        ToolUseReply(
            [
                FakeToolUse("get_weather", {"city": "Paris"}),
                FakeToolUse("get_weather", {"city": "Oslo"}),
            ]
        )
    )
    async with client.messages.stream(
        model=MODEL, max_tokens=100, messages=HELLO, tools=[WEATHER_TOOL]
    ) as stream:
        fragments = [
            event
            async for event in stream
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta"
        ]
        final = await stream.get_final_message()

    calls = [block for block in final.content if isinstance(block, ToolUseBlock)]
    assert [call.input for call in calls] == [{"city": "Paris"}, {"city": "Oslo"}]
    assert len({call.id for call in calls}) == 2
    assert all(call.id.startswith("toolu_") for call in calls)
    assert len(fragments) > len(calls)  # input really arrives split
    assert final.stop_reason == "tool_use"


async def test_thinking_block_streams_with_its_signature(
    client: anthropic.AsyncAnthropic, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script(TextReply("42", thinking="Six times seven.", usage=FakeUsage()))
    async with client.messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream:
        final = await stream.get_final_message()

    thinking, text = final.content
    assert isinstance(thinking, ThinkingBlock)
    assert thinking.thinking == "Six times seven."
    assert thinking.signature
    assert isinstance(text, TextBlock)
    assert text.text == "42"


async def test_tool_result_turn_after_tool_use_is_accepted(
    client: anthropic.AsyncAnthropic, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script(TextReply("It is sunny."))
    messages: list[MessageParam] = [
        *HELLO,
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "P"}}
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}],
        },
    ]
    message = await client.messages.create(
        model=MODEL, max_tokens=100, messages=messages, tools=[WEATHER_TOOL]
    )

    assert isinstance(message.content[0], TextBlock)
    assert message.content[0].text == "It is sunny."


async def test_image_block_in_request_is_accepted_and_recorded(
    client: anthropic.AsyncAnthropic, anthropic_fake: FakeAnthropic
) -> None:
    data = base64.b64encode(b"\x89PNG fake").decode()
    image: Any = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": data},
    }
    messages: list[MessageParam] = [
        {"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]}
    ]
    anthropic_fake.script(TextReply("A tiny PNG."))
    await client.messages.create(model=MODEL, max_tokens=100, messages=messages)

    assert anthropic_fake.requests[0].body["messages"][0]["content"][1] == image


async def test_rate_limit_raises_rate_limit_error_with_retry_after(
    client: anthropic.AsyncAnthropic, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script(RateLimited(retry_after=7))
    with pytest.raises(anthropic.RateLimitError) as caught:
        await client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)

    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


async def test_overloaded_raises_the_sdk_overloaded_error(
    client: anthropic.AsyncAnthropic, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script(Overloaded())
    with pytest.raises(anthropic.OverloadedError) as caught:
        await client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)

    assert caught.value.status_code == 529


async def test_server_error_raises_internal_server_error(
    client: anthropic.AsyncAnthropic, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script(ServerError(message="upstream exploded"))
    with pytest.raises(anthropic.InternalServerError) as caught:
        await client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)

    assert caught.value.status_code == 500
    assert "upstream exploded" in caught.value.message


async def test_scripted_not_found_raises_not_found_error(
    client: anthropic.AsyncAnthropic, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script(InvalidRequest("model: claude-9", status=404, type="not_found_error"))
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.create(model="claude-9", max_tokens=10, messages=HELLO)


async def test_request_without_api_key_is_rejected_with_401(anthropic_fake: FakeAnthropic) -> None:
    async with httpx.AsyncClient(base_url=anthropic_fake.base_url) as http:
        response = await http.post(
            "/v1/messages",
            json={"model": MODEL, "max_tokens": 10, "messages": HELLO},
            headers={"anthropic-version": "2023-06-01"},
        )

    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(
    ("messages", "says"),
    [
        ([], "at least one message"),
        ([{"role": "system", "content": "x"}], "role"),
        ([{"role": "user", "content": [{"type": "text", "text": ""}]}], "non-empty"),
        (
            [
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}],
                },
                {"role": "user", "content": "and?"},
            ],
            "tool_result",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "text/plain", "data": ""},
                        }
                    ],
                }
            ],
            "media_type",
        ),
    ],
)
async def test_malformed_request_is_rejected_with_400_without_using_the_script(
    client: anthropic.AsyncAnthropic,
    anthropic_fake: FakeAnthropic,
    messages: list[Any],
    says: str,
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.create(model=MODEL, max_tokens=10, messages=messages)

    assert says in caught.value.message
    assert len(anthropic_fake.requests) == 1


async def test_hang_raises_timeout(
    client: anthropic.AsyncAnthropic, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script(Hang(), TextReply("back"))
    with pytest.raises(anthropic.APITimeoutError):
        await client.messages.create(model=MODEL, max_tokens=10, messages=HELLO, timeout=0.3)
    message = await client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)

    assert isinstance(message.content[0], TextBlock)
    assert message.content[0].text == "back"  # the server answers again after a hang


async def test_stream_cut_midway_raises_after_partial_text(
    client: anthropic.AsyncAnthropic, anthropic_fake: FakeAnthropic
) -> None:
    # message_start, content_block_start, ping, then two words
    anthropic_fake.script(CutStream(TextReply("one two three four"), after_events=5))
    received: list[str] = []

    async def drain() -> None:
        async with client.messages.stream(model=MODEL, max_tokens=10, messages=HELLO) as stream:
            async for text in stream.text_stream:
                received.append(text)

    # Mid-body the SDK lets its HTTP library's error through rather than wrapping it.
    with pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)):
        await drain()

    assert "".join(received) == "one two"


async def test_plain_response_cut_midway_raises_connection_error(
    client: anthropic.AsyncAnthropic, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script(CutStream(TextReply("never complete")))
    with pytest.raises(anthropic.APIConnectionError):
        await client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)


async def test_error_event_mid_stream_raises_the_sdk_error_of_its_type(
    client: anthropic.AsyncAnthropic, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script(StreamError(TextReply("one two three"), after_events=4))

    async def drain() -> None:
        async with client.messages.stream(model=MODEL, max_tokens=10, messages=HELLO) as stream:
            async for _ in stream:
                pass

    with pytest.raises(anthropic.APIStatusError) as caught:
        await drain()

    assert caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


async def test_malformed_json_response_fails_to_parse(
    client: anthropic.AsyncAnthropic, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script(MalformedBody())
    with pytest.raises(json.JSONDecodeError):
        await client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
