"""The OpenAI-compatible API, driven by the official `openai` client (async and sync) against
a real server: completions streamed and not, usage, sessions, agents and models, errors, and
a client that leaves mid-stream."""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai_support import MESSAGE, Live, api_page_example, live_openai, run_command, settings_in

from promptline.app import build_app
from promptline.events.protocols import EventFilter
from promptline.sessions.models import Principal


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    async with live_openai(tmp_path) as served:
        yield served


def _run_id(completion_id: str) -> str:
    assert completion_id.startswith("chatcmpl-")
    return completion_id.removeprefix("chatcmpl-")


async def test_models_lists_every_agent_and_every_configured_model(live: Live) -> None:
    page = await live.client().models.list()

    ids = [model.id for model in page.data]
    assert {"agent/assistant", "agent/historian", "agent/streamer"} <= set(ids)
    assert {"scripted/demo", "scripted/memory", "scripted/chunks"} <= set(ids)
    assert all(model.object == "model" and model.created > 0 for model in page.data)
    assert {m.owned_by for m in page.data if m.id.startswith("agent/")} == {"promptline"}


async def test_a_completion_is_the_runs_answer_with_the_runs_usage(live: Live) -> None:
    def call() -> tuple[object, dict[str, str]]:
        with live.sync_client() as client:
            raw = client.chat.completions.with_raw_response.create(
                model="agent/streamer", messages=MESSAGE
            )
            return raw.parse(), dict(raw.headers)

    completion, headers = await asyncio.to_thread(call)

    assert isinstance(completion, openai.types.chat.ChatCompletion)
    [choice] = completion.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == "one two three"
    assert choice.finish_reason == "stop"
    run_id = _run_id(completion.id)
    assert headers["x-run-id"] == run_id
    assert "x-session-id" not in headers
    record = await live.record(run_id)
    assert record.status == "completed"
    assert record.agent == "streamer"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == record.usage.input_tokens == 11
    assert completion.usage.completion_tokens == record.usage.output_tokens == 7
    assert completion.usage.total_tokens == 18
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 2


async def test_a_provider_model_runs_the_default_agent_with_that_model(live: Live) -> None:
    completion = await live.client().chat.completions.create(
        model="scripted/demo", messages=[{"role": "user", "content": "ping"}]
    )

    assert completion.choices[0].message.content is not None
    assert completion.choices[0].message.content.startswith("Hello from PromptLine's offline")
    assert completion.model == "scripted/demo"
    record = await live.record(_run_id(completion.id))
    assert record.agent == "assistant"
    assert record.model == "scripted/demo"


async def test_a_stream_sends_the_answer_as_it_is_produced_then_the_finish_reason(
    live: Live,
) -> None:
    stream = await live.client().chat.completions.create(
        model="agent/streamer", messages=MESSAGE, stream=True
    )
    chunks = [chunk async for chunk in stream]

    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    texts = [c.choices[0].delta.content for c in chunks[1:-1]]
    assert texts == ["one ", "two ", "three"]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert all(c.usage is None for c in chunks)


async def test_include_usage_ends_the_stream_with_the_runs_usage(live: Live) -> None:
    stream = await live.client().chat.completions.create(
        model="agent/tooler",
        messages=MESSAGE,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-2].choices[0].finish_reason == "stop"
    record = await live.record(_run_id(usage_chunk.id))
    assert record.model_calls == 2  # the tool round and the answer
    assert usage_chunk.usage.prompt_tokens == record.usage.input_tokens == 50
    assert usage_chunk.usage.completion_tokens == record.usage.output_tokens == 9
    assert usage_chunk.usage.total_tokens == record.usage.total_tokens


async def test_the_tool_round_is_not_streamed_only_the_answer_is(live: Live) -> None:
    stream = await live.client().chat.completions.create(
        model="agent/tooler", messages=MESSAGE, stream=True
    )
    texts = [c.choices[0].delta.content async for c in stream if c.choices]

    assert "".join(t or "" for t in texts) == "the tool said hi"
    assert [t for t in texts if t] == ["the tool ", "said hi"]


async def test_an_agent_thinking_aloud_streams_its_answer_without_the_thinking(
    live: Live,
) -> None:
    stream = await live.client().chat.completions.create(
        model="agent/thinker", messages=MESSAGE, stream=True
    )
    texts = [c.choices[0].delta.content async for c in stream if c.choices]

    assert "".join(t or "" for t in texts) == "Forty-two."


