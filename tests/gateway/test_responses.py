"""The Responses API (`POST /v1/responses`), driven by the official `openai` client against a
real server: the run's answer and its tool calls as output items, streamed as the SDK parses
them, conversations continued with previous_response_id or a session, durable retries, and
what it refuses."""

from __future__ import annotations

import shutil
import sys
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
import pytest_asyncio
from openai.types.responses import Response
from openai_support import Live, api_page_example, live_openai, run_command

from promptline.core.events import LlmCommandEvent
from promptline.events.content import expand_prompts
from promptline.events.protocols import EventFilter

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOOL_OUTPUT = "hi"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Live]:
    async with live_openai(tmp_path_factory.mktemp("responses")) as served:
        yield served


@pytest_asyncio.fixture(loop_scope="module")
async def client(live: Live) -> AsyncIterator[openai.AsyncOpenAI]:
    async with live.client() as made:
        yield made


def _run_id(response: Response) -> str:
    assert response.id.startswith("resp_")
    return response.id.removeprefix("resp_")


async def _sent_to_model(live: Live, run_id: str) -> list[list[tuple[str, str]]]:
    """The (role, text) of the messages of each model call of the run."""
    commands = await expand_prompts(
        live.reader.events,
        await live.reader.events.read_all(
            EventFilter(run_id=run_id, types=frozenset({"llm_command"}))
        ),
    )
    return [
        [(m.role, m.text) for m in c.data.messages]
        for c in commands
        if isinstance(c, LlmCommandEvent)
    ]


async def test_a_response_is_the_runs_answer_with_its_tool_calls_as_output_items(
    live: Live, client: openai.AsyncOpenAI
) -> None:
    raw = await client.responses.with_raw_response.create(model="agent/tooler", input="hello")
    response = raw.parse()

    assert (response.object, response.status, response.model) == (
        "response",
        "completed",
        "agent/tooler",
    )
    assert raw.headers["x-run-id"] == _run_id(response)
    call, result, answer = response.output
    assert call.type == "function_call"
    assert (call.name, call.arguments, call.status) == (
        "shell_execute",
        '{"command":"echo hi"}',
        "completed",
    )
    assert result.type == "function_call_output"
    assert result.call_id == call.call_id
    assert isinstance(result.output, str)
    assert result.output.startswith(TOOL_OUTPUT)
    assert answer.type == "message"
    assert response.output_text == "the tool said hi"
    record = await live.record(_run_id(response))
    assert (record.status, record.agent, record.tool_calls) == (
        "completed",
        "tooler",
        ["shell_execute"],
    )
    assert response.usage is not None
    assert response.usage.input_tokens == record.usage.input_tokens == 50
    assert response.usage.output_tokens == record.usage.output_tokens == 9
    assert response.usage.total_tokens == 59


async def test_a_streamed_response_sends_the_events_the_sdk_parses_as_the_run_goes(
    client: openai.AsyncOpenAI,
) -> None:
    stream = await client.responses.create(model="agent/tooler", input="hello", stream=True)
    events = [event async for event in stream]

    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        # the tool call, as the model made it, then its result
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.output_item.done",
        # the answer, as the model streamed it
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas == ["the tool ", "said hi"]
    completed = events[-1]
    assert completed.type == "response.completed"
    final = completed.response
    assert [item.type for item in final.output] == [
        "function_call",
        "function_call_output",
        "message",
    ]
    assert final.output_text == "the tool said hi"
    assert final.usage is not None
    assert final.usage.total_tokens == 59
    assert len({e.response.id for e in events if hasattr(e, "response")}) == 1


async def test_the_sdks_stream_helper_builds_the_final_response_from_the_events(
    client: openai.AsyncOpenAI,
) -> None:
    async with client.responses.stream(model="agent/tooler", input="hello") as stream:
        texts = [
            event.delta async for event in stream if event.type == "response.output_text.delta"
        ]
        final = await stream.get_final_response()

    assert "".join(texts) == final.output_text == "the tool said hi"
    assert [item.type for item in final.output] == [
        "function_call",
        "function_call_output",
        "message",
    ]


async def test_previous_response_id_continues_the_conversation_without_earlier_instructions(
    live: Live, client: openai.AsyncOpenAI
) -> None:
    first = await client.responses.create(
        model="agent/historian", input="My name is Ada.", instructions="Be brief."
    )
    second = await client.responses.create(
        model="agent/historian",
        input="What is my name?",
        previous_response_id=first.id,
        instructions="Answer in French.",
    )
    streamed = await client.responses.create(
        model="agent/historian", input="And now?", previous_response_id=second.id, stream=True
    )
    third = [e async for e in streamed][-1]

    assert first.output_text == "Nothing came before this."
    assert second.output_text == "One exchange came before this."
    assert second.previous_response_id == first.id
    assert second.instructions == "Answer in French."
    assert third.type == "response.completed"
    assert third.response.output_text == "Two exchanges came before this."
    [sent] = await _sent_to_model(live, _run_id(second))
    assert sent[1:] == [
        ("system", "Answer in French."),
        ("user", "My name is Ada."),
        ("assistant", "Nothing came before this."),
        ("user", "What is my name?"),
    ]
    record = await live.record(_run_id(second))
    assert record.session_id is None  # the history is kept with the run, in the log


