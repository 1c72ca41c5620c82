"""``shell_execute``: a command line run by ``/bin/sh`` in the workspace, in the agent's
sandbox (``security.sandbox``) under the configured resource limits, its output streamed as
progress while it runs and saved whole (up to a bound) to a file of the workspace that the
answer names. A limit the command hits, and a destination the sandbox's egress proxy refuses
it, are reported as a ``security_alert``."""

from __future__ import annotations

import math
import signal
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from promptline.tools.base import ToolContext, ToolError, ToolOutput
from promptline.tools.builtin.output_file import MAX_OUTPUT_FILE_BYTES, OutputFile
from promptline.tools.builtin.workspace import resolve_in_workspace, workspace_root
from promptline.tools.function import tool

if TYPE_CHECKING:
    from promptline.security.sandbox import SandboxResult

__all__ = ["MAX_SHELL_OUTPUT_CHARS", "shell_execute"]

MAX_SHELL_OUTPUT_CHARS = 100_000
"""Output kept per command (its head and tail); the executor may cut the answer further."""

_MAX_REFUSALS = 20
"""Refused destinations an alert lists (the first ones)."""


@tool(name="shell_execute", destructive=True)
async def shell_execute(
    command: str,
    cwd: str = ".",
    timeout: Annotated[float, Field(gt=0)] | None = None,  # noqa: ASYNC109 - the model's knob
    *,
    context: ToolContext,
) -> ToolOutput:
    """Run a command with /bin/sh in the workspace (no stdin, none of the server's
    environment): its exit code and output. A long output is cut to its head and tail, and
    kept whole in a file the answer names.

    Args:
        command: The command line.
        cwd: Folder to run in, relative to the workspace root.
        timeout: Seconds before it is killed (at most the configured limit).
    """
    if not command.strip():
        raise ToolError("the command is empty", hint="give a command line to run")
    folder = resolve_in_workspace(context.workspace, cwd)
    if not folder.is_dir():
        raise ToolError(f"cwd {cwd!r} is not a folder of the workspace", hint="give a folder")
    from promptline.security.sandbox import ProcessSandbox, SandboxLimits, SandboxUnavailable
    from promptline.security.sandbox.base import SHELL

    limit = _time_limit(timeout, context)
    limits = SandboxLimits.from_config(context.limits, limit)
    sandbox = context.sandbox or ProcessSandbox()
    root = workspace_root(context.workspace)
    env = sandbox.environment(root, context.env)
    log = OutputFile.create(context.workspace, context.call_id)
    # A watcher, and a call stopped from outside (whose answer shows its last status), learn
    # where the output goes.
    context.report_progress(message=f"the whole output goes to {log.name}")

    def on_output(text: str) -> None:
        log.write(text)
        context.report_progress(output=text)

    try:
        result = await sandbox.run(
            [SHELL, "-c", command],
            workspace=root,
            cwd=folder,
            env=env,
            limits=limits,
            max_output_chars=MAX_SHELL_OUTPUT_CHARS,
            on_output=on_output,
        )
    except SandboxUnavailable as exc:
        raise ToolError(
            str(exc),
            hint="promptline doctor says what it needs; or choose another sandbox where it "
            "was chosen (security.sandbox, the agent's, security.sandbox_channels or the "
            "session's: the strongest of them applies)",
        ) from exc
    except OSError as exc:
        raise ToolError(f"cannot start {SHELL}: {exc.strerror}") from exc
    finally:
        log.close()
    return _answer(result, log, limit, command)


def _answer(
    result: SandboxResult, log: OutputFile, limit: float | None, command: str
) -> ToolOutput:
    """The output (head and tail), how the command ended, the limit it hit, and where the
    whole output is."""
    output = result.output if result.output else "(no output)\n"
    if not output.endswith("\n"):
        output += "\n"
    if result.timed_out:
        status = f"[timed out after {limit:g} s: the command and its processes were killed]"
    else:
        status = f"[exit code {result.exit_code}{_signal_note(result.exit_code)}]"
    hit = result.limit
    if hit is not None and hit.limit != "time":
        status += f"\n[{hit.message} (sandbox {result.sandbox})]"
    metadata: dict[str, Any] = {
        "exit_code": result.exit_code,
        "timed_out": result.timed_out,
        "omitted_chars": result.omitted_chars,
        "output_file": log.name,
        "output_bytes": log.total,
        "sandbox": result.sandbox,
        "limit": None if hit is None else hit.limit,
    }
    refused = list(result.egress_refused)
    if hit is not None and hit.limit != "time":
        details: dict[str, Any] = {
            "limit": hit.limit,
            "sandbox": result.sandbox,
            "command": command[:200],
        }
        if refused:
            details["egress_refused"] = refused[:_MAX_REFUSALS]
        metadata["security_alert"] = {
            "severity": "warning",
            "kind": "sandbox_limit",
            "message": f"shell_execute {hit.message}",
            "details": details,
        }
    elif refused:
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        metadata["security_alert"] = {
            "severity": "warning",
            "kind": "egress_refused",
            "message": f"shell_execute was refused a destination: {refused[0]}{more}",
            "details": {
                "egress_refused": refused[:_MAX_REFUSALS],
                "sandbox": result.sandbox,
                "command": command[:200],
            },
        }
    return ToolOutput(
        content=f"{output}{status}\n{_file_note(log)}",
        is_error=result.timed_out or result.exit_code != 0 or hit is not None,
        metadata=metadata,
    )


def _file_note(log: OutputFile) -> str:
    """The line that names the output file and says whether it holds all of the output."""
    if log.error is not None:
        return f"[the output could not be saved to {log.name}: {log.error}]"
    if log.cut:
        return (
            f"[the output ({log.total} bytes) is in {log.name}, cut in the middle to "
            f"{MAX_OUTPUT_FILE_BYTES // 1048576} MiB; read it with file_read]"
        )
    return f"[the whole output ({log.total} bytes) is in {log.name}; read it with file_read]"


def _time_limit(asked: float | None, context: ToolContext) -> float | None:
    """The tightest of the model's ``timeout``, ``timeout_secs`` and the call's own limit."""
    configured = context.limits.get("timeout_secs")
    candidates = [float(v) for v in (asked, configured, context.timeout) if v is not None and v > 0]
    limit = min(candidates, default=None)
    return limit if limit is None or math.isfinite(limit) else None


def _signal_note(code: int | None) -> str:
    """What killed the process, when a signal did (the shell reports it as 128 + signal)."""
    if code is None:
        return ""
    number = -code if code < 0 else code - 128 if code > 128 else 0
    if number <= 0:
        return ""
    try:
        name = signal.Signals(number).name
    except ValueError:
        return ""
    reason = {"SIGXCPU": ", CPU time limit reached", "SIGKILL": ", killed"}.get(name, "")
    return f": {name}{reason}"