async def test_earlier_messages_are_the_history_of_a_run_without_a_session(live: Live) -> None:
    client = live.client()
    alone = await client.chat.completions.create(model="agent/historian", messages=MESSAGE)
    with_history = await client.chat.completions.create(
        model="agent/historian",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "My name is Ada."},
            {"role": "assistant", "content": "Hello Ada."},
            {"role": "user", "content": [{"type": "text", "text": "What is my name?"}]},
        ],
    )

    assert alone.choices[0].message.content == "Nothing came before this."
    assert with_history.choices[0].message.content == "One exchange came before this."


async def test_x_session_id_continues_the_session_adding_only_the_new_message(
    live: Live,
) -> None:
    client = live.client()
    header = {"X-Session-Id": live.session_id}

    first = await client.chat.completions.with_raw_response.create(
        model="agent/historian", messages=MESSAGE, extra_headers=header
    )
    second = await client.chat.completions.create(
        model="agent/historian",
        messages=[
            {"role": "user", "content": "ignored: the session is the history"},
            {"role": "assistant", "content": "ignored too"},
            {"role": "user", "content": "and now?"},
        ],
        extra_headers=header,
    )

    assert first.headers["x-session-id"] == live.session_id
    assert first.parse().choices[0].message.content == "Nothing came before this."
    assert second.choices[0].message.content == "One exchange came before this."
    session = await live.reader.sessions.get(live.session_id, Principal(user_id="op", admin=True))
    assert [(m.role, m.text) for m in session.history] == [
        ("user", "hello"),
        ("assistant", "Nothing came before this."),
        ("user", "and now?"),
        ("assistant", "One exchange came before this."),
    ]


async def test_a_stream_continues_a_session_too(live: Live) -> None:
    async with live.client().chat.completions.with_streaming_response.create(
        model="agent/historian",
        messages=MESSAGE,
        stream=True,
        extra_headers={"X-Session-Id": live.session_id},
    ) as response:
        assert response.headers["x-session-id"] == live.session_id
        text = "".join(
            [c.choices[0].delta.content or "" async for c in await response.parse() if c.choices]
        )

    assert text == "Nothing came before this."


async def test_a_session_the_caller_may_not_see_is_not_found(live: Live) -> None:
    for key, session_id in [(live.keys.carol, live.session_id), (live.keys.bob, live.session_id)]:
        with pytest.raises(openai.NotFoundError) as info:
            await live.client(key).chat.completions.create(
                model="agent/historian",
                messages=MESSAGE,
                extra_headers={"X-Session-Id": session_id},
            )
        assert info.value.status_code == 404


async def test_an_unknown_model_or_agent_is_not_found_with_a_readable_message(
    live: Live,
) -> None:
    client = live.client()
    with pytest.raises(openai.NotFoundError) as model:
        await client.chat.completions.create(model="nobody/nothing", messages=MESSAGE)
    with pytest.raises(openai.NotFoundError) as agent:
        await client.chat.completions.create(model="agent/nobody", messages=MESSAGE)

    assert "no agent or model 'nobody/nothing'" in model.value.message
    assert model.value.code == "model_not_found"
    assert "no agent 'nobody'" in agent.value.message
    assert isinstance(agent.value.body, dict)
    assert "hint" in agent.value.body["details"]


async def test_a_missing_or_wrong_key_is_an_authentication_error(live: Live) -> None:
    with pytest.raises(openai.AuthenticationError) as missing:
        await live.client().chat.completions.create(
            model="agent/assistant",
            messages=MESSAGE,
            extra_headers={"Authorization": openai.Omit()},  # no key sent at all
        )
    with pytest.raises(openai.AuthenticationError):
        await live.client("pl_key_not-a-key").models.list()

    assert "needs an API key" in missing.value.message


