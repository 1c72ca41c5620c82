"""The scripted provider: turns played per conversation, expectations, streaming, scripted
failures, script files, and the built-in offline demo."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from promptline.core.errors import (
    InvalidInputError,
    ProviderRateLimited,
    ProviderRequestRejected,
    ProviderUnavailable,
)
from promptline.core.messages import ImagePart, Message, TextPart, ToolCall, Usage
from promptline.models.scripted import DEMO_SCRIPT, Script, ScriptedProvider, load_scripts_dir
from promptline.models.types import ModelRequest, ModelResponse, StreamDelta, ToolSpec

WEATHER = [
    {
        "expect": "weather",
        "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}],
        "usage": {"input_tokens": 12, "output_tokens": 4},
    },
    {"expect": {"regex": r"^\d+C$"}, "reply": "It is warm in Paris.", "stream_chunks": 5},
]


def provider(**scripts: object) -> ScriptedProvider:
    return ScriptedProvider(
        scripts={name: Script.from_data(data, name=name) for name, data in scripts.items()}
    )


def user(text: str) -> Message:
    return Message(role="user", content=text)


async def collect(
    p: ScriptedProvider, request: ModelRequest
) -> tuple[list[StreamDelta], ModelResponse]:
    items = [item async for item in p.stream(request)]
    final = items[-1]
    assert isinstance(final, ModelResponse)
    deltas = [d for d in items[:-1] if isinstance(d, StreamDelta)]
    assert len(deltas) == len(items) - 1
    return deltas, final


async def test_scripted_turns_follow_the_number_of_assistant_messages() -> None:
    p = provider(weather=WEATHER)
    first = await p.complete(ModelRequest("weather", [user("What is the weather?")]))
    call = first.message.tool_calls[0]
    history = [
        user("What is the weather?"),
        first.message,
        Message(role="tool", content="21C", tool_call_id=call.id),
    ]

    second = await p.complete(ModelRequest("weather", history))

    assert call.name == "get_weather"
    assert call.arguments == {"city": "Paris"}
    assert first.finish_reason == "tool_calls"
    assert first.usage == Usage(input_tokens=12, output_tokens=4)
    assert second.message.text == "It is warm in Paris."
    assert second.finish_reason == "stop"
    assert second.provider == "scripted"
    assert second.cost_usd == 0.0


async def test_scripted_replay_of_the_same_conversation_gets_the_same_turn() -> None:
    p = provider(weather=WEATHER)
    request = ModelRequest("weather", [user("weather please")])

    a, b = await p.complete(request), await p.complete(request)

    assert a.message.tool_calls == b.message.tool_calls


async def test_scripted_expect_mismatch_is_rejected_naming_the_turn() -> None:
    p = provider(weather=WEATHER)

    with pytest.raises(ProviderRequestRejected) as info:
        await p.complete(ModelRequest("weather", [user("tell me a joke")]))

    assert "turn 1" in info.value.message
    assert "'weather'" in info.value.message
    assert "scripted/weather" in info.value.message
    assert info.value.retryable is False
    assert info.value.hint


async def test_scripted_regex_expect_is_matched_against_the_last_tool_message() -> None:
    p = provider(weather=WEATHER)
    history = [
        user("weather"),
        Message(role="assistant", content="..."),
        Message(role="tool", content="warm"),
    ]

    with pytest.raises(ProviderRequestRejected, match=r"turn 2 .*matching"):
        await p.complete(ModelRequest("weather", history))


async def test_scripted_conversation_past_the_last_turn_is_a_clear_error() -> None:
    p = provider(once=[{"reply": "only once"}])
    history = [user("hi"), Message(role="assistant", content="only once"), user("again")]

    with pytest.raises(ProviderRequestRejected, match="has 1 turn") as info:
        await p.complete(ModelRequest("once", history))

    assert "add a turn" in (info.value.hint or "")


async def test_scripted_unknown_script_lists_the_scripts() -> None:
    p = provider(once=[{"reply": "x"}])

    with pytest.raises(ProviderRequestRejected) as info:
        await p.complete(ModelRequest("nope", [user("hi")]))

    assert info.value.status == 404
    assert "once" in (info.value.hint or "")


async def test_scripted_streamed_text_chunks_concatenate_to_the_final_text() -> None:
    p = provider(
        s=[{"reply": "Hello there, friend", "stream_chunks": ["Hel", "lo there", ", friend"]}]
    )

    deltas, final = await collect(p, ModelRequest("s", [user("hi")]))

    assert [d.text for d in deltas] == ["Hel", "lo there", ", friend"]
    assert "".join(d.text for d in deltas) == final.message.text
    assert final.ttft_ms is not None
    assert final.ttft_ms <= final.latency_ms
    assert final.usage.output_tokens > 0


async def test_scripted_stream_splits_words_by_default_and_by_size_when_told() -> None:
    words = provider(s=[{"reply": "one two  three"}])
    sized = provider(s=[{"reply": "abcdefg", "stream_chunks": 3}])

    word_deltas, _ = await collect(words, ModelRequest("s", [user("x")]))
    sized_deltas, _ = await collect(sized, ModelRequest("s", [user("x")]))

    assert [d.text for d in word_deltas] == ["one ", "two  ", "three"]
    assert [d.text for d in sized_deltas] == ["abc", "def", "g"]


async def test_scripted_stream_of_parallel_tool_calls_reassembles_to_the_final_calls() -> None:
    p = provider(
        t=[
            {
                "tool_calls": [
                    {"name": "a", "arguments": {"x": 1}},
                    {"name": "b", "arguments": '{"y": 2}'},
                ]
            }
        ]
    )

    deltas, final = await collect(p, ModelRequest("t", [user("go")]))

    pieces: dict[int, dict[str, str]] = {}
    for d in deltas:
        assert d.tool_call is not None
        slot = pieces.setdefault(d.tool_call.index, {"name": "", "arguments": ""})
        slot["name"] += d.tool_call.name or ""
        slot["arguments"] += d.tool_call.arguments
    assert [(s["name"], json.loads(s["arguments"])) for s in pieces.values()] == [
        (c.name, c.arguments) for c in final.message.tool_calls
    ]
    assert final.message.tool_calls[1].arguments == {"y": 2}
    assert final.ttft_ms is not None


async def test_scripted_errors_raise_the_typed_provider_error() -> None:
    p = provider(
        busy=[{"error": {"kind": "rate_limited", "retry_after": 7}}],
        down=[{"error": "unavailable"}],
    )

    with pytest.raises(ProviderRateLimited) as limited:
        await p.complete(ModelRequest("busy", [user("x")]))
    with pytest.raises(ProviderUnavailable) as down:
        await anext(aiter(p.stream(ModelRequest("down", [user("x")]))))

    assert limited.value.retry_after == 7
    assert limited.value.retryable
    assert down.value.retryable
    assert "scripted/down" in down.value.message


async def test_scripted_finish_reason_is_played_as_written() -> None:
    p = provider(cut=[{"reply": "trunc", "finish_reason": "length"}])

    response = await p.complete(ModelRequest("cut", [user("x")]))

    assert response.finish_reason == "length"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ([], "non-empty list"),
        ([{"reply": "x", "bogus": 1}], "unknown key"),
        ([{}], "needs a `reply`"),
        ([{"reply": "x", "stream_chunks": ["y"]}], "join to exactly"),
        ([{"tool_calls": [{"arguments": {}}]}], "needs a `name`"),
        ([{"tool_calls": [{"name": "t", "arguments": "{not json"}]}], "not JSON"),
        ([{"reply": "x", "expect": {"regex": "("}}], "not a valid pattern"),
        ([{"error": "exploded"}], "kind must be one of"),
        ([{"reply": "x", "usage": {"input_tokens": "many"}}], "`usage` takes"),
    ],
)
def test_scripted_bad_script_is_an_invalid_input_error_naming_the_turn(
    data: object, problem: str
) -> None:
    with pytest.raises(InvalidInputError, match=re.escape(problem)) as info:
        Script.from_data(data, name="broken")

    assert "script 'broken'" in info.value.message
    assert info.value.hint


def test_scripted_scripts_load_from_yaml_and_json_files_named_by_stem(tmp_path: Path) -> None:
    (tmp_path / "hello.yaml").write_text("turns:\n  - reply: Hi from YAML\n", encoding="utf-8")
    (tmp_path / "json_one.json").write_text(
        json.dumps([{"reply": "Hi from JSON"}]), encoding="utf-8"
    )
    (tmp_path / "notes.txt").write_text("ignored", encoding="utf-8")

    scripts = load_scripts_dir(tmp_path)

    assert sorted(scripts) == ["hello", "json_one"]
    assert scripts["hello"].turns[0].reply == "Hi from YAML"


def test_scripted_malformed_script_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[{", encoding="utf-8")

    with pytest.raises(InvalidInputError, match=r"bad\.json is not valid JSON"):
        Script.load(bad)


async def test_scripted_demo_answers_any_first_message() -> None:
    p = ScriptedProvider(scripts={"demo": DEMO_SCRIPT})

    response = await p.complete(ModelRequest("demo", [user("Who are you?")]))

    assert "offline demo" in response.message.text
    assert "Who are you?" in response.message.text
    assert response.finish_reason == "stop"


async def test_scripted_demo_calls_add_then_reports_the_result() -> None:
    p = ScriptedProvider(scripts={"demo": DEMO_SCRIPT})
    tools = [ToolSpec(name="add", parameters={"type": "object"})]
    ask = user("What is 19 plus 23?")

    first = await p.complete(ModelRequest("demo", [ask], tools=tools))
    call = first.message.tool_calls[0]
    history = [ask, first.message, Message(role="tool", content="42", tool_call_id=call.id)]
    second = await p.complete(ModelRequest("demo", history, tools=tools))

    assert call == ToolCall(id=call.id, name="add", arguments={"a": 19, "b": 23})
    assert second.message.text == "The result is 42."


async def test_scripted_demo_notices_images() -> None:
    p = ScriptedProvider(scripts={"demo": DEMO_SCRIPT})
    message = Message(
        role="user", content=[TextPart(text="look"), ImagePart(url="https://example.com/a.png")]
    )

    response = await p.complete(ModelRequest("demo", [message]))

    assert "1 image" in response.message.text
