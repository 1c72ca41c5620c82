import pytest
from pydantic import ValidationError

from promptline.core.messages import ImagePart, Message, TextPart, ToolCall, ToolResult, Usage


def test_plain_string_content_becomes_one_text_part() -> None:
    msg = Message(role="user", content="hello")
    assert msg.content == [TextPart(text="hello")]
    assert msg.text == "hello"


def test_text_skips_images() -> None:
    msg = Message(
        role="user",
        content=[TextPart(text="a"), ImagePart(url="http://x/y.png"), TextPart(text="b")],
    )
    assert msg.text == "ab"


def test_message_round_trips_through_json() -> None:
    msg = Message(
        role="assistant",
        content="calling",
        tool_calls=[ToolCall(name="add", arguments={"a": 1, "b": 2})],
        metadata={"k": [1, 2]},
    )
    assert Message.model_validate_json(msg.model_dump_json()) == msg


def test_unknown_role_is_rejected() -> None:
    with pytest.raises(ValidationError):
        Message(role="robot", content="x")  # type: ignore[arg-type]


def test_usage_adds_field_by_field() -> None:
    total = Usage(input_tokens=3, output_tokens=4, cached_tokens=1) + Usage(
        input_tokens=10, output_tokens=1, reasoning_tokens=2
    )
    assert total == Usage(input_tokens=13, output_tokens=5, cached_tokens=1, reasoning_tokens=2)
    assert total.total_tokens == 18


def test_tool_result_text() -> None:
    result = ToolResult(call_id="c1", name="add", content="5")
    assert result.text == "5"
    assert not result.is_error