async def test_what_the_api_does_not_take_is_refused_with_400_naming_the_param(
    live: Live,
) -> None:
    client = live.client()
    weather = {
        "type": "function",
        "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}},
    }
    with pytest.raises(openai.BadRequestError) as tools:
        await client.chat.completions.create(
            model="agent/assistant", messages=MESSAGE, tools=[weather]
        )
    with pytest.raises(openai.BadRequestError) as last:
        await client.chat.completions.create(
            model="agent/assistant", messages=[{"role": "assistant", "content": "hi"}]
        )
    with pytest.raises(openai.BadRequestError) as empty:
        await client.chat.completions.create(model="agent/assistant", messages=[])
    with pytest.raises(openai.BadRequestError) as hot:
        await client.chat.completions.create(
            model="agent/assistant", messages=MESSAGE, temperature=5
        )

    assert "tools in the request are not supported" in tools.value.message
    assert (tools.value.type, tools.value.param) == ("invalid_request_error", "tools")
    assert "the last message must be the user's new message" in last.value.message
    assert last.value.param == "messages.0.role"
    assert (empty.value.param, empty.value.code) == ("messages", "invalid_input")
    assert (hot.value.param, hot.value.type) == ("temperature", "invalid_request_error")
    assert "less than or equal to 2" in hot.value.message


async def test_errors_come_in_openais_shape_and_promptline_routes_keep_theirs(
    live: Live,
) -> None:
    with pytest.raises(openai.AuthenticationError) as bad_key:
        await live.client("pl_key_not-a-key").chat.completions.create(
            model="agent/assistant", messages=MESSAGE
        )
    with pytest.raises(openai.NotFoundError) as unknown:
        await live.client().chat.completions.create(model="nobody/nothing", messages=MESSAGE)
    async with httpx.AsyncClient(base_url=live.base_url) as http:
        sessions = await http.get("/sessions/ses_nope", headers={"X-API-Key": live.keys.alice})
        schema = await http.post(
            "/sessions", json={"channel": 5}, headers={"X-API-Key": live.keys.alice}
        )

    assert bad_key.value.status_code == 401
    assert (bad_key.value.type, bad_key.value.code) == ("invalid_request_error", "invalid_api_key")
    assert isinstance(bad_key.value.body, dict)
    assert {"message", "type", "param", "code"} <= set(bad_key.value.body)
    assert bad_key.value.body["param"] is None
    assert (unknown.value.type, unknown.value.code) == ("invalid_request_error", "model_not_found")
    # PromptLine's own routes answer in PromptLine's shape, invalid bodies with 422.
    assert sessions.status_code == 404
    assert set(sessions.json()["error"]) == {"code", "message", "details"}
    assert schema.status_code == 422
    assert schema.json()["error"]["code"] == "invalid_input"
    assert "type" not in schema.json()["error"]


async def test_models_retrieve_names_an_agent_or_a_model_and_nothing_else(live: Live) -> None:
    client = live.client()

    agent = await client.models.retrieve("agent/historian")
    model = await client.models.retrieve("scripted/memory")
    with pytest.raises(openai.NotFoundError) as nobody:
        await client.models.retrieve("agent/nobody")
    with pytest.raises(openai.NotFoundError) as nothing:
        await client.models.retrieve("nowhere/nothing")
    async with httpx.AsyncClient(base_url=live.base_url) as http:
        raw = await http.get("/models/agent/historian", headers={"X-API-Key": live.keys.alice})

    assert (agent.id, agent.object, agent.owned_by) == ("agent/historian", "model", "promptline")
    assert agent.model_extra is not None
    assert agent.model_extra["kind"] == "agent"
    assert "how many times it answered" in agent.model_extra["description"]
    assert (model.id, model.owned_by, model.created > 0) == ("scripted/memory", "scripted", True)
    assert raw.json()["id"] == "agent/historian"  # the slash need not be escaped
    for missing in (nobody.value, nothing.value):
        assert (missing.status_code, missing.code) == (404, "model_not_found")
        assert "GET /v1/models lists both" in str(missing.body)
    assert "no agent or model 'agent/nobody'" in nobody.value.message


async def test_a_conversation_id_of_the_clients_making_starts_a_session_that_continues(
    live: Live,
) -> None:
    header = {"X-Session-Id": "chat-2026-ada"}
    async with live.client() as alice:
        first = await alice.chat.completions.with_raw_response.create(
            model="agent/historian", messages=MESSAGE, extra_headers=header
        )
        second = await alice.chat.completions.create(
            model="agent/historian",
            messages=[{"role": "user", "content": "and now?"}],
            extra_headers=header,
        )
        with pytest.raises(openai.BadRequestError) as malformed:
            await alice.chat.completions.create(
                model="agent/historian", messages=MESSAGE, extra_headers={"X-Session-Id": "a b"}
            )
    # Another tenant's user, and another user of alice's tenant, may not use her id.
    for key in (live.keys.carol, live.keys.bob):
        async with live.client(key) as other:
            with pytest.raises(openai.NotFoundError):
                await other.chat.completions.create(
                    model="agent/historian", messages=MESSAGE, extra_headers=header
                )

    assert first.headers["x-session-id"] == "chat-2026-ada"
    assert first.parse().choices[0].message.content == "Nothing came before this."
    assert second.choices[0].message.content == "One exchange came before this."
    session = await live.reader.sessions.get("chat-2026-ada", Principal(user_id="op", admin=True))
    assert (session.tenant_id, session.user_id, session.message_count) == ("acme", "alice", 4)
    assert malformed.value.param == "X-Session-Id"


