"""The set of built-in tools: names, flags, and that they all register and run through the
executor."""

from __future__ import annotations

from pathlib import Path

from promptline.core.messages import ToolCall
from promptline.events.bus import InProcessEventBus
from promptline.tools import Tool, ToolRegistry
from promptline.tools.builtin import BUILTIN_TOOL_NAMES, builtin_tools
from promptline.tools.executor import CallScope, ToolExecutor


def test_the_builtin_tools_are_the_ones_the_configuration_names() -> None:
    tools = builtin_tools()

    assert tuple(t.name for t in tools) == BUILTIN_TOOL_NAMES
    assert set(BUILTIN_TOOL_NAMES) == {
        "file_read", "file_write", "file_delete", "shell_execute",
        "git_status", "git_commit", "web_get", "codebase_search",
    }  # fmt: skip
    assert all(isinstance(t, Tool) for t in tools)


def test_flags_say_which_tools_change_nothing_and_which_may_lose_data() -> None:
    tools = {t.name: t for t in builtin_tools()}

    read_only = {name for name, t in tools.items() if t.read_only}
    destructive = {name for name, t in tools.items() if t.destructive}

    assert read_only == {"file_read", "git_status", "web_get", "codebase_search"}
    assert destructive == {"file_delete", "shell_execute"}


def test_every_tool_has_a_description_and_an_object_schema() -> None:
    for t in builtin_tools():
        assert t.description
        assert t.parameters["type"] == "object"
        assert t.parameters["additionalProperties"] is False


async def test_they_run_through_the_executor_in_plan_mode_when_read_only(
    bus: InProcessEventBus, workspace: Path
) -> None:
    executor = ToolExecutor(ToolRegistry(builtin_tools()), bus)
    plan = CallScope(workspace=workspace, session_id="s1", mode="plan")
    (workspace / "a.txt").write_text("hello\n")

    read = await executor.execute(ToolCall(name="file_read", arguments={"path": "a.txt"}), plan)
    write = await executor.execute(
        ToolCall(name="file_write", arguments={"path": "b.txt", "content": "x"}), plan
    )

    assert (read.text, read.metadata["outcome"]) == ("hello\n", "ok")
    assert write.metadata["outcome"] == "denied"
    assert not (workspace / "b.txt").exists()


async def test_an_escape_attempt_comes_back_as_an_error_result(
    bus: InProcessEventBus, workspace: Path
) -> None:
    executor = ToolExecutor(ToolRegistry(builtin_tools()), bus)
    scope = CallScope(workspace=workspace, session_id="s1")
    call = ToolCall(name="file_read", arguments={"path": "../outside/secret.txt"})

    result = await executor.execute(call, scope)

    assert result.metadata["outcome"] == "error"
    assert "'..' may not climb above the workspace root" in result.text
    assert "hint:" in result.text
