"""What a tool is: its description for the model, its flags, and how it runs.

A tool receives validated arguments and a `ToolContext` (who is calling, the workspace it may
touch, a progress reporter and a cancellation flag) and returns anything JSON-like, text, or a
`ToolOutput`. The executor turns that into the `ToolResult` the model sees.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from promptline.core.errors import PromptLineError
from promptline.core.messages import ContentPart

if TYPE_CHECKING:
    from promptline.security.sandbox.base import Sandbox

__all__ = [
    "Progress",
    "ProgressReporter",
    "Tool",
    "ToolCancelled",
    "ToolContext",
    "ToolError",
    "ToolOutput",
    "applies_here",
    "is_idempotent",
]

ProgressReporter = Callable[..., None]
"""``report(percent=None, message=None, output=None)``: called from the tool (any thread)."""


class Progress:
    """A tool's progress reporter: ``progress(percent, message, output)``.

    Declare a parameter of this type in a `@tool` function to receive one. It is safe to call
    from a worker thread and as often as the tool likes: the executor merges the reports into
    at most one ``tool_progress`` event per ``executor.PROGRESS_INTERVAL_SECS``, with bounded
    output.
    """

    __slots__ = ("_report",)

    def __init__(self, report: ProgressReporter | None) -> None:
        self._report = report

    def __call__(
        self, percent: float | None = None, message: str | None = None, output: str | None = None
    ) -> None:
        if self._report is not None:
            self._report(percent=percent, message=message, output=output)


class ToolError(PromptLineError):
    """A tool failed in a way the model should be told about (bad path, command failed, ...).

    Raised inside a tool, it becomes an error `ToolResult` carrying ``message`` (and the hint);
    the run goes on and the model may try something else.
    """

    code = "tool_error"


class ToolCancelled(PromptLineError):
    """The call was cancelled (the run was cancelled or stopped) while the tool ran."""

    code = "tool_cancelled"


@dataclass(frozen=True, slots=True)
class ToolOutput:
    """A tool's answer with more than text: content parts, an error flag, metadata.

    Return plain text, a JSON-like value or a `ToolOutput`; only the last can mark itself as
    an error without raising or attach metadata (kept in the event log, not shown to the model).
    """

    content: str | list[ContentPart]
    is_error: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ToolContext:
    """What a running tool may know and use about its call.

    ``workspace`` is the only folder file tools may touch. ``report_progress`` reports
    progress, which the executor publishes as ``tool_progress`` events (merged to a bounded
    rate and size); it is safe to call from a worker thread. ``cancelled`` is set when
    the call is cancelled: async tools are cancelled by `asyncio`, sync tools (which run in a
    thread and cannot be interrupted) should poll `check_cancelled` in long loops.
    """

    call_id: str
    tool: str
    workspace: Path
    session_id: str | None = None
    run_id: str | None = None
    user_id: str | None = None
    tenant_id: str | None = None
    agent: str | None = None
    timeout: float | None = None
    env: dict[str, str] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)
    sandbox: Sandbox | None = None
    """Where commands of this call run (the strongest of its agent's, its channel's and its
    session's sandbox); None: the process sandbox."""
    _progress: ProgressReporter | None = None
    _cancelled: threading.Event = field(default_factory=threading.Event)

    def report_progress(
        self,
        percent: float | None = None,
        message: str | None = None,
        output: str | None = None,
    ) -> None:
        """Tell the watchers how far the tool got (0-100), what it is doing, partial output.

        Reports close together are merged (output joined, the latest percent and message
        win); a call that stops early answers with its last message and the end of its output.
        """
        if self._progress is not None:
            self._progress(percent=percent, message=message, output=output)

    @property
    def progress(self) -> Progress:
        """The reporter as a callable (what `@tool` functions receive)."""
        return Progress(self._progress)

    @property
    def cancelled(self) -> bool:
        """True once the call has been cancelled."""
        return self._cancelled.is_set()

    def check_cancelled(self) -> None:
        """Raise `ToolCancelled` if the call has been cancelled (for long sync loops)."""
        if self._cancelled.is_set():
            raise ToolCancelled(f"{self.tool} was cancelled")

    def cancel(self) -> None:
        """Mark the call as cancelled (the executor does this)."""
        self._cancelled.set()

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake with `ToolCancelled` when the call is cancelled meanwhile."""
        await asyncio.sleep(seconds)
        self.check_cancelled()


@runtime_checkable
class Tool(Protocol):
    """A tool the model may call.

    ``parameters`` is the JSON schema of the arguments object. ``read_only`` tools change
    nothing (they may run in plan mode and are allowed by default); ``destructive`` ones may
    lose data (shown to whoever approves). ``timeout`` (seconds) is the tool's own limit,
    capped by the configured ``security.resource_limits.timeout_secs``.
    """

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def parameters(self) -> dict[str, Any]: ...

    @property
    def read_only(self) -> bool: ...

    @property
    def destructive(self) -> bool: ...

    @property
    def timeout(self) -> float | None: ...

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """The arguments, checked and converted; `InvalidInputError` saying what is wrong."""
        ...

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> Any:
        """Do the work with validated ``arguments``; return text, JSON-like data or
        `ToolOutput`; raise `ToolError` for a failure the model should see."""
        ...


def applies_here(tool: Tool, workspace: Path) -> bool:
    """True when ``tool`` is worth offering to a run working in ``workspace``: its
    ``applies_to(workspace)`` if it has one (the git tools need a repository, the skill tools
    a skill), else always. A tool not offered can still be called; it is only left out of
    what the model is told, which every call pays for."""
    check = getattr(tool, "applies_to", None)
    return True if check is None else bool(check(workspace))


def is_idempotent(tool: Tool) -> bool:
    """True when a repeated call of ``tool`` does no more than one call: its ``idempotent``
    attribute if it has one, else its ``read_only``. Only such a call, cut short by a crash,
    is run again when the run resumes."""
    flag = getattr(tool, "idempotent", None)
    return bool(tool.read_only if flag is None else flag)
