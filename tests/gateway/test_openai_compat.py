"""The OpenAI-compatible API, driven by the official `openai` client (async and sync) against
a real server: completions streamed and not, usage, sessions, agents and models, errors, and
a client that leaves mid-stream."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
from gateway_support import Keys, live_gateway, make_keys

from promptline.app import App, build_app
from promptline.config import load_settings
from promptline.config.settings import Settings
from promptline.events.protocols import EventFilter
from promptline.runtime.records import RunRecord, load_run
from promptline.security.auth import Caller
from promptline.sessions.models import Principal

CONFIG = """\
models:
  default: scripted/demo
  providers:
    scripted:
      scripts_dir: "{scripts}"
tools:
  shell_execute: allow
agents:
  historian:
    model: scripted/memory
    description: Says how many times it answered in this conversation before.
  streamer:
    model: scripted/chunks
  tooler:
    model: scripted/tooler
  thinker:
    model: scripted/thinker
    use_chain_of_thought: true
  waiter:
    model: scripted/waiter
  broken:
    model: scripted/broken
agent:
  default_mode: act
  stream_enabled: true
  workspace: "{workspace}"
"""

# Turn n answers a conversation that already holds n assistant messages: the reply says how
# much history the model was given.
MEMORY = """\
- reply: "Nothing came before this."
- reply: "One exchange came before this."
- reply: "Two exchanges came before this."
"""

CHUNKS = """\
- reply: "one two three"
  stream_chunks: ["one ", "two ", "three"]
  usage: {input_tokens: 11, output_tokens: 7, cached_tokens: 2}
"""

TOOLER = """\
- tool_calls:
    - name: shell_execute
      arguments: {command: "echo hi"}
  usage: {input_tokens: 20, output_tokens: 5}
- reply: "the tool said hi"
  stream_chunks: ["the tool ", "said hi"]
  usage: {input_tokens: 30, output_tokens: 4}
"""

WAITER = """\
- tool_calls:
    - name: shell_execute
      arguments: {{command: "until [ -f '{release}' ]; do sleep 0.02; done; echo released"}}