async def test_temperature_and_max_tokens_reach_the_model_calls(live: Live) -> None:
    completion = await live.client().chat.completions.create(
        model="agent/streamer", messages=MESSAGE, temperature=0.25, max_tokens=64
    )

    run_id = _run_id(completion.id)
    [command] = await live.reader.events.read_all(
        EventFilter(run_id=run_id, types=frozenset({"llm_command"}))
    )
    assert command.data.params["temperature"] == 0.25  # type: ignore[union-attr]
    assert command.data.params["max_tokens"] == 64  # type: ignore[union-attr]


async def test_a_failed_run_raises_in_the_client_and_is_not_retried(live: Live) -> None:
    client = openai.AsyncOpenAI(base_url=live.base_url, api_key=live.keys.alice)  # retries on
    with pytest.raises(openai.APIStatusError) as plain:
        await client.chat.completions.create(model="agent/broken", messages=MESSAGE)
    stream = await client.chat.completions.create(
        model="agent/broken", messages=MESSAGE, stream=True
    )
    with pytest.raises(openai.APIError) as streamed:
        async for _ in stream:
            pass

    assert plain.value.status_code == 502
    assert "the scripted model refuses" in plain.value.message
    assert "the scripted model refuses" in streamed.value.message
    started = await live.reader.events.read_all(
        EventFilter(types=frozenset({"run_started"}), user_id="alice")
    )
    assert len(started) == 2  # one run per request: the failure was not retried


async def test_a_client_leaving_mid_stream_leaves_the_run_to_finish(live: Live) -> None:
    async with live.client().chat.completions.with_streaming_response.create(
        model="agent/waiter", messages=MESSAGE, stream=True
    ) as response:
        run_id = response.headers["x-run-id"]
        stream = await response.parse()
        first = await stream.__anext__()
        assert first.choices[0].delta.role == "assistant"
        await _wait_for(live, run_id, "tool_command")
    # The client is gone; the run still waits in its tool call.
    assert (await live.record(run_id)).status == "running"

    live.release.touch()
    await _wait_for(live, run_id, "run_completed")

    record = await live.record(run_id)
    assert record.status == "completed"
    assert record.output == "released at last"
    assert record.model_calls == 2
    kinds = {e.type for e in await live.reader.events.read_all(EventFilter(run_id=run_id))}
    assert {"llm_result", "tool_result", "message_sent", "run_completed"} <= kinds


async def _wait_for(live: Live, run_id: str, kind: str) -> None:
    """Until the log holds a ``kind`` event of the run (at most 30 s)."""
    wanted = EventFilter(run_id=run_id, types=frozenset({kind}))
    deadline = time.monotonic() + 30.0
    while not await live.reader.events.count(wanted):
        assert time.monotonic() < deadline, f"no {kind} event of {run_id} within 30 s"
        await asyncio.sleep(0.02)


async def test_the_api_page_python_example_works_as_written(live: Live) -> None:
    example = api_page_example("python", "client.chat.completions.create")
    assert 'api_key="pl_key_..."' in example
    code = example.replace("localhost:8080", f"127.0.0.1:{live.port}").replace(
        "pl_key_...", live.keys.alice
    )

    out = await run_command(sys.executable, "-c", code)

    assert out.startswith("Hello from PromptLine's offline demo model!")
    assert out.count("tokens in the whole run") == 2


@pytest.mark.skipif(not (shutil.which("bash") and shutil.which("curl")), reason="needs curl")
async def test_the_api_page_curl_examples_work_as_written(live: Live) -> None:
    example = api_page_example("sh", "/v1/chat/completions")
    script = "set -euo pipefail\n" + example.replace("localhost:8080", f"127.0.0.1:{live.port}")

    out = await run_command("bash", "-c", script, env={"PROMPTLINE_API_KEY": live.keys.alice})

    assert '"object":"chat.completion"' in out
    assert '"object":"chat.completion.chunk"' in out
    assert out.rstrip().endswith("data: [DONE]")


