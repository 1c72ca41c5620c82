"""``/mcp`` on a real gateway (`promptline serve` on 127.0.0.1), driven by the official MCP
client over Streamable HTTP with API keys: calls, progress, cancellation, tenants, bad input."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from asyncio.subprocess import DEVNULL, PIPE
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from gateway_support import auth, gateway_app, make_keys
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_server_support import (
    CALL_SECS,
    MODES,
    NOTE,
    Served,
    home_settings,
    http_client,
    mcp_home,
    serve_home,
)
from mcp_server_support import rest as _rest
from mcp_types import INVALID_PARAMS

from promptline.app import build_app
from promptline.config.settings import Settings
from promptline.gateway.app import create_gateway


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with serve_home(mcp_home(tmp_path)) as found:
        yield found


@pytest.mark.parametrize("mode", MODES)
async def test_a_key_lists_the_agents_and_calls_one_in_a_session_of_its_own(
    served: Served, mode: str
) -> None:
    async with http_client(served.mcp, served.keys.alice, mode=mode) as client:
        names = [tool.name for tool in (await client.list_tools()).tools]
        result = await client.call_tool("assistant", {"task": "hello over http"})
        assert client.server_info is not None
        assert client.server_info.name == "promptline"

    assert {"assistant", "reader", "sleeper", "file_read"} <= set(names)
    assert result.is_error is False
    assert 'You said: "hello over http"' in result.content[0].text
    assert result.structured_content is not None
    session_id = result.structured_content["session_id"]
    # The session is alice's: hers over REST, not even visible to bob of the same tenant.
    session = await _rest(served, "GET", f"/v1/sessions/{session_id}", served.keys.alice)
    assert (session["user_id"], session["channel"]) == ("alice", "mcp")
    async with httpx.AsyncClient(base_url=served.base) as rest:
        seen_by_bob = await rest.get(f"/v1/sessions/{session_id}", headers=auth(served.keys.bob))
    assert seen_by_bob.status_code == 404


async def test_the_result_session_id_continues_the_conversation(served: Served) -> None:
    async with http_client(served.mcp, served.keys.alice) as client:
        first = await client.call_tool("assistant", {"task": "one"})
        assert first.structured_content is not None
        session_id = first.structured_content["session_id"]
        second = await client.call_tool("assistant", {"task": "two", "session_id": session_id})
    assert second.structured_content is not None
    assert second.structured_content["session_id"] == session_id
    session = await _rest(
        served, "GET", f"/v1/sessions/{session_id}?history_limit=10", served.keys.alice
    )
    asked = [m["content"][0]["text"] for m in session["history"] if m["role"] == "user"]
    assert asked == ["one", "two"]


@pytest.mark.parametrize("mode", MODES)
async def test_progress_of_a_run_with_tool_calls_reaches_the_client(
    served: Served, mode: str
) -> None:
    steps: list[str | None] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        steps.append(message)

    async with http_client(served.mcp, served.keys.alice, mode=mode) as client:
        result = await client.call_tool("reader", {"task": "read"}, progress_callback=progress)
    assert result.content[0].text == "The note says hello."
    assert steps.index("calling file_read") < steps.index("file_read done")
    assert steps[-1] == "the model answered"


async def test_a_failed_run_is_an_error_result_that_says_why_and_where(served: Served) -> None:
    async with http_client(served.mcp, served.keys.alice) as client:
        result = await client.call_tool("broken", {"task": "try"})
    assert result.is_error is True
    assert result.content[0].text.startswith("the run failed: ")
    assert "the model refused the request" in result.content[0].text
    assert result.structured_content is not None
    assert result.structured_content["status"] == "failed"
    run = await _rest(
        served, "GET", f"/v1/runs/{result.structured_content['run_id']}", served.keys.alice
    )
    assert run["status"] == "failed"
    assert run["session_id"] == result.structured_content["session_id"]


async def test_a_tool_called_directly_reports_its_progress(served: Served) -> None:
    steps: list[str | None] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        steps.append(message)

    async with http_client(served.mcp, served.keys.alice) as client:
        result = await client.call_tool(
            "shell_execute", {"command": "echo first line"}, progress_callback=progress
        )
    assert result.is_error is False
    assert "first line" in result.content[0].text
    assert result.structured_content is not None
    assert result.structured_content["outcome"] == "ok"
    assert "shell_execute: first line" in steps
    assert steps[-1] == "shell_execute done"


async def test_without_a_valid_key_mcp_is_refused_in_the_gateway_error_shape(
    served: Served,
) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    async with httpx.AsyncClient(timeout=CALL_SECS) as client:
        for headers in ({}, auth("pl_nope_nope"), {"X-API-Key": "not-a-key"}):
            refused = await client.post(served.mcp, json=body, headers=headers)
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "unauthorized"
            assert refused.headers["www-authenticate"] == "Bearer"
        # X-API-Key works as on every other endpoint.
        ok = await client.post(
            served.mcp,
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "raw", "version": "1"},
                },
            },
            headers={
                "X-API-Key": served.keys.alice,
                "Accept": "application/json, text/event-stream",
            },
        )
        assert ok.status_code == 200, ok.text
    refused_by_the_client = False
    try:
        async with http_client(served.mcp, None) as client:
            await client.list_tools()
    except* MCPError:
        refused_by_the_client = True
    assert refused_by_the_client


async def test_another_tenant_cannot_continue_a_session_and_learns_nothing_of_it(
    served: Served,
) -> None:
    async with http_client(served.mcp, served.keys.alice) as client:
        mine = await client.call_tool("assistant", {"task": "my secret plan"})
    assert mine.structured_content is not None
    session_id = mine.structured_content["session_id"]

    async with http_client(served.mcp, served.keys.carol) as client:
        theirs = await client.call_tool(
            "assistant", {"task": "what was said?", "session_id": session_id}
        )
    assert theirs.is_error is True
    said = theirs.content[0].text
    assert f"no session {session_id!r}" in said
    assert "secret" not in said
    assert theirs.structured_content is None
    # Nothing reached alice's session.
    session = await _rest(
        served, "GET", f"/v1/sessions/{session_id}?history_limit=10", served.keys.alice
    )
    assert [m["role"] for m in session["history"]] == ["user", "assistant"]


async def test_cancelling_a_call_over_http_cancels_its_run(served: Served) -> None:
    started = anyio.Event()

    async def progress(value: float, total: float | None, message: str | None) -> None:
        if message and "started" in message:
            started.set()

    async with (
        http_client(served.mcp, served.keys.alice) as client,
        anyio.create_task_group() as group,
    ):

        async def call() -> None:
            await client.call_tool("sleeper", {"task": "wait"}, progress_callback=progress)

        group.start_soon(call)
        with anyio.fail_after(CALL_SECS):
            await started.wait()
        group.cancel_scope.cancel()

    with anyio.fail_after(CALL_SECS):
        while True:
            runs = await _rest(served, "GET", "/v1/runs", served.keys.alice)
            statuses = [r["status"] for r in runs["items"] if r["agent"] == "sleeper"]
            if statuses and statuses[0] != "running":
                break
            await anyio.sleep(0.2)  # polls the log; the deadline above bounds it
    assert statuses == ["cancelled"]


async def test_the_gateway_keeps_serving_rest_after_mcp_traffic(served: Served) -> None:
    for mode in MODES:
        async with http_client(served.mcp, served.keys.alice, mode=mode) as client:
            await client.call_tool("reader", {"task": "read"})
            await client.call_tool("file_read", {"path": "note.txt"})
    created = await _rest(served, "POST", "/v1/sessions", served.keys.bob, json={"channel": "api"})
    run = await _rest(
        served,
        "POST",
        f"/v1/sessions/{created['id']}/messages?wait=true",
        served.keys.bob,
        json={"content": "still there?"},
    )
    assert run["status"] == "completed"
    async with httpx.AsyncClient(base_url=served.base) as rest:
        assert (await rest.get("/healthz")).status_code == 200


async def test_bad_calls_get_clear_errors(served: Served) -> None:
    async with http_client(served.mcp, served.keys.alice) as client:
        with pytest.raises(MCPError) as unknown:
            await client.call_tool("no_such_agent", {"task": "x"})
        wrong_type = await client.call_tool("assistant", {"task": 42})
        missing = await client.call_tool("assistant", {})
        extra = await client.call_tool("assistant", {"task": "x", "model": "other"})
        bad_session = await client.call_tool("assistant", {"task": "x", "session_id": 7})
        bad_tool_arguments = await client.call_tool("file_read", {"path": 3})
        read = await client.call_tool("file_read", {"path": "note.txt"})

    assert unknown.value.code == INVALID_PARAMS
    assert "unknown tool 'no_such_agent'" in unknown.value.message
    assert "assistant" in unknown.value.message  # the hint lists the tools
    expected = {
        "`task` must be a string, not a number": wrong_type,
        "`task` is missing": missing,
        "unknown argument 'model'": extra,
        "`session_id` must be a non-empty string, not a number": bad_session,
        "file_read": bad_tool_arguments,
    }
    for needle, result in expected.items():
        assert result.is_error is True, needle
        assert needle in result.content[0].text
    assert "invalid arguments" in bad_tool_arguments.content[0].text
    assert read.content[0].text == NOTE


async def test_an_origin_not_allowed_is_refused(served: Served) -> None:
    async with httpx.AsyncClient() as client:
        refused = await client.post(
            served.mcp,
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={**auth(served.keys.alice), "Origin": "https://evil.example"},
        )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"


async def test_mcp_server_enabled_false_removes_the_endpoint(tmp_path: Path) -> None:
    settings = home_settings(mcp_home(tmp_path, "mcp_server:\n  enabled: false\n"))
    async with gateway_app(settings) as (app, client):
        keys = await make_keys(app)
        gone = await client.post("/mcp", json={}, headers=auth(keys.alice))
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "not_found"


async def test_outside_the_gateway_lifespan_mcp_answers_503_not_a_crash(tmp_path: Path) -> None:
    settings = home_settings(mcp_home(tmp_path))
    async with gateway_app(settings) as (app, client):  # no lifespan: an embedder's mistake
        keys = await make_keys(app)
        answer = await client.post("/mcp", json={}, headers=auth(keys.alice))
    assert answer.status_code == 503
    assert "lifespan" in answer.json()["error"]["details"]["hint"]


@contextlib.asynccontextmanager
async def in_process(settings: Settings) -> AsyncIterator[tuple[Client, httpx.AsyncClient]]:
    """The gateway in this process, inside its ASGI lifespan: an MCP client (alice's key)
    and a REST client (alice's key)."""
    async with build_app(settings) as app:
        await app.start_runtime()
        keys = await make_keys(app)
        api = create_gateway(app)
        async with api.router.lifespan_context(api):
            headers = auth(keys.alice)
            transport = httpx2.ASGITransport(app=api)
            async with (
                httpx2.AsyncClient(transport=transport, headers=headers) as http,
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=api),
                    base_url="http://gateway",
                    headers=headers,
                ) as rest,
            ):
                mcp = streamable_http_client("http://gateway/mcp", http_client=http)
                async with Client(mcp, read_timeout_seconds=CALL_SECS) as client:
                    yield client, rest