- reply: "released at last"
"""

THINKER = """\
- reply: "<thinking>the user wants a number</thinking>Forty-two."
"""

BROKEN = """\
- error: {kind: rejected, message: "the scripted model refuses"}
"""

MESSAGE = [{"role": "user", "content": "hello"}]

API_PAGE = Path(__file__).parents[2] / "docs" / "api.md"


@dataclass
class Live:
    port: int
    base_url: str
    keys: Keys
    session_id: str  # alice's
    release: Path  # the waiter's run ends once this file exists
    reader: App  # a second app on the same database, to read what the server recorded

    def client(self, key: str | None = None) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=self.base_url, api_key=key or self.keys.alice, max_retries=0
        )

    def sync_client(self, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=key or self.keys.alice, max_retries=0)

    async def record(self, run_id: str) -> RunRecord:
        return await load_run(self.reader.events, run_id)


def _settings(tmp_path: Path) -> Settings:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    release = tmp_path / "release"
    for name, text in {
        "memory": MEMORY,
        "chunks": CHUNKS,
        "tooler": TOOLER,
        "waiter": WAITER.format(release=release),
        "broken": BROKEN,
        "thinker": THINKER,
    }.items():
        (scripts / f"{name}.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "workspace").mkdir()
    home = tmp_path / "home"
    home.mkdir()
    config = home / "config.yaml"
    config.write_text(
        CONFIG.format(scripts=scripts, workspace=tmp_path / "workspace"), encoding="utf-8"
    )
    return load_settings(config, environ={"PROMPTLINE_HOME": str(home)})


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    settings = _settings(tmp_path)
    async with build_app(settings) as app:
        keys = await make_keys(app)
        alice = Caller(user_id="alice", tenant_id="acme", role="user")
        session = await app.sessions.create(alice.principal, channel="http")
    async with live_gateway(settings) as info, build_app(settings) as reader:
        yield Live(
            port=info.port,
            base_url=f"http://127.0.0.1:{info.port}/v1",
            keys=keys,
            session_id=session.id,
            release=tmp_path / "release",
            reader=reader,
        )


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
    for key, session_id in [(live.keys.carol, live.session_id), (live.keys.alice, "ses_nope")]:
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


async def test_what_the_api_does_not_take_is_refused_with_422(live: Live) -> None:
    client = live.client()
    weather = {
        "type": "function",
        "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}},
    }
    with pytest.raises(openai.UnprocessableEntityError) as tools:
        await client.chat.completions.create(
            model="agent/assistant", messages=MESSAGE, tools=[weather]
        )
    with pytest.raises(openai.UnprocessableEntityError) as last:
        await client.chat.completions.create(
            model="agent/assistant", messages=[{"role": "assistant", "content": "hi"}]
        )
    with pytest.raises(openai.UnprocessableEntityError) as empty:
        await client.chat.completions.create(model="agent/assistant", messages=[])

    assert "tools in the request are not supported" in tools.value.message
    assert "the last message must be the user's new message" in last.value.message
    assert empty.value.code == "invalid_input"


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
    assert {"llm_delta", "tool_result", "message_sent", "run_completed"} <= kinds


async def _wait_for(live: Live, run_id: str, kind: str) -> None:
    """Until the log holds a ``kind`` event of the run (at most 30 s)."""
    wanted = EventFilter(run_id=run_id, types=frozenset({kind}))
    deadline = time.monotonic() + 30.0
    while not await live.reader.events.count(wanted):
        assert time.monotonic() < deadline, f"no {kind} event of {run_id} within 30 s"
        await asyncio.sleep(0.02)


def _api_page_examples(language: str) -> list[str]:
    """The ``language`` code blocks of the API page's OpenAI-compatible section."""
    page = API_PAGE.read_text(encoding="utf-8")
    section = page.split("\n## OpenAI-compatible API\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, re.DOTALL)


async def _run(*command: str, env: dict[str, str] | None = None) -> str:
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, f"stdout:\n{out.decode()}\nstderr:\n{err.decode()}"
    return out.decode()


async def test_the_api_page_python_example_works_as_written(live: Live) -> None:
    [example] = _api_page_examples("python")
    assert 'api_key="pl_key_..."' in example
    code = example.replace("localhost:8080", f"127.0.0.1:{live.port}").replace(
        "pl_key_...", live.keys.alice
    )

    out = await _run(sys.executable, "-c", code)

    assert out.startswith("Hello from PromptLine's offline demo model!")
    assert out.count("tokens in the whole run") == 2


@pytest.mark.skipif(not (shutil.which("bash") and shutil.which("curl")), reason="needs curl")
async def test_the_api_page_curl_examples_work_as_written(live: Live) -> None:
    [example] = _api_page_examples("sh")
    script = "set -euo pipefail\n" + example.replace("localhost:8080", f"127.0.0.1:{live.port}")

    out = await _run("bash", "-c", script, env={"PROMPTLINE_API_KEY": live.keys.alice})

    assert '"object":"chat.completion"' in out
    assert '"object":"chat.completion.chunk"' in out
    assert out.rstrip().endswith("data: [DONE]")


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
    from promptline.gateway.run_answer import RunAnswer

    settings = _settings(tmp_path)
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
    from promptline.gateway.run_answer import ThinkingFilter
    from promptline.runtime.prompt import split_reasoning

    visible = split_reasoning(text)[0] if "<thinking>" in text else text
    for cut in range(1, len(text)):
        for size in (1, 3, 7):  # the second part arrives in pieces of this size
            rest = [text[i : i + size] for i in range(cut, len(text), size)]
            pieces = ThinkingFilter()
            shown = "".join(pieces.feed(part) for part in [text[:cut], *rest]) + pieces.flush()
            assert shown.rstrip() == visible, (cut, size)