INVALID = "invalid_request_error"


@pytest.mark.parametrize(
    ("status", "error", "answer"),
    [
        ("failed", ("provider_timeout", {}), (502, "server_error", "provider_timeout")),
        ("failed", ("capability_missing", {}), (400, INVALID, "capability_missing")),
        ("failed", ("budget_exceeded", {"scope": "user"}), (429, *["insufficient_quota"] * 2)),
        ("failed", ("budget_exceeded", {}), (400, INVALID, "budget_exceeded")),
        ("failed", ("run_limit", {}), (500, "server_error", "run_limit")),
        ("cancelled", None, (409, INVALID, "run_cancelled")),
        ("interrupted", None, (503, "server_error", "run_interrupted")),
    ],
)
def test_a_run_that_does_not_complete_answers_with_the_status_and_type_of_why(
    status: Any, error: tuple[str, dict[str, Any]] | None, answer: tuple[int, str, str]
) -> None:
    from promptline.core.events import ErrorInfo
    from promptline.gateway.routes.openai_compat import failure
    from promptline.runtime.run import RunResult

    info = None if error is None else ErrorInfo(code=error[0], message="why", details=error[1])
    result = RunResult(
        run_id="run_x", agent="assistant", session_id=None, status=status, error=info
    )

    code, body = failure(result)

    assert (code, body["error"]["type"], body["error"]["code"]) == answer
    assert body["error"]["param"] is None
    assert body["error"]["details"]["run_id"] == "run_x"


def test_the_listening_socket_says_tcp_so_asyncio_turns_nagle_off() -> None:
    # Accepted connections inherit the protocol; with 0 instead of TCP asyncio leaves Nagle's
    # algorithm on, and every response written in two parts waits for a delayed ACK (~40 ms).
    import socket

    from promptline.gateway.server import _listen

    sock = _listen("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


async def test_a_reader_that_falls_behind_the_bus_picks_up_from_the_log(tmp_path: Path) -> None:
    from promptline.core.events import (
        LlmDelta,
        LlmDeltaEvent,
        LlmResult,
        LlmResultEvent,
        RunCompleted,
        RunCompletedEvent,
    )
    from promptline.runtime.answer import RunAnswer

    settings = settings_in(tmp_path)
    settings = settings.model_copy(
        update={"events": settings.events.model_copy(update={"subscriber_queue": 2})}
    )
    envelope = {"stream": "run_x", "run_id": "run_x", "causation_id": "evt_call"}
    async with build_app(settings) as app:
        answer = RunAnswer(app.bus, "run_x", deltas=True)
        words = [f"w{i} " for i in range(8)]
        for i, word in enumerate(words):  # nobody reads meanwhile: the queue of 2 overflows
            await app.bus.publish(LlmDeltaEvent(**envelope, data=LlmDelta(index=i, text=word)))
        await app.bus.publish(
            LlmResultEvent(**envelope, data=LlmResult(model="m", finish_reason="length"))
        )
        await app.bus.publish(RunCompletedEvent(**envelope, data=RunCompleted()))

        texts = [text async for text in answer.pieces()]
        await answer.close()

    assert texts == words
    assert answer.ended
    assert answer.answer_streamed
    assert answer.finish_reason == "length"


@pytest.mark.parametrize(
    "text",
    [
        "<thinking>plan it</thinking>\n\nThe answer is 4.",
        "Sure. <thinking>a</thinking>Four <thinking>b</thinking>and more",
        "1 < 2 and <thinking>x < y</thinking> 3 > 2",
        "<thinking>never closed, all hidden",
        "Visible <thinking",
    ],
)
def test_thinking_is_taken_out_of_streamed_text_however_it_is_split(text: str) -> None:
    from promptline.runtime.answer import ThinkingFilter
    from promptline.runtime.prompt import split_reasoning

    visible = split_reasoning(text)[0] if "<thinking>" in text else text
    for cut in range(1, len(text)):
        for size in (1, 3, 7):  # the second part arrives in pieces of this size
            rest = [text[i : i + size] for i in range(cut, len(text), size)]
            pieces = ThinkingFilter()
            shown = "".join(pieces.feed(part) for part in [text[:cut], *rest]) + pieces.flush()
            assert shown.rstrip() == visible, (cut, size)
