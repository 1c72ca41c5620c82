"""MCP servers declared in the config (one over stdio, one over Streamable HTTP): their tools
are registered as ``mcp.<server>.<tool>`` and called by an agent under the permission policy,
with progress, cancellation, errors, images and bad arguments on the record; their resources
and prompts attached to a session reach the agent's system prompt."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from mcp_support import STUCK, http_server, stdio_server, wait_until

from promptline.app import App, build_app
from promptline.config import load_settings
from promptline.core.events import Event
from promptline.core.messages import ImagePart, ToolResult
from promptline.events.content import expand_prompts
from promptline.events.protocols import EventFilter
from promptline.runtime.run import RunResult
from promptline.sessions.models import Principal

pytestmark = pytest.mark.asyncio(loop_scope="module")

ALICE = Principal(user_id="alice")


def _call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


SCRIPTS: dict[str, list[dict[str, Any]]] = {
    "echo": [_call("mcp.local.echo", {"text": "hello over stdio"}), {"reply": "done"}],
    "progress": [_call("mcp.remote.progress", {"steps": 5}), {"reply": "done"}],
    "image": [_call("mcp.local.image", {}), {"reply": "done"}],
    "fail": [_call("mcp.local.fail", {}), {"reply": "done"}],
    "explode": [_call("mcp.remote.explode", {}), {"reply": "done"}],
    "large": [_call("mcp.local.large", {"size": 100_000}), {"reply": "done"}],
    "bad_args": [_call("mcp.local.echo", {"txt": "typo"}), {"reply": "done"}],
    "denied": [_call("mcp.remote.echo", {"text": "x"}), {"reply": "done"}],
    "ask": [_call("mcp.local.structured", {}), {"reply": "done"}],
    "hang": [_call("mcp.local.hang", {"tag": "agent"}), {"reply": "done"}],
    "plain": [{"reply": "noted"}],
}


class World:
    """The app of this module and where the test server leaves its marks."""

    def __init__(self, app: App, state: Path) -> None:
        self.app = app
        self.state = state

    async def run(self, script: str, **options: Any) -> tuple[RunResult, list[Event]]:
        run = await self.app.runtime.start_run("go", model=f"scripted/{script}", **options)
        result = await asyncio.wait_for(run.result(), STUCK)
        return result, await self.events(run.id)

    async def events(self, run_id: str) -> list[Event]:
        events = await self.app.events.read_all(EventFilter(run_id=run_id))
        return await expand_prompts(self.app.events, events)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    root = tmp_path_factory.mktemp("mcp-agents")
    state = root / "state"
    scripts = root / "scripts"
    scripts.mkdir()
    for name, turns in SCRIPTS.items():
        (scripts / f"{name}.json").write_text(json.dumps(turns))
    async with http_server("streamable_http", state) as url:
        config = {
            "models": {
                "default": "scripted/plain",
                "providers": {"scripted": {"scripts_dir": str(scripts)}},
            },
            "agent": {
                "default_mode": "act",
                "stream_enabled": False,
                "workspace": str(root / "workspace"),
            },
            "tools": {
                "mcp.local.*": "allow",
                "mcp.remote.*": "allow",
                "mcp.local.structured": "ask",
            },
            # The HTTP test server listens on this machine: egress there must be allowed.
            "security": {"egress_allow": ["127.0.0.1"]},
            "mcp_servers": {
                "local": stdio_server(state, env={"GREETING": "hi from env"}, cwd=str(root)),
                "remote": {"url": url, "headers": {"X-Test": "yes"}},
            },
        }
        (root / "workspace").mkdir()
        path = root / "config.yaml"
        path.write_text(json.dumps(config))
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PROMPTLINE_HOME", str(root / "home"))
            settings = load_settings(path, environ={"PROMPTLINE_HOME": str(root / "home")})
            async with build_app(settings) as app:
                await app.start_runtime()
                yield World(app, state)


def _result(events: list[Event]) -> ToolResult:
    results = [e for e in events if e.type == "tool_result"]
    assert len(results) == 1, [e.type for e in events]
    result: ToolResult = results[0].data.result  # type: ignore[attr-defined]
    return result


def _outcome(events: list[Event]) -> str:
    return str(_result(events).metadata["outcome"])


async def test_configured_servers_tools_are_registered_under_their_names_with_their_flags(
    world: World,
) -> None:
    names = world.app.tools.names()
    for server in ("local", "remote"):
        for tool in ("echo", "progress", "hang", "fail", "image", "structured"):
            assert f"mcp.{server}.{tool}" in names
        assert f"mcp.{server}.bad_schema" not in names  # skipped, the others still there
    echo = world.app.tools.require("mcp.local.echo")
    assert (echo.read_only, echo.destructive) == (True, False)
    assert echo.parameters["required"] == ["text"]
    assert "Send the text back." in echo.description
    hang = world.app.tools.require("mcp.local.hang")
    assert (hang.read_only, hang.destructive) == (False, True)  # MCP's defaults
    structured = world.app.tools.require("mcp.local.structured")
    assert (structured.read_only, structured.destructive) == (False, False)

    statuses = {s.name: s for s in world.app.mcp.status()}
    assert statuses["local"].state == statuses["remote"].state == "connected"
    assert statuses["local"].transport == "stdio"
    assert statuses["remote"].transport == "streamable_http"
    assert statuses["local"].skipped == ("bad_schema",)
    assert statuses["local"].tools == len([n for n in names if n.startswith("mcp.local.")])
    assert statuses["local"].last_connected is not None


async def test_an_agent_calls_a_stdio_tool_and_the_call_is_on_the_record(world: World) -> None:
    result, events = await world.run("echo")

    assert result.ok
    kinds = [e.type for e in events]
    assert kinds.index("tool_command") < kinds.index("tool_result")
    command = next(e for e in events if e.type == "tool_command")
    assert command.data.call.name == "mcp.local.echo"  # type: ignore[attr-defined]
    tool_result = _result(events)
    assert tool_result.metadata["outcome"] == "ok"
    assert tool_result.text == "hello over stdio"


async def test_progress_of_an_http_tool_becomes_tool_progress_events(world: World) -> None:
    result, events = await world.run("progress")

    assert result.ok
    progress = [e for e in events if e.type == "tool_progress"]
    assert progress, [e.type for e in events]
    kinds = [e.type for e in events]
    assert kinds.index("tool_command") < kinds.index("tool_progress") < kinds.index("tool_result")
    last = progress[-1].data
    assert last.percent == 100.0  # type: ignore[attr-defined]
    assert last.message == "step 5 of 5"  # type: ignore[attr-defined]
    assert _result(events).text == "counted to 5"


async def test_an_image_result_reaches_the_agent_as_an_image_part(world: World) -> None:
    _, events = await world.run("image")

    content = _result(events).content
    assert isinstance(content, list), _result(events)
    images = [p for p in content if isinstance(p, ImagePart)]
    assert len(images) == 1, content
    assert images[0].media_type == "image/png"
    assert images[0].data


async def test_an_error_result_and_a_raising_tool_are_error_outcomes(world: World) -> None:
    _, events = await world.run("fail")
    failed = _result(events)
    assert (failed.is_error, failed.metadata["outcome"]) == (True, "error")
    assert failed.text == "the tool failed on purpose"

    _, events = await world.run("explode")
    exploded = _result(events)
    assert (exploded.is_error, exploded.metadata["outcome"]) == (True, "error")
    assert "remote" in exploded.text


async def test_large_output_is_cut_and_says_so(world: World) -> None:
    _, events = await world.run("large")

    big = _result(events)
    assert big.metadata["outcome"] == "ok"
    assert big.metadata["truncated_chars"] > 0
    assert "characters omitted" in big.text


async def test_arguments_that_do_not_match_the_schema_are_refused_before_the_call(
    world: World,
) -> None:
    _, events = await world.run("bad_args")

    refused = _result(events)
    assert refused.metadata["outcome"] == "invalid_arguments"
    assert "'text' is a required property" in refused.text


async def test_a_session_rule_denying_a_server_pattern_refuses_its_tools(world: World) -> None:
    session = await world.app.sessions.create(
        ALICE, channel="test", permissions={"mcp.remote.*": "deny"}
    )
    result, events = await world.run("denied", session_id=session.id, principal=ALICE)

    assert result.ok
    refused = _result(events)
    assert refused.metadata["outcome"] == "denied"
    assert "permission denied for mcp.remote.echo" in refused.text


async def test_an_ask_rule_waits_for_an_approval_and_then_calls_the_tool(world: World) -> None:
    requests = world.app.bus.subscribe(EventFilter(types=frozenset({"permission_request"})))
    try:
        run = await world.app.runtime.start_run("go", model="scripted/ask")
        request = await asyncio.wait_for(anext(requests), STUCK)
        assert request.data.tool == "mcp.local.structured"  # type: ignore[attr-defined]
        await world.app.permissions.respond(
            request.data.request_id,  # type: ignore[attr-defined]
            approve=True,
        )
        result = await asyncio.wait_for(run.result(), STUCK)
    finally:
        await requests.close()

    assert result.ok
    answered = _result(await world.events(run.id))
    assert answered.metadata["outcome"] == "ok"
    assert answered.metadata["structured_content"] == {"answer": 42}


async def test_cancelling_a_run_cancels_the_mcp_request_on_the_server(world: World) -> None:
    run = await world.app.runtime.start_run("go", model="scripted/hang")
    await wait_until(lambda: (world.state / "started-agent").exists(), "the hang tool started")

    run.cancel("the test cancels it")
    result = await asyncio.wait_for(run.result(), STUCK)

    assert result.status == "cancelled"
    assert _outcome(await world.events(run.id)) == "cancelled"
    await wait_until(
        lambda: (world.state / "cancelled-agent").exists(), "the server saw the cancellation"
    )
    # The connection is still good for the next call.
    after, events = await world.run("echo")
    assert after.ok
    assert _outcome(events) == "ok"


async def test_the_stdio_server_gets_its_configured_env_and_folder(world: World) -> None:
    output = await world.app.mcp.call("local", "env", {"name": "GREETING"})

    value, folder = str(output.content).split("|")
    assert value == "hi from env"
    assert Path(folder) == world.state.parent


async def test_resources_and_prompts_are_listed(world: World) -> None:
    for server in ("local", "remote"):
        resources = await world.app.mcp.resources(server)
        assert [(r.uri, r.name, r.mime_type) for r in resources] == [
            ("test://readme", "readme", "text/plain")
        ]
        prompts = await world.app.mcp.prompts(server)
        assert [(p.name, p.arguments, p.required) for p in prompts] == [
            ("greet", ("name",), ("name",))
        ]
    assert "read-me" in await world.app.mcp.read_resource("remote", "test://readme")
    assert await world.app.mcp.get_prompt("local", "greet", {"name": "Ann"}) == [
        ("user", "Say hello to Ann.")
    ]


async def test_an_attached_resource_and_prompt_reach_the_agents_system_prompt(
    world: World,
) -> None:
    session = await world.app.sessions.create(ALICE, channel="test", context={"topic": "tests"})
    await world.app.mcp.attach_resource(
        world.app.sessions, session.id, ALICE, "local", "test://readme"
    )
    updated = await world.app.mcp.attach_prompt(
        world.app.sessions, session.id, ALICE, "remote", "greet", {"name": "Ann"}
    )
    # Attaching the same resource again replaces it instead of adding a copy.
    updated = await world.app.mcp.attach_resource(
        world.app.sessions, session.id, ALICE, "local", "test://readme"
    )
    attachments = updated.context["attachments"]
    assert [a["key"] for a in attachments] == [
        "mcp:remote:prompt:greet",
        "mcp:local:resource:test://readme",
    ]
    assert updated.context["topic"] == "tests"

    result, events = await world.run("plain", session_id=session.id, principal=ALICE)

    assert result.ok
    command = next(e for e in events if e.type == "llm_command")
    system = command.data.messages[0]  # type: ignore[attr-defined]
    assert system.role == "system"
    assert "The test server's read-me" in system.text
    assert "user: Say hello to Ann." in system.text
    assert "- topic: tests" in system.text
    assert "- attachments" not in system.text
