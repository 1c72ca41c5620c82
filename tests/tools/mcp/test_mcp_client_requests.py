"""What MCP servers ask of PromptLine during a tool call, against the test server over stdio and
Streamable HTTP, in both protocol eras (2026-07-28, where the request travels inside the call,
and 2025-11-25, where the server sends requests of its own): sampling answered with the run's
model under the permission policy and the budgets, on the record; elicitation asked of the
user as an approval and answered with content, a refusal or nothing; roots that are the run's
workspace; tools that run only as tasks, not offered."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from mcp_support import STUCK, http_server, stdio_server, wait_until

from promptline.app import App, build_app
from promptline.config import load_settings
from promptline.core.clock import ManualClock
from promptline.core.errors import ConflictError, InvalidInputError
from promptline.core.events import Event
from promptline.core.messages import ToolResult
from promptline.events.content import expand_prompts
from promptline.events.protocols import EventFilter
from promptline.runtime.budget import Budget
from promptline.runtime.run import Run, RunResult
from promptline.sessions.models import Principal
from promptline.tools.base import ToolError

pytestmark = pytest.mark.asyncio(loop_scope="module")

ALICE = Principal(user_id="alice")
MODERN = ["local", "remote"]
"""Servers of the 2026-07-28 protocol: over stdio, over Streamable HTTP."""
LEGACY = ["oldlocal", "oldremote"]
"""The same server speaking only 2025-11-25: over stdio, over Streamable HTTP."""
SERVERS = MODERN + LEGACY
MARKS = {"oldlocal": "oldlocal", "oldremote": "legacy"}
"""Where (under the state folder) each legacy server notes the roots changes it is told of."""
ANSWERED_SAMPLING = ["local", "remote", "oldlocal"]
"""Servers whose sampling an `allow` rule lets through (``oldremote`` has no rule)."""


def _call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


def _scripts() -> dict[str, list[dict[str, Any]]]:
    scripts: dict[str, list[dict[str, Any]]] = {}
    for server in SERVERS:
        # The sampled conversation holds one assistant turn, so the second turn answers it
        # (and, after the tool's result, ends the run too).
        scripts[f"sample_{server}"] = [
            {
                **_call(f"mcp.{server}.sample", {"question": "And 3+3?"}),
                "usage": {"input_tokens": 10, "output_tokens": 5},
            },
            {"reply": "6", "usage": {"input_tokens": 10, "output_tokens": 1}},
        ]
        for tool in ("ask", "ask_url", "roots"):
            scripts[f"{tool}_{server}"] = [_call(f"mcp.{server}.{tool}", {}), {"reply": "done"}]
    scripts["hang_oldlocal"] = [_call("mcp.oldlocal.hang", {"tag": "busy"}), {"reply": "done"}]
    scripts["hang_local"] = [_call("mcp.local.hang", {"tag": "busy"}), {"reply": "done"}]
    return scripts


class World:
    """The app of this module (its clock moves only when a test says), and its servers."""

    def __init__(self, app: App, clock: ManualClock, root: Path) -> None:
        self.app = app
        self.clock = clock
        self.root = root

    async def start(self, script: str, **options: Any) -> Run:
        return await self.app.runtime.start_run("go", model=f"scripted/{script}", **options)

    async def finish(self, run: Run) -> tuple[RunResult, list[Event]]:
        result = await asyncio.wait_for(run.result(), STUCK)
        events = await self.app.events.read_all(EventFilter(run_id=run.id))
        return result, await expand_prompts(self.app.events, events)

    async def run(self, script: str, **options: Any) -> tuple[RunResult, list[Event]]:
        return await self.finish(await self.start(script, **options))

    async def question(self, run: Run) -> Any:
        """The pending approval request of ``run`` (waiting until there is one)."""
        found: list[Any] = []

        async def probe() -> bool:
            found[:] = [r for r in await self.app.permissions.pending() if r.run_id == run.id]
            return bool(found)

        deadline = asyncio.get_running_loop().time() + STUCK
        while not await probe():
            assert asyncio.get_running_loop().time() < deadline, "no request was asked"
            await asyncio.sleep(0.02)
        return found[0]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    root = tmp_path_factory.mktemp("mcp-requests")
    state = root / "state"
    scripts = root / "scripts"
    scripts.mkdir()
    for name, turns in _scripts().items():
        (scripts / f"{name}.json").write_text(json.dumps(turns))
    async with http_server("streamable_http", state) as url:
        config = {
            "models": {
                "default": "scripted/sample_local",
                "providers": {"scripted": {"scripts_dir": str(scripts)}},
            },
            "agent": {
                "default_mode": "act",
                "stream_enabled": False,
                "workspaces_dir": str(root / "workspaces"),
            },
            "agents": {"terse": {"max_tokens": 20, "temperature": 0.3}},
            "tools": {
                **{f"mcp.{server}.*": "allow" for server in SERVERS},
                **{f"mcp.{server}:sampling": "allow" for server in ANSWERED_SAMPLING},
            },
            # The HTTP test server listens on this machine: egress there must be allowed.
            "security": {"egress_allow": ["127.0.0.1"]},
            "mcp_servers": {
                "local": stdio_server(state),
                "remote": {"url": url},
                "oldlocal": stdio_server(state / "oldlocal", legacy=True),
                "oldremote": {"url": url.replace("/mcp", "/legacy/mcp")},
            },
        }
        path = root / "config.yaml"
        path.write_text(json.dumps(config))
        clock = ManualClock(start=datetime.now(UTC))
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PROMPTLINE_HOME", str(root / "home"))
            settings = load_settings(path, environ={"PROMPTLINE_HOME": str(root / "home")})
            async with build_app(settings, clock=clock) as app:
                await app.start_runtime()
                yield World(app, clock, root)


def _result(events: list[Event]) -> ToolResult:
    results = [e for e in events if e.type == "tool_result"]
    assert len(results) == 1, [e.type for e in events]
    result: ToolResult = results[0].data.result  # type: ignore[attr-defined]
    return result


def _kinds(events: list[Event]) -> list[str]:
    return [e.type for e in events]


async def test_each_server_speaks_the_protocol_its_test_expects(world: World) -> None:
    versions = {s.name: s.protocol_version for s in world.app.mcp.status()}

    assert versions == {
        "local": "2026-07-28",
        "remote": "2026-07-28",
        "oldlocal": "2025-11-25",
        "oldremote": "2025-11-25",
    }


# -- sampling -----------------------------------------------------------------------------------


@pytest.mark.parametrize("server", ANSWERED_SAMPLING)
async def test_a_sampling_request_is_answered_by_the_runs_model_and_recorded_with_the_run(
    world: World, server: str
) -> None:
    session = await world.app.sessions.create(ALICE, channel="test")
    result, events = await world.run(f"sample_{server}", session_id=session.id, principal=ALICE)

    assert result.ok, result.error
    assert _result(events).text == f"sampled '6' from scripted/sample_{server}"
    commands = [e for e in events if e.type == "llm_command"]
    assert len(commands) == 3  # the run's two model calls and the server's
    sampled = commands[1]
    assert [(m.role, m.text) for m in sampled.data.messages] == [  # type: ignore[attr-defined]
        ("system", "Answer in one word."),
        ("user", "What is 2+2?"),
        ("assistant", "4"),
        ("user", "And 3+3?"),
    ]
    assert sampled.data.model == f"scripted/sample_{server}"  # type: ignore[attr-defined]
    assert sampled.data.params["max_tokens"] == 50  # type: ignore[attr-defined]
    assert (sampled.session_id, sampled.user_id) == (session.id, "alice")
    assert sampled.run_id == events[0].run_id
    kinds = _kinds(events)
    sampled_at = kinds.index("llm_command", kinds.index("tool_command"))
    assert kinds.index("tool_command") < sampled_at < kinds.index("tool_result")
    answer = next(e for e in events if e.type == "llm_result" and e.causation_id == sampled.id)
    assert answer.data.message.text == "6"  # type: ignore[attr-defined]


async def test_a_sampling_request_keeps_to_the_agents_token_limit_and_temperature(
    world: World,
) -> None:
    result, events = await world.run("sample_remote", agent="terse")

    assert result.ok, result.error
    sampled = [e for e in events if e.type == "llm_command"][1]
    assert sampled.agent_id == "terse"
    assert sampled.data.params["max_tokens"] == 20  # type: ignore[attr-defined]
    assert sampled.data.params["temperature"] == 0.3  # type: ignore[attr-defined]
    assert sampled.data.params["task"] == "mcp_sampling"  # type: ignore[attr-defined]


@pytest.mark.parametrize("server", ["local", "oldlocal"])
async def test_a_sampling_request_outside_any_run_is_answered_by_the_default_model_if_allowed(
    world: World, server: str
) -> None:
    output = await world.app.mcp.call(server, "sample", {"question": "And 3+3?"})

    assert output.content == "sampled '6' from scripted/sample_local"


async def test_a_sampling_request_outside_any_run_that_needs_an_approval_is_refused(
    world: World,
) -> None:
    with pytest.raises(ToolError) as refused:
        await world.app.mcp.call("oldremote", "sample", {"question": "And 3+3?"})

    assert "needs approval, but no tool call of this server was in flight" in refused.value.message
    assert "nobody can be asked" in refused.value.message


async def test_a_request_of_the_operators_own_call_is_not_taken_for_a_runs_in_flight(
    world: World,
) -> None:
    busy = await world.start("hang_local")
    await wait_until(lambda: (world.root / "state" / "started-busy").exists(), "hang started")
    try:
        output = await world.app.mcp.call("local", "sample", {"question": "And 3+3?"})
    finally:
        busy.cancel("the test is done with it")
        await world.finish(busy)

    assert output.content == "sampled '6' from scripted/sample_local"  # not the busy run's


async def test_with_calls_of_two_runs_in_flight_an_older_server_cannot_say_which_asks(
    world: World,
) -> None:
    busy = await world.start("hang_oldlocal")
    await wait_until(
        lambda: (world.root / "state" / "oldlocal" / "started-busy").exists(), "hang started"
    )
    try:
        _, sampled = await world.run("sample_oldlocal")
        _, rooted = await world.run("roots_oldlocal")
    finally:
        busy.cancel("the test is done with it")
        await world.finish(busy)

    refused = _result(sampled)
    assert refused.is_error
    assert "calls of 2 runs were in flight" in refused.text
    roots = _result(rooted).text.split()
    assert len(roots) == 2
    assert (world.root / "workspaces" / busy.id).resolve().as_uri() in roots


async def test_a_sampling_request_a_session_rule_denies_fails_the_call_saying_so(
    world: World,
) -> None:
    session = await world.app.sessions.create(
        ALICE, channel="test", permissions={"mcp.local:sampling": "deny"}
    )
    result, events = await world.run("sample_local", session_id=session.id, principal=ALICE)

    refused = _result(events)
    assert refused.is_error
    assert "PromptLine refused the sampling request of MCP server 'local'" in refused.text
    assert "mcp.local:sampling" in refused.text
    assert len([e for e in events if e.type == "llm_command"]) == 2  # no sampling call
    assert result.ok


@pytest.mark.parametrize(
    ("server", "rules"), [("oldremote", {}), ("remote", {"mcp.remote:sampling": "ask"})]
)
async def test_a_sampling_request_without_an_allow_rule_waits_for_an_approval(
    world: World, server: str, rules: dict[str, str]
) -> None:
    session = await world.app.sessions.create(ALICE, channel="test", permissions=rules)
    run = await world.start(f"sample_{server}", session_id=session.id, principal=ALICE)
    request = await world.question(run)

    assert request.tool == f"mcp.{server}:sampling"
    assert request.arguments["model"] == f"scripted/sample_{server}"
    assert request.arguments["messages"][-1] == {"role": "user", "text": "And 3+3?"}
    assert request.session_id == session.id
    await world.app.permissions.respond(request.request_id, approve=True, decided_by="alice")
    result, events = await world.finish(run)

    assert result.ok
    assert _result(events).text == f"sampled '6' from scripted/sample_{server}"


async def test_a_refused_sampling_approval_fails_the_call(world: World) -> None:
    run = await world.start("sample_oldremote")
    request = await world.question(run)
    await world.app.permissions.respond(
        request.request_id, approve=False, decided_by="alice", reason="not today"
    )
    result, events = await world.finish(run)

    refused = _result(events)
    assert refused.is_error
    assert "alice refused it: not today" in refused.text
    assert result.ok


async def test_a_sampling_request_over_the_sessions_budget_is_refused(world: World) -> None:
    session = await world.app.sessions.create(ALICE, channel="test")
    services = world.app.runtime.services
    before = services.budget
    # The run's first model call fits (nothing spent yet); the server's comes after it.
    services.budget = Budget(session_tokens=1)
    try:
        _, events = await world.run("sample_local", session_id=session.id, principal=ALICE)
    finally:
        services.budget = before

    refused = _result(events)
    assert refused.is_error
    assert "the session budget of 1 tokens is used up" in refused.text
    assert "the sampling request of 'local' was not sent" in refused.text


# -- elicitation --------------------------------------------------------------------------------


@pytest.mark.parametrize("server", SERVERS)
async def test_a_question_is_asked_like_an_approval_and_its_answer_goes_to_the_server(
    world: World, server: str
) -> None:
    session = await world.app.sessions.create(ALICE, channel="test")
    run = await world.start(f"ask_{server}", session_id=session.id, principal=ALICE)
    request = await world.question(run)

    assert request.tool == f"mcp.{server}:elicitation"
    assert request.arguments["message"] == "Who are you?"
    assert request.arguments["requested_schema"]["required"] == ["name"]
    assert request.reason == f"MCP server {server!r} asks: Who are you?"
    assert (request.session_id, request.user_id) == (session.id, "alice")
    outcome = await world.app.permissions.respond(
        request.request_id, approve=True, decided_by="alice", content={"name": "Ann", "age": 30}
    )
    result, events = await world.finish(run)

    assert outcome.content == {"name": "Ann", "age": 30}
    assert result.ok
    assert _result(events).text == 'accept {"age":30,"name":"Ann"}'
    granted = next(e for e in events if e.type == "permission_granted")
    assert "Ann" not in granted.model_dump_json()  # the log says it was answered, not what


async def test_an_answer_that_does_not_match_the_question_is_refused_and_it_stays_open(
    world: World,
) -> None:
    run = await world.start("ask_local")
    request = await world.question(run)

    with pytest.raises(InvalidInputError) as missing:
        await world.app.permissions.respond(request.request_id, approve=True, content={"age": 3})
    with pytest.raises(InvalidInputError) as wrong:
        await world.app.permissions.respond(
            request.request_id, approve=True, content={"name": "Ann", "age": "old"}
        )
    with pytest.raises(InvalidInputError):
        await world.app.permissions.respond(
            request.request_id, approve=True, scope="always", content={"name": "Ann"}
        )
    assert "'name' is a required property" in missing.value.message
    assert "age: 'old' is not of type 'integer'" in wrong.value.message
    assert (await world.app.permissions.broker.get(request.request_id)).status == "pending"
    await world.app.permissions.respond(request.request_id, approve=True, content={"name": "Bo"})
    _, events = await world.finish(run)

    assert _result(events).text == 'accept {"name":"Bo"}'


@pytest.mark.parametrize("server", ["remote", "oldlocal"])
async def test_a_refused_question_is_declined(world: World, server: str) -> None:
    run = await world.start(f"ask_{server}")
    request = await world.question(run)
    await world.app.permissions.respond(request.request_id, approve=False, decided_by="alice")
    _, events = await world.finish(run)

    assert _result(events).text == "decline null"


@pytest.mark.parametrize("server", ["local", "oldremote"])
async def test_a_question_nobody_answers_in_time_is_cancelled(world: World, server: str) -> None:
    run = await world.start(f"ask_{server}")
    request = await world.question(run)
    world.clock.advance(world.app.settings.permissions.approval_timeout_secs + 1)
    [expired] = await world.app.permissions.broker.expire_due()
    _, events = await world.finish(run)

    assert (expired.request_id, expired.decided_by) == (request.request_id, "timeout")
    assert _result(events).text == "cancel null"


async def test_a_deny_rule_declines_a_question_without_asking(world: World) -> None:
    session = await world.app.sessions.create(
        ALICE, channel="test", permissions={"mcp.remote:elicitation": "deny"}
    )
    result, events = await world.run("ask_remote", session_id=session.id, principal=ALICE)

    assert result.ok
    assert _result(events).text == "decline null"
    assert "permission_request" not in _kinds(events)


@pytest.mark.parametrize("server", ["local", "oldremote"])
async def test_a_page_to_visit_is_asked_with_its_url_and_a_yes_accepts_it(
    world: World, server: str
) -> None:
    run = await world.start(f"ask_url_{server}")
    request = await world.question(run)

    assert request.arguments == {
        "message": "Sign in to go on.",
        "url": "https://example.com/sign-in",
    }
    with pytest.raises(InvalidInputError):
        await world.app.permissions.respond(request.request_id, approve=True, content={"a": 1})
    await world.app.permissions.respond(request.request_id, approve=True)
    _, events = await world.finish(run)

    assert _result(events).text == "accept null"


async def test_an_approval_takes_no_content(world: World) -> None:
    run = await world.start("sample_oldremote")
    request = await world.question(run)

    with pytest.raises(InvalidInputError) as refused:
        await world.app.permissions.respond(
            request.request_id, approve=True, content={"name": "Ann"}
        )
    await world.app.permissions.respond(request.request_id, approve=True)
    result, _ = await world.finish(run)

    assert "it takes no content" in refused.value.message
    assert result.ok


async def test_a_question_is_listed_and_answered_over_rest(world: World) -> None:
    from promptline.gateway.app import create_gateway
    from promptline.security.auth import KeyStore

    _, key = await KeyStore(world.app.state, clock=world.app.clock).create("alice")
    headers = {"Authorization": f"Bearer {key}"}
    session = await world.app.sessions.create(ALICE, channel="test")
    run = await world.start("ask_oldremote", session_id=session.id, principal=ALICE)
    request = await world.question(run)
    transport = httpx.ASGITransport(app=create_gateway(world.app))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        listed = await client.get("/v1/approvals", headers=headers)
        bad = await client.post(
            f"/v1/approvals/{request.request_id}",
            json={"approve": True, "content": {"age": -1}},
            headers=headers,
        )
        answer = await client.post(
            f"/v1/approvals/{request.request_id}",
            json={"approve": True, "content": {"name": "Cy", "age": 7}},
            headers=headers,
        )
    _, events = await world.finish(run)

    [item] = [i for i in listed.json()["items"] if i["request_id"] == request.request_id]
    assert item["tool"] == "mcp.oldremote:elicitation"
    assert item["arguments"]["requested_schema"]["properties"]["age"]["type"] == "integer"
    assert bad.status_code == 422, bad.text
    assert bad.json()["error"]["code"] == "invalid_input"
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "granted"
    assert _result(events).text == 'accept {"age":7,"name":"Cy"}'


async def test_a_question_asked_elsewhere_cannot_be_answered_here(world: World) -> None:
    from promptline.security.approvals import ApprovalBroker

    run = await world.start("ask_remote")
    request = await world.question(run)
    # Another process sharing the log: it sees the question but holds no call waiting on it.
    elsewhere = ApprovalBroker(world.app.bus, world.app.events, clock=world.clock)
    try:
        assert request.request_id in [r.request_id for r in await elsewhere.pending()]
        with pytest.raises(ConflictError) as refused:
            await elsewhere.respond(request.request_id, approve=True, content={"name": "Di"})
    finally:
        await elsewhere.close()
    await world.app.permissions.respond(request.request_id, approve=False)
    await world.finish(run)

    assert "was asked by another PromptLine process" in refused.value.message


async def test_cancelling_the_run_withdraws_its_question(world: World) -> None:
    run = await world.start("ask_local")
    request = await world.question(run)

    run.cancel("the test cancels it")
    result, _ = await world.finish(run)

    assert result.status == "cancelled"
    record = await world.app.permissions.broker.get(request.request_id)
    assert record.outcome is not None
    assert record.outcome.decided_by == "cancelled"


# -- roots --------------------------------------------------------------------------------------


@pytest.mark.parametrize("server", SERVERS)
async def test_the_roots_are_the_runs_workspace(world: World, server: str) -> None:
    session = await world.app.sessions.create(ALICE, channel="test")
    _, events = await world.run(f"roots_{server}", session_id=session.id, principal=ALICE)

    workspace = (world.root / "workspaces" / session.id).resolve()
    assert _result(events).text == workspace.as_uri()


@pytest.mark.parametrize("server", ["oldlocal", "oldremote"])
async def test_a_server_of_the_older_protocol_is_told_when_the_roots_change(
    world: World, server: str
) -> None:
    told = world.root / "state" / MARKS[server] / "roots-changed"
    before = told.read_text().count("changed") if told.exists() else 0
    first = await world.app.sessions.create(ALICE, channel="test")
    second = await world.app.sessions.create(ALICE, channel="test")
    await world.run(f"roots_{server}", session_id=first.id, principal=ALICE)
    await world.run(f"roots_{server}", session_id=first.id, principal=ALICE)
    await world.run(f"roots_{server}", session_id=second.id, principal=ALICE)

    # A new workspace each time the session changes; the same one again tells nothing.
    def count() -> int:
        return told.read_text().count("changed") if told.exists() else 0

    await wait_until(lambda: count() >= before + 2, "the server was told twice")
    assert count() == before + 2


# -- tasks --------------------------------------------------------------------------------------


@pytest.mark.parametrize("server", LEGACY)
async def test_a_tool_that_runs_only_as_a_task_is_not_offered_and_says_why(
    world: World, server: str
) -> None:
    names = world.app.tools.names()
    status = {s.name: s for s in world.app.mcp.status()}[server]

    assert f"mcp.{server}.task_only" not in names
    assert f"mcp.{server}.echo" in names
    assert "task_only" in status.skipped
    why = world.app.mcp.skipped(server)["task_only"]
    assert "runs only as a task (taskSupport: required)" in why
    assert status.to_dict()["skipped_reasons"]["task_only"] == why
