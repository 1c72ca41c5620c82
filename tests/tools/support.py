"""Helpers shared by the tools tests: calling a tool directly, and reading what an executor
recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from promptline.core.events import Event
from promptline.events.bus import InProcessEventBus
from promptline.tools.base import Tool, ToolContext

STUCK = 10.0
"""Bounds a wait that should end at once; only reached if the code under test is broken."""


def context(
    workspace: Path,
    *,
    tool: str = "test",
    limits: dict[str, Any] | None = None,
    timeout: float | None = None,
    progress: list[dict[str, Any]] | None = None,
) -> ToolContext:
    """A context for calling a tool directly; progress reports land in ``progress``."""

    def report(**values: Any) -> None:
        if progress is not None:
            progress.append(values)

    return ToolContext(
        call_id="call_test",
        tool=tool,
        workspace=workspace,
        limits=dict(limits or {}),
        timeout=timeout,
        _progress=report,
    )


async def call(tool: Tool, workspace: Path, /, **arguments: Any) -> Any:
    """Validate ``arguments`` and run ``tool`` in ``workspace``, as the executor would."""
    return await tool.run(tool.validate(arguments), context(workspace, tool=tool.name))


async def recorded(bus: InProcessEventBus, stream: str = "s1") -> list[Event]:
    """Every event of ``stream``, in order."""
    return await bus.store.read_stream(stream)


def types(events: list[Event]) -> list[str]:
    return [event.type for event in events]


def real(path: Path) -> str:
    """``path`` with its symlinks resolved, as a string (what tools show and run in)."""
    return str(path.resolve())


def listing(folder: Path) -> list[str]:
    """The names in ``folder``, sorted."""
    return sorted(p.name for p in folder.iterdir())