async def test_the_endpoint_works_in_process_within_the_asgi_lifespan(tmp_path: Path) -> None:
    async with in_process(home_settings(mcp_home(tmp_path))) as (client, _):
        result = await client.call_tool("reader", {"task": "read"})
    assert result.content[0].text == "The note says hello."


async def test_mcp_server_agents_picks_the_agents_and_names_are_made_to_fit(
    tmp_path: Path,
) -> None:
    extra = """\
mcp_server:
  agents: ["support*"]
"""
    home = mcp_home(tmp_path, extra)
    config = home / "config.yaml"
    config.write_text(
        config.read_text().replace(
            "agents:\n",
            "agents:\n  support bot:\n    description: Spaces in its name.\n"
            "  support_bot:\n    description: A fitting name.\n",
            1,
        )
    )
    async with in_process(home_settings(home)) as (client, rest):
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
        result = await client.call_tool("support_bot_2", {"task": "who are you?"})
        assert result.structured_content is not None
        run = (await rest.get(f"/v1/runs/{result.structured_content['run_id']}")).json()
    assert sorted(listed) == ["support_bot", "support_bot_2"]
    assert listed["support_bot"].description is not None
    assert listed["support_bot"].description.startswith("A fitting name.")
    assert listed["support_bot_2"].description is not None
    assert listed["support_bot_2"].description.startswith("Spaces in its name.")
    assert run["agent"] == "support bot"