async def test_a_response_of_another_tenant_cannot_be_continued(
    live: Live, client: openai.AsyncOpenAI
) -> None:
    first = await client.responses.create(model="agent/historian", input="hello")

    async with live.client(live.keys.carol) as carol:
        with pytest.raises(openai.NotFoundError) as info:
            await carol.responses.create(
                model="agent/historian", input="hi", previous_response_id=first.id
            )

    assert info.value.type == "invalid_request_error"
    assert first.id.removeprefix("resp_") in info.value.message


async def test_input_items_of_earlier_answers_are_the_history_of_the_run(
    live: Live, client: openai.AsyncOpenAI
) -> None:
    earlier = await client.responses.create(model="agent/tooler", input="hello")
    items: list[Any] = [
        {"role": "user", "content": "hello"},
        *[item.model_dump(exclude_none=True) for item in earlier.output],
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "How many answers came before?"}],
        },
    ]

    response = await client.responses.create(model="agent/historian", input=items)

    # The tool call and the answer are two assistant turns of the history.
    assert response.output_text == "Two exchanges came before this."
    [sent] = await _sent_to_model(live, _run_id(response))
    assert [role for role, _ in sent[1:]] == ["user", "assistant", "tool", "assistant", "user"]


async def test_a_retry_with_the_same_idempotency_key_gets_the_first_response(
    live: Live, client: openai.AsyncOpenAI
) -> None:
    key = {"Idempotency-Key": "responses-retry-1"}

    first = await client.responses.create(model="agent/tooler", input="hello", extra_headers=key)
    again = await client.responses.with_raw_response.create(
        model="agent/tooler", input="hello", extra_headers=key
    )
    streamed = await client.responses.create(
        model="agent/tooler", input="hello", extra_headers=key, stream=True
    )
    replayed = [e async for e in streamed]

    assert again.headers["idempotent-replayed"] == "true"
    assert again.parse().id == first.id
    assert again.parse().output_text == first.output_text
    final = replayed[-1]
    assert final.type == "response.completed"
    assert final.response.id == first.id
    assert [i.type for i in final.response.output] == [i.type for i in first.output]
    queued = await live.reader.events.read_all(
        EventFilter(run_id=_run_id(first), types=frozenset({"run_queued"}))
    )
    assert len(queued) == 1  # one run for the three requests


async def test_a_session_continues_across_responses_with_a_conversation_id_of_the_clients(
    live: Live, client: openai.AsyncOpenAI
) -> None:
    header = {"X-Session-Id": "responses-conversation-1"}

    first = await client.responses.with_raw_response.create(
        model="agent/historian", input="hello", extra_headers=header
    )
    second = await client.responses.create(
        model="agent/historian", input="and now?", extra_headers=header
    )
    # previous_response_id of a response in the session continues the session too.
    third = await client.responses.create(
        model="agent/historian", input="and now?", previous_response_id=second.id
    )

    assert first.headers["x-session-id"] == "responses-conversation-1"
    assert first.parse().output_text == "Nothing came before this."
    assert second.output_text == "One exchange came before this."
    assert third.output_text == "Two exchanges came before this."
    assert (await live.record(_run_id(third))).session_id == "responses-conversation-1"


async def test_a_run_that_fails_is_an_error_or_a_failed_response(
    client: openai.AsyncOpenAI,
) -> None:
    with pytest.raises(openai.InternalServerError) as plain:
        await client.responses.create(model="agent/broken", input="hello")
    stream = await client.responses.create(model="agent/broken", input="hello", stream=True)
    events = [e async for e in stream]

    assert plain.value.status_code == 502
    assert plain.value.type == "server_error"
    assert "the scripted model refuses" in plain.value.message
    failed = events[-1]
    assert failed.type == "response.failed"
    assert failed.response.status == "failed"
    assert failed.response.error is not None
    assert failed.response.error.code == "server_error"
    assert "the scripted model refuses" in failed.response.error.message


