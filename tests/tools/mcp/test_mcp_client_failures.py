"""MCP servers that misbehave (cannot start, exit at once, write what is not JSON-RPC, crash
or hang mid-call) are reported and isolated, and reconnected; servers connected on first use;
tool-list changes; the SSE transport and tool filters."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from mcp_support import PYTHON, http_server, stdio_server, wait_until

from promptline.config.plugins import McpServerSettings
from promptline.core.messages import ToolCall, ToolResult
from promptline.events.bus import InProcessEventBus
from promptline.events.memory import InMemoryEventStore
from promptline.security.egress import EgressPolicy
from promptline.tools.executor import CallScope, ToolExecutor
from promptline.tools.mcp import McpManager, McpServerUnavailable

pytestmark = pytest.mark.asyncio(loop_scope="module")

NEVER = 3600.0  # a backoff that keeps a failed server from being tried again during a test


def servers(**entries: dict[str, Any]) -> dict[str, McpServerSettings]:
    return {name: McpServerSettings.model_validate(value) for name, value in entries.items()}


async def execute(manager: McpManager, name: str, **arguments: Any) -> ToolResult:
    bus = InProcessEventBus(InMemoryEventStore())
    try:
        executor = ToolExecutor(manager.registry, bus, max_timeout=60.0)
        return await executor.execute(
            ToolCall(name=name, arguments=arguments), CallScope(workspace=Path("."))
        )
    finally:
        await bus.close()


class Lively:
    """A manager of one good stdio server (2 s call limit), reconnected quickly."""

    def __init__(self, manager: McpManager, root: Path) -> None:
        self.manager = manager
        self.state = root / "state"
        self.cache = root / "cache"

    def status(self) -> Any:
        return self.manager.status()[0]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lively(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Lively]:
    root = tmp_path_factory.mktemp("mcp-lively")
    manager = McpManager(
        servers(t=stdio_server(root / "state", timeout_secs=2)),
        cache_dir=root / "cache",
        log_dir=root / "logs",
        backoff_first=0.05,
    )
    await manager.start()
    try:
        yield Lively(manager, root)
    finally:
        await manager.close()


async def test_servers_that_cannot_start_are_reported_and_the_others_still_work(
    tmp_path: Path,
) -> None:
    quits = "import sys; print('missing API key', file=sys.stderr); sys.exit(3)"
    babbles = "import sys; sys.stdin.readline(); print('hello world', flush=True); sys.stdin.read()"
    manager = McpManager(
        servers(
            nope={"command": str(tmp_path / "no-such-program")},
            quits={"command": PYTHON, "args": ["-c", quits]},
            babbles={"command": PYTHON, "args": ["-c", babbles]},
            good=stdio_server(),
            off={**stdio_server(), "enabled": False},
        ),
        log_dir=tmp_path / "logs",
        backoff_first=NEVER,
    )
    try:
        await manager.start()  # does not raise

        status = {s.name: s for s in manager.status()}
        assert {n: s.state for n, s in status.items()} == {
            "nope": "down",
            "quits": "down",
            "babbles": "down",
            "good": "connected",
            "off": "disabled",
        }
        assert (
            status["nope"].error
            == f"cannot start '{tmp_path / 'no-such-program'}': no such program"
        )
        assert status["quits"].error is not None
        assert status["quits"].error.startswith("the server process exited")
        assert "missing API key" in status["quits"].error
        assert status["babbles"].error is not None
        assert "not a JSON-RPC message on its stdout: 'hello world'" in status["babbles"].error
        assert status["nope"].failures == 1
        assert status["nope"].retry_in is not None

        assert (await execute(manager, "mcp.good.echo", text="still here")).text == "still here"
        assert not [n for n in manager.registry.names() if not n.startswith("mcp.good.")]
        with pytest.raises(McpServerUnavailable, match="'quits' is not connected"):
            await manager.connection("quits").call_tool("echo", {"text": "x"})
    finally:
        await manager.close()
    assert manager.registry.names() == []


async def test_a_server_crashing_mid_call_gives_an_error_then_reconnects_with_a_fresh_tool_list(
    lively: Lively,
) -> None:
    await lively.manager.call("t", "add_tool")
    await wait_until(
        lambda: "mcp.t.extra" in lively.manager.registry, "the tool list change registered extra"
    )
    connected_before = lively.status().last_connected

    crashed = await execute(lively.manager, "mcp.t.crash")

    assert crashed.metadata["outcome"] == "error"
    assert "lost the connection while calling crash: the server process exited" in crashed.text
    await wait_until(
        lambda: (
            lively.status().state == "connected"
            and lively.status().last_connected != connected_before
        ),
        "the server is connected again",
    )
    # The new process has only its initial tools: the registry followed.
    assert "mcp.t.extra" not in lively.manager.registry
    assert (await execute(lively.manager, "mcp.t.echo", text="back")).text == "back"


async def test_a_server_writing_what_is_not_json_rpc_mid_call_is_cut_off_and_reconnected(
    lively: Lively, caplog: pytest.LogCaptureFixture
) -> None:
    connected_before = lively.status().last_connected
    caplog.set_level(logging.INFO)

    result = await execute(lively.manager, "mcp.t.garbage")

    assert result.metadata["outcome"] == "error"
    assert "not a JSON-RPC message on its stdout: 'this line is not JSON-RPC'" in result.text
    await wait_until(
        lambda: (
            lively.status().state == "connected"
            and lively.status().last_connected != connected_before
        ),
        "the server is connected again",
    )
    assert (await execute(lively.manager, "mcp.t.echo", text="back")).text == "back"
    # Said once, by PromptLine, naming the server; not a traceback per line from the SDK.
    assert not [r for r in caplog.records if r.name.startswith("mcp.") and r.exc_info]
    assert any(r.name == "promptline.mcp" and "JSON-RPC" in r.getMessage() for r in caplog.records)


async def test_a_call_past_the_servers_time_limit_times_out_and_is_cancelled_on_the_server(
    lively: Lively,
) -> None:
    result = await execute(lively.manager, "mcp.t.hang", tag="timeout")

    assert result.metadata["outcome"] == "timeout"
    assert "timed out after 2 s" in result.text
    await wait_until(
        lambda: (lively.state / "cancelled-timeout").exists(), "the server saw the cancellation"
    )
    assert (await execute(lively.manager, "mcp.t.echo", text="fine")).text == "fine"


async def test_a_first_use_server_is_known_from_its_cached_tools_and_connected_when_called(
    lively: Lively,
) -> None:
    # The same server as `lively`, whose connections keep its tool list in the cache.
    config = servers(t={**stdio_server(lively.state), "connect": "first_use"})
    manager = McpManager(config, cache_dir=lively.cache)
    try:
        await manager.start()
        assert manager.status()[0].state == "idle"
        assert "mcp.t.echo" in manager.registry
        assert manager.registry.require("mcp.t.echo").read_only

        result = await execute(manager, "mcp.t.echo", text="woken up")

        assert result.text == "woken up"
        assert manager.status()[0].state == "connected"
    finally:
        await manager.close()


async def test_a_first_use_server_never_seen_before_is_connected_at_start_to_learn_its_tools(
    tmp_path: Path,
) -> None:
    manager = McpManager(
        servers(new={"command": str(tmp_path / "absent"), "connect": "first_use"}),
        cache_dir=tmp_path / "cache",
        backoff_first=NEVER,
    )
    try:
        await manager.start()
        assert manager.status()[0].state == "down"  # it was tried at start: no cached list
        assert manager.status()[0].failures == 1
    finally:
        await manager.close()


async def test_an_sse_server_works_and_tool_patterns_choose_its_tools(tmp_path: Path) -> None:
    async with http_server("sse") as url:
        manager = McpManager(
            servers(old={"url": url, "transport": "sse", "tools": ["echo", "mcp.old.prog*"]}),
            egress=EgressPolicy(["127.0.0.1"]),
        )
        try:
            await manager.start()
            assert manager.status()[0].state == "connected"
            assert manager.registry.names() == ["mcp.old.echo", "mcp.old.progress"]

            assert (await execute(manager, "mcp.old.echo", text="over sse")).text == "over sse"
            progressed = await execute(manager, "mcp.old.progress", steps=2)
            assert progressed.text == "counted to 2"
        finally:
            await manager.close()
