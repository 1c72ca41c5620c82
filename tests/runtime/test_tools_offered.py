"""Which tools a run is offered: those its agent may use that apply to its workspace, decided
when it starts; a tool left out is still run when the model calls it."""

from __future__ import annotations

from pathlib import Path

from runtime_support import HarnessFactory, of_type, only, scripted

from promptline.runtime import Agent
from promptline.tools.function import tool


def _marked(workspace: Path) -> bool:
    return (workspace / "marker").exists()


@tool(read_only=True, inline=True, applies=_marked)
def picky() -> str:
    """Only worth offering where the marker is."""
    return "picked"


@tool(read_only=True, inline=True)
def anywhere() -> str:
    """Always offered."""
    return "here"


CALL_PICKY = [
    {"tool_calls": [{"name": "picky", "arguments": {}, "id": "call_picky"}]},
    {"expect": "picked", "reply": "done"},
]


async def test_a_tool_that_does_not_apply_to_the_workspace_is_not_offered_but_runs_if_called(
    make_runtime: HarnessFactory,
) -> None:
    h = make_runtime(scripted(CALL_PICKY), [picky, anywhere])

    result = await h.runtime.run("go")

    assert result.ok, result.error
    events = await h.events(result.run_id)
    offered = [[t["name"] for t in e.data.tools] for e in of_type(events, "llm_command")]
    assert offered == [["anywhere"], ["anywhere"]]
    assert only(events, "tool_result").data.result.text == "picked"


async def test_a_tool_that_applies_to_the_workspace_is_offered(
    make_runtime: HarnessFactory, tmp_path: Path
) -> None:
    workspace = tmp_path / "marked"
    workspace.mkdir()
    (workspace / "marker").touch()
    agent = Agent(name="assistant", model="script", workspace=workspace)
    h = make_runtime(scripted(CALL_PICKY), [picky, anywhere], agents=[agent])

    result = await h.runtime.run("go")

    assert result.ok, result.error
    command = of_type(await h.events(result.run_id), "llm_command")[0]
    assert [t["name"] for t in command.data.tools] == ["anywhere", "picky"]