@pytest.mark.parametrize(
    ("options", "param", "said"),
    [
        (
            {"tools": [{"type": "function", "name": "weather", "parameters": {}}]},
            "tools",
            "tools in the request are not supported",
        ),
        ({"store": False}, "store", "store: false is not supported"),
        ({"temperature": 3}, "temperature", "less than or equal to 2"),
        (
            {"input": [{"type": "function_call", "call_id": "c1", "name": "x", "arguments": "{}"}]},
            "input.0",
            "has no function_call_output",
        ),
        (
            {"input": [{"role": "assistant", "content": "hi"}]},
            "input.0",
            "must be the user's new message",
        ),
        (
            {"instructions": "x", "extra_headers": {"X-Session-Id": "responses-refused-1"}},
            "instructions",
            "not supported for a run in a session",
        ),
        ({"tool_choice": "required"}, "tool_choice", "tool_choice other than"),
        ({"text": {"format": {"type": "json_object"}}}, "text.format", "is not supported"),
        ({"background": True}, "background", "background responses are not supported"),
        ({"conversation": "conv_1"}, "conversation", "conversation is not supported"),
        ({"previous_response_id": "resp_run_nope"}, None, "no run 'run_nope'"),
    ],
    ids=[
        "tools",
        "store",
        "temperature",
        "open-call",
        "last-item",
        "session-instructions",
        "tool-choice",
        "format",
        "background",
        "conversation",
        "gone",
    ],
)
async def test_what_the_responses_api_does_not_take_is_refused_naming_the_param(
    client: openai.AsyncOpenAI, options: dict[str, Any], param: str | None, said: str
) -> None:
    options = {"model": "agent/historian", "input": "hello", **options}

    with pytest.raises(openai.APIStatusError) as info:
        await client.responses.create(**options)

    assert info.value.status_code == (404 if param is None else 400)
    assert info.value.type == "invalid_request_error"
    assert info.value.param == param
    assert said in info.value.message


async def test_an_agent_thinking_aloud_answers_without_its_thinking(
    client: openai.AsyncOpenAI,
) -> None:
    plain = await client.responses.create(model="agent/thinker", input="hello")
    stream = await client.responses.create(model="agent/thinker", input="hello", stream=True)
    events = [e async for e in stream]

    assert plain.output_text == "Forty-two."
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas.strip() == "Forty-two."
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == "Forty-two."


async def test_a_response_still_in_progress_cannot_be_continued_yet(
    live: Live, client: openai.AsyncOpenAI
) -> None:
    async with client.responses.with_streaming_response.create(
        model="agent/waiter", input="wait", stream=True
    ) as streaming:
        run_id = streaming.headers["x-run-id"]
        events = (await streaming.parse()).__aiter__()
        assert (await events.__anext__()).type == "response.created"
        with pytest.raises(openai.ConflictError) as info:
            await client.responses.create(
                model="agent/waiter", input="next", previous_response_id=f"resp_{run_id}"
            )
        live.release.touch()
        rest = [e async for e in events]

    assert info.value.param == "previous_response_id"
    assert "still in progress" in info.value.message
    assert rest[-1].type == "response.completed"
    assert rest[-1].response.output_text == "released at last"


async def test_an_image_part_of_the_new_message_reaches_the_model(
    live: Live, client: openai.AsyncOpenAI
) -> None:
    pixel = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    message = {
        "role": "user",
        "content": [
            {"type": "input_text", "text": "What is this?"},
            {"type": "input_image", "image_url": pixel, "detail": "low"},
        ],
    }

    response = await client.responses.create(model="agent/historian", input=[message])

    commands = await expand_prompts(
        live.reader.events,
        await live.reader.events.read_all(
            EventFilter(run_id=_run_id(response), types=frozenset({"llm_command"}))
        ),
    )
    assert isinstance(commands[0], LlmCommandEvent)
    sent = commands[0].data.messages[-1]
    assert [part.type for part in sent.content] == ["text", "image"]
    assert sent.text == "What is this?"


async def test_the_api_page_python_example_works_as_written(live: Live) -> None:
    example = api_page_example("python", "client.responses.create")
    assert 'api_key="pl_key_..."' in example
    code = example.replace("localhost:8080", f"127.0.0.1:{live.port}").replace(
        "pl_key_...", live.keys.alice
    )

    out = await run_command(sys.executable, "-c", code)

    first, streamed, tokens = out.splitlines()
    assert first.startswith("Hello from PromptLine's offline demo model!")
    assert streamed
    assert tokens.endswith("tokens in the whole run")


@pytest.mark.skipif(not (shutil.which("bash") and shutil.which("curl")), reason="needs curl")
async def test_the_api_page_curl_examples_work_as_written(live: Live) -> None:
    example = api_page_example("sh", "/v1/responses")
    script = "set -euo pipefail\n" + example.replace("localhost:8080", f"127.0.0.1:{live.port}")

    out = await run_command("bash", "-c", script, env={"PROMPTLINE_API_KEY": live.keys.alice})

    assert '"object":"response"' in out
    assert "event: response.output_text.delta" in out
    assert "event: response.completed" in out
