"""The Python front door (`promptline.Agent`, `tool`, `connect`), against a fake
OpenAI-compatible server on 127.0.0.1: the quickstart verbatim, approvals, streaming,
conversations, failures, where a provider is found, and the configured installation."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import promptline
from fakes.openai_server import (
    FakeOpenAI,
    FakeToolCall,
    InvalidRequest,
    TextReply,
    ToolCallsReply,
    running_fake_openai,
)
from promptline import Agent, RunFailedError, Template, TextDelta, tool
from promptline.core.errors import ConfigError
from promptline.core.events import Event

QUICKSTART = Path(__file__).parents[1] / "docs" / "quickstart.md"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    """A fake OpenAI server, named by the variables the official SDK reads."""
    with running_fake_openai() as server:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        yield server


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", QUICKSTART.read_text(encoding="utf-8"), flags=re.S)


def run_block(index: int) -> str:
    """Run the quickstart's Python block ``index`` as written; what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks()[index], f"{QUICKSTART}#{index}", "exec"), {"__name__": "__main__"})
    return out.getvalue()


def sent(fake: FakeOpenAI, index: int = 0) -> dict[str, Any]:
    body: dict[str, Any] = fake.requests[index].body
    return body


# -- the quickstart, as written -------------------------------------------------------------


def test_the_quickstart_runs_as_written(fake: FakeOpenAI) -> None:
    fake.script(ToolCallsReply([FakeToolCall("add", {"a": 2, "b": 3})]), TextReply("5"))

    printed = run_block(0)

    assert printed == "5\n"
    first = sent(fake, 0)
    assert first["model"] == "gpt-4o-mini"
    assert first["messages"][0] == {"role": "system", "content": "Be brief."}
    assert [t["function"]["name"] for t in first["tools"]] == ["add"]
    assert sent(fake, 1)["messages"][-1]["role"] == "tool"


def test_the_async_streaming_and_conversation_example_runs(fake: FakeOpenAI) -> None:
    fake.script(TextReply("Hello Ada."), TextReply("Ada."), TextReply("Once upon a time."))

    printed = run_block(1)

    assert printed.startswith("Hello Ada. / Ada. / ")
    assert "Once upon a time." in printed
    second = sent(fake, 1)["messages"]
    assert [m["content"] for m in second if m["role"] != "system"] == [
        "My name is Ada.",
        "Hello Ada.",
        "What is my name?",
    ]


def test_the_failure_example_shows_the_error_and_the_record(fake: FakeOpenAI) -> None:
    fake.script(InvalidRequest("model not allowed"))

    printed = run_block(2)

    assert printed.splitlines()[0] == "provider_request_rejected failed"
    assert "model not allowed" in printed


def test_the_approval_example_asks_and_runs_the_approved_call(fake: FakeOpenAI) -> None:
    fake.script(
        ToolCallsReply([FakeToolCall("delete_note", {"name": "draft"})]), TextReply("Done.")
    )

    printed = run_block(3)

    assert printed == "delete_note wants {'name': 'draft'}\nDone.\n"
    assert sent(fake, 1)["messages"][-1]["content"] == "deleted draft"


@pytest.mark.parametrize("index", [4, 5, 6])
def test_the_configured_installation_examples_run_offline(index: int) -> None:
    printed = run_block(index)
    assert "offline demo model" in printed


# -- beyond the quickstart -------------------------------------------------------------------


@tool(destructive=True)
def wipe(path: str) -> str:
    """Wipe a file."""
    return f"wiped {path}"


async def test_a_call_at_ask_without_an_approver_is_refused_at_once_saying_what_to_do(
    fake: FakeOpenAI,
) -> None:
    fake.script(ToolCallsReply([FakeToolCall("wipe", {"path": "a.txt"})]), TextReply("Sorry."))

    async with Agent("openai/gpt-4o-mini", tools=[wipe]) as agent:
        result = await asyncio.wait_for(agent.run("wipe a.txt"), timeout=30)

    assert result.text == "Sorry."
    refusal = sent(fake, 1)["messages"][-1]["content"]
    assert "wipe needs an approval" in refusal
    assert "on_approval=" in refusal


async def test_an_async_approver_that_refuses_keeps_the_call_from_running(
    fake: FakeOpenAI,
) -> None:
    fake.script(ToolCallsReply([FakeToolCall("wipe", {"path": "b.txt"})]), TextReply("OK."))
    asked: list[str] = []

    async def refuse(request: Any) -> bool:
        asked.append(request.tool)
        return False

    async with Agent("openai/gpt-4o-mini", tools=[wipe], on_approval=refuse) as agent:
        await agent.run("wipe b.txt")

    assert asked == ["wipe"]
    assert "refused by on_approval" in sent(fake, 1)["messages"][-1]["content"]