async def test_serve_stops_at_once_on_sigterm_with_an_mcp_session_open(tmp_path: Path) -> None:
    """A handshake-era client keeps an event stream (GET /mcp) open: SIGTERM still stops
    `promptline serve` cleanly, long before its 60 s grace period runs out."""
    home = mcp_home(tmp_path)
    config = home / "config.yaml"
    text = config.read_text().replace("agent:\n", "agent:\n  shutdown_timeout_secs: 60\n", 1)
    config.write_text(text)
    env = {**os.environ, "PROMPTLINE_HOME": str(home)}
    promptline = [sys.executable, "-m", "promptline.cli.main"]
    made = await asyncio.create_subprocess_exec(
        *promptline, "keys", "create", "--user", "u", "--json", env=env, stdout=PIPE
    )
    key = json.loads((await made.communicate())[0])["key"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = await asyncio.create_subprocess_exec(
        *promptline, "serve", "--port", str(port), env=env, stdout=DEVNULL, stderr=PIPE
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with anyio.fail_after(CALL_SECS):
            async with httpx.AsyncClient(base_url=base) as rest:
                while True:
                    with contextlib.suppress(httpx.HTTPError):
                        if (await rest.get("/healthz")).status_code == 200:
                            break
                    await asyncio.sleep(0.05)  # polls until it answers; the deadline bounds it
        async with http_client(f"{base}/mcp", key, mode="legacy") as client:
            assert (await client.call_tool("assistant", {"task": "hi"})).is_error is False
            server.send_signal(signal.SIGTERM)
            await asyncio.wait_for(server.wait(), timeout=20)
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
    assert server.stderr is not None
    log = (await server.stderr.read()).decode()
    assert server.returncode == 0
    assert "Traceback" not in log
    assert "without completing response" not in log


async def test_a_call_retried_with_its_idempotency_key_gets_the_first_run_back(
    served: Served,
) -> None:
    meta: Any = {"promptline/idempotency_key": "mcp-retry-1"}
    async with http_client(served.mcp, served.keys.alice) as client:
        first = await client.call_tool("assistant", {"task": "only once"}, meta=meta)
    async with http_client(served.mcp, served.keys.alice) as client:  # a new connection
        again = await client.call_tool("assistant", {"task": "only once"}, meta=meta)

    assert first.structured_content is not None
    assert again.structured_content == first.structured_content
    session_id = first.structured_content["session_id"]
    session = await _rest(
        served, "GET", f"/v1/sessions/{session_id}?history_limit=10", served.keys.alice
    )
    asked = [m["content"][0]["text"] for m in session["history"] if m["role"] == "user"]
    assert asked == ["only once"]
    runs = await _rest(served, "GET", f"/v1/runs?session_id={session_id}", served.keys.alice)
    assert [r["run_id"] for r in runs["items"]] == [first.structured_content["run_id"]]
