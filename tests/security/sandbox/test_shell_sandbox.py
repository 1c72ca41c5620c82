"""shell_execute runs in the sandbox the settings give the agent, says which in its answer,
and a limit it hits is an error answer and a ``security_alert`` event, after which calls go
on being served."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sandbox_support import host_server, needs_bwrap, needs_proc

from promptline.config import Settings
from promptline.core.events import SecurityAlertEvent, ToolResultEvent
from promptline.core.messages import ToolCall, ToolResult
from promptline.events.bus import InProcessEventBus
from promptline.events.memory import InMemoryEventStore
from promptline.security.sandbox import Sandboxes, bubblewrap, choice
from promptline.tools import ToolRegistry
from promptline.tools.builtin import shell_execute
from promptline.tools.executor import CallScope, ToolExecutor


@pytest.fixture
async def bus() -> AsyncIterator[InProcessEventBus]:
    bus = InProcessEventBus(InMemoryEventStore())
    yield bus
    await bus.close()


def executor(bus: InProcessEventBus, settings: Settings, *, alerts: bool = True) -> ToolExecutor:
    limits = settings.security.resource_limits
    return ToolExecutor(
        ToolRegistry([shell_execute]),
        bus,
        max_timeout=30,
        limits=limits.model_dump(),
        sandboxes=Sandboxes(settings),
        alerts=alerts,
    )


async def shell(
    runner: ToolExecutor, workspace: Path, command: str, agent: str | None = None
) -> ToolResult:
    scope = CallScope(workspace=workspace, session_id="s1", agent=agent)
    return await runner.execute(
        ToolCall(name="shell_execute", arguments={"command": command}), scope
    )


def text(result: ToolResult) -> str:
    if isinstance(result.content, str):
        return result.content
    return "".join(getattr(part, "text", "") for part in result.content)


async def test_the_configured_sandbox_runs_the_command(
    bus: InProcessEventBus, workspace: Path
) -> None:
    settings = Settings.model_validate({"security": {"sandbox": "process"}})

    result = await shell(executor(bus, settings), workspace, "echo hi")

    assert result.metadata["sandbox"] == "process"
    assert result.metadata["limit"] is None
    assert text(result).startswith("hi\n[exit code 0]")


@needs_bwrap
async def test_an_agent_runs_in_its_own_sandbox(bus: InProcessEventBus, workspace: Path) -> None:
    settings = Settings.model_validate(
        {"security": {"sandbox": "process"}, "agents": {"strict": {"sandbox": "bubblewrap"}}}
    )
    runner = executor(bus, settings)
    # Under bubblewrap the command is PID 1's child in a PID namespace of its own.
    command = "cat /proc/1/cmdline | tr '\\0' ' '"

    strict = await shell(runner, workspace, command, agent="strict")
    other = await shell(runner, workspace, command, agent="other")

    assert (strict.metadata["sandbox"], other.metadata["sandbox"]) == ("bubblewrap", "process")
    assert text(strict).startswith("bwrap")
    assert not text(other).startswith("bwrap")


@needs_proc
async def test_a_limit_hit_is_an_error_answer_and_a_security_alert(
    bus: InProcessEventBus, workspace: Path
) -> None:
    settings = Settings.model_validate(
        {"security": {"sandbox": "process", "resource_limits": {"max_processes": 8}}}
    )
    runner = executor(bus, settings)
    bomb = "i=0; while [ $i -lt 50 ]; do sleep 4321.6 & i=$((i + 1)); done; wait"

    result = await shell(runner, workspace, bomb)
    after = await shell(runner, workspace, "echo still serving")

    assert result.is_error
    assert "[killed: more than 8 processes (sandbox process)]" in text(result)
    assert result.metadata["limit"] == "processes"
    assert "security_alert" not in result.metadata
    events = await bus.store.read_stream("s1")
    alerts = [e for e in events if isinstance(e, SecurityAlertEvent)]
    assert len(alerts) == 1
    assert alerts[0].data.kind == "sandbox_limit"
    assert alerts[0].data.message == "shell_execute killed: more than 8 processes"
    assert alerts[0].data.details == {"limit": "processes", "sandbox": "process", "command": bomb}
    # The alert comes before the result it explains.
    results = [e for e in events if isinstance(e, ToolResultEvent)]
    assert events.index(alerts[0]) < events.index(results[0])
    assert text(after).startswith("still serving\n[exit code 0]")


async def test_no_alert_is_published_when_the_audit_log_is_off(
    bus: InProcessEventBus, workspace: Path
) -> None:
    # 4 % of the 30 s ceiling: 2 CPU seconds.
    settings = Settings.model_validate(
        {"security": {"sandbox": "process", "resource_limits": {"cpu_percent": 4}}}
    )
    runner = executor(bus, settings, alerts=False)

    result = await shell(runner, workspace, "while :; do :; done")

    assert result.metadata["limit"] == "cpu"
    assert "[CPU time limit of 2 s reached (sandbox process)]" in text(result)
    events = await bus.store.read_stream("s1")
    assert not [e for e in events if isinstance(e, SecurityAlertEvent)]


async def test_bubblewrap_configured_where_it_cannot_run_refuses_the_command(
    bus: InProcessEventBus, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bubblewrap, "bwrap_problem", lambda: "bwrap is not installed")
    monkeypatch.setattr(choice, "bwrap_problem", lambda: "bwrap is not installed")
    settings = Settings.model_validate({"security": {"sandbox": "bubblewrap"}})

    result = await shell(executor(bus, settings), workspace, "echo never > ran.txt")

    assert result.is_error
    assert text(result) == (
        "the bubblewrap sandbox cannot run here: bwrap is not installed (hint: promptline "
        "doctor says what it needs; or choose another sandbox where it was chosen "
        "(security.sandbox, the agent's, security.sandbox_channels or the session's: the "
        "strongest of them applies))"
    )
    assert not (workspace / "ran.txt").exists()


@needs_bwrap
async def test_a_destination_the_egress_proxy_refuses_is_a_security_alert(
    bus: InProcessEventBus, workspace: Path
) -> None:
    settings = Settings.model_validate(
        {"security": {"sandbox": "bubblewrap", "sandbox_network": "proxy"}}
    )
    fetch = (
        "python3 -I -c 'import sys, urllib.request; "
        "urllib.request.urlopen(sys.argv[1])' http://127.0.0.1:{port}/ 2>&1 | tail -n 1"
    )

    async with host_server() as server:
        command = fetch.format(port=server.port)
        result = await shell(executor(bus, settings), workspace, command)

    reason = (
        "127.0.0.1 is a loopback address (this machine); security.egress_allow does not name it"
    )
    assert text(result).startswith("urllib.error.HTTPError: HTTP Error 403: Forbidden\n")
    assert server.heard == []
    events = await bus.store.read_stream("s1")
    [alert] = [e for e in events if isinstance(e, SecurityAlertEvent)]
    assert alert.data.kind == "egress_refused"
    assert alert.data.message == f"shell_execute was refused a destination: {reason}"
    assert alert.data.details == {
        "egress_refused": [reason],
        "sandbox": "bubblewrap",
        "command": command,
    }


async def test_a_channel_whose_sandbox_cannot_run_refuses_even_an_agent_set_to_none(
    bus: InProcessEventBus, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bubblewrap, "bwrap_problem", lambda: "bwrap is not installed")
    monkeypatch.setattr(choice, "bwrap_problem", lambda: "bwrap is not installed")
    settings = Settings.model_validate(
        {
            "security": {"sandbox": "process", "sandbox_channels": {"group": "bubblewrap"}},
            "agents": {"loose": {"sandbox": "none"}},
        }
    )
    runner = executor(bus, settings)

    def in_channel(channel: str) -> CallScope:
        return CallScope(workspace=workspace, session_id="s1", agent="loose", channel=channel)

    call = ToolCall(name="shell_execute", arguments={"command": "echo ran > ran.txt"})
    refused = await runner.execute(call, in_channel("group"))
    assert refused.is_error
    assert text(refused).startswith("the bubblewrap sandbox cannot run here")
    assert not (workspace / "ran.txt").exists()
    # Elsewhere the agent's own choice applies.
    ran = await runner.execute(call, in_channel("http"))
    assert ran.metadata["sandbox"] == "none"
    assert (workspace / "ran.txt").read_text() == "ran\n"