async def test_stream_yields_the_text_as_it_comes_and_every_event_in_order(
    fake: FakeOpenAI,
) -> None:
    fake.script(
        ToolCallsReply([FakeToolCall("add", {"a": 1, "b": 2})]),
        TextReply("It is three.", chunks=["It ", "is ", "three."]),
    )

    @tool
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    items: list[TextDelta | Event] = []
    async with Agent("openai/gpt-4o-mini", tools=[add]) as agent:
        async for item in agent.stream("1+2?"):
            items.append(item)

    text = [i.text for i in items if isinstance(i, TextDelta)]
    kinds = [i.type for i in items if not isinstance(i, TextDelta)]
    assert text == ["It ", "is ", "three."]
    assert kinds.index("tool_command") < kinds.index("tool_result") < len(kinds) - 1
    assert kinds[-1] == "run_completed"
    assert kinds.count("llm_result") == 2


def test_run_sync_and_stream_sync_share_the_agents_own_loop(fake: FakeOpenAI) -> None:
    fake.script(TextReply("one"), TextReply("two", chunks=["t", "wo"]))

    with Agent("openai/gpt-4o-mini") as agent:
        first = agent.run_sync("1", session="s")
        pieces = [i.text for i in agent.stream_sync("2", session="s") if isinstance(i, TextDelta)]

    assert first.text == "one"
    assert pieces == ["t", "wo"]
    said = [m["content"] for m in sent(fake, 1)["messages"] if m["role"] != "system"]
    assert said == ["1", "one", "2"]


def test_a_failed_run_raises_with_its_record(fake: FakeOpenAI) -> None:
    fake.script(InvalidRequest("bad things", param="messages"))

    with Agent("openai/gpt-4o-mini") as agent, pytest.raises(RunFailedError) as failed:
        agent.run_sync("hi")

    error = failed.value
    assert error.details["error"] == "provider_request_rejected"
    assert error.run is not None
    assert (error.run.status, error.run.run_id) == ("failed", error.result.run_id)
    assert "bad things" in error.message
    assert isinstance(error, promptline.core.errors.PromptLineError)


def test_instructions_are_plain_text_unless_marked_as_a_template(fake: FakeOpenAI) -> None:
    fake.script(TextReply("a"), TextReply("b"))

    with Agent("openai/gpt-4o-mini", instructions="Answer in {{ JSON }} {% raw %}.") as agent:
        agent.run_sync("x")
    with Agent("openai/gpt-4o-mini", instructions=Template("You are {{ agent.name }}.")) as a:
        a.run_sync("y")

    assert sent(fake, 0)["messages"][0]["content"] == "Answer in {{ JSON }} {% raw %}."
    assert sent(fake, 1)["messages"][0]["content"] == "You are assistant."


def test_a_provider_in_the_homes_config_is_used_before_the_environment(
    fake: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / "config.yaml").write_text(
        "models:\n  providers:\n    local:\n      type: openai\n"
        f'      base_url: "{fake.base_url}"\n      api_key: from-config\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("PROMPTLINE_HOME", str(home))
    fake.script(TextReply("hi"))

    with Agent("local/some-model") as agent:
        assert agent.run_sync("hello").text == "hi"
    assert fake.requests[0].headers["authorization"] == "Bearer from-config"


def test_a_provider_found_nowhere_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    monkeypatch.delenv("MISTRAL_BASE_URL", raising=False)

    with Agent("mistral/small") as agent, pytest.raises(ConfigError) as refused:
        agent.run_sync("hi")

    assert "MISTRAL_API_KEY" in refused.value.message
    assert "models.providers.mistral" in (refused.value.hint or "")


def test_persist_keeps_the_runs_in_the_home_for_the_cli(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.script(TextReply("kept"))

    with Agent("openai/gpt-4o-mini", persist=True) as agent:
        run_id = agent.run_sync("remember").run_id

    listed = subprocess.run(
        [sys.executable, "-m", "promptline.cli.main", "runs", "show", run_id],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "kept" in listed.stdout


async def test_from_config_runs_a_configured_agent_with_its_prompt(
    fake: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / "config.yaml").write_text(
        f'models:\n  providers:\n    openai:\n      base_url: "{fake.base_url}"\n'
        "      api_key: sk-config\n      models: [gpt-4o-mini]\n"
        "agents:\n  helper:\n    model: openai/gpt-4o-mini\n    mode: act\n"
        '    system_prompt: "You are {{ agent.name }}."\n    tools: []\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("PROMPTLINE_HOME", str(home))
    fake.script(TextReply("configured"), TextReply("connected"))

    agent = Agent.from_config("helper")
    try:
        assert (await agent.run("hi")).text == "configured"
    finally:
        await agent.aclose()
    async with promptline.connect() as installation:
        assert (await installation.agent("helper").run("hi")).text == "connected"

    assert sent(fake, 0)["messages"][0]["content"] == "You are helper."


def test_import_promptline_loads_nothing_heavy() -> None:
    code = (
        "import sys, promptline; "
        "heavy = ('pydantic', 'sqlalchemy', 'promptline.agent', 'promptline.core.events'); "
        "print([m for m in heavy if m in sys.modules])"
    )
    printed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert printed.strip() == "[]"
