"""The answer builders: the models they make equal validated ones, field for field."""

from __future__ import annotations

from typing import Any

import pytest

from promptline.core.events import LlmResult, LlmResultEvent, decode_event, encode_event
from promptline.core.messages import Message, TextPart, ToolCall, Usage
from promptline.models.types import assistant_message, token_usage


def _validated(text: str, calls: list[ToolCall], reasoning: str, like: Message) -> Message:
    return Message(
        id=like.id,
        created_at=like.created_at,
        role="assistant",
        content=[TextPart(text=text)] if text else [],
        tool_calls=calls,
        metadata={"reasoning": reasoning} if reasoning else {},
    )


@pytest.mark.parametrize(
    ("text", "calls", "reasoning"),
    [
        ("Hello!", [], ""),
        ("", [ToolCall(id="call_1", name="get_weather", arguments={"city": "Paris"})], ""),
        ("Let me check.", [ToolCall(name="a"), ToolCall(name="b")], "thinking..."),
        ("", [], ""),
    ],
)
def test_assistant_message_equals_the_validated_message(
    text: str, calls: list[ToolCall], reasoning: str
) -> None:
    built = assistant_message(text, calls, reasoning)
    expected = _validated(text, calls, reasoning, built)
    assert built == expected
    assert built.model_dump() == expected.model_dump()
    assert built.model_dump_json() == expected.model_dump_json()
    # Every field is present, in declaration order (repr and iteration depend on it).
    assert list(built.__dict__) == list(Message.model_fields)
    assert built.model_fields_set == {"role", "content", "tool_calls", "metadata"}
    assert built.id.startswith("msg_")
    assert built.created_at.tzinfo is not None
    assert built.text == text


def test_assistant_message_is_frozen_and_round_trips_through_an_event() -> None:
    built = assistant_message("Hi", [ToolCall(name="f", arguments={"x": [1, 2]})], "why")
    with pytest.raises(Exception, match="frozen"):
        built.role = "user"  # type: ignore[misc]
    event = LlmResultEvent(data=LlmResult(model="m", message=built, usage=token_usage(3, 4)))
    decoded: Any = decode_event(encode_event(event))
    assert decoded.data.message == built
    assert decoded.data.usage == Usage(input_tokens=3, output_tokens=4)


def test_assistant_messages_get_distinct_ids() -> None:
    assert assistant_message("a").id != assistant_message("a").id


def test_token_usage_equals_the_validated_usage() -> None:
    built = token_usage(10, 5, cached_tokens=2, reasoning_tokens=1)
    expected = Usage(input_tokens=10, output_tokens=5, cached_tokens=2, reasoning_tokens=1)
    assert built == expected
    assert built.model_dump() == expected.model_dump()
    assert built.model_fields_set == expected.model_fields_set
    assert list(built.__dict__) == list(Usage.model_fields)
    assert built.total_tokens == 15
    assert built + built == expected + expected
