"""The ``process`` sandbox (and ``none``): the command runs as PromptLine's own user, in its
workspace, under kernel limits set by a small launcher, its whole tree killed at the end.

What it contains: CPU seconds, address space, open files and file size per process
(rlimits), the number of processes of the command's tree (counted by the launcher, which kills
the tree past it; RLIMIT_NPROC as well, which the kernel does not apply to root), wall-clock
time, output, and the environment (an allow-list). What it does not: the file system (a
command reads and writes whatever the server's user may) and the network.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from promptline.security.sandbox.base import (
    SandboxKind,
    SandboxLimits,
    SandboxResult,
    limit_hit,
)

__all__ = ["LAUNCHER", "NoSandbox", "ProcessSandbox", "launch"]

LAUNCHER = Path(__file__).with_name("launcher.py")

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


class ProcessSandbox:
    """Kernel limits and a killed process tree; see the module docstring."""

    kind: SandboxKind = "process"

    def __init__(self, pass_env: Sequence[str] = ()) -> None:
        self.pass_env = tuple(pass_env)

    def environment(
        self, workspace: Path, extra: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """PATH, HOME (the workspace), LANG, the allowed variables of the server's own
        environment, then ``extra``; nothing else of the server's (its keys stay out)."""
        env = {
            "PATH": os.environ.get("PATH") or DEFAULT_PATH,
            "HOME": str(workspace),
            "LANG": "C.UTF-8",
        }
        env.update({name: os.environ[name] for name in self.pass_env if name in os.environ})
        if extra:
            env.update(extra)
        return env

    async def run(
        self,
        argv: Sequence[str],
        *,
        workspace: Path,
        cwd: Path,
        env: Mapping[str, str],
        limits: SandboxLimits,
        stdin: bytes | None = None,
        max_output_chars: int = 100_000,
        on_output: Callable[[str], None] | None = None,
    ) -> SandboxResult:
        return await launch(
            self.kind,
            argv,
            cwd=cwd,
            env=env,
            limits=limits,
            stdin=stdin,
            max_output_chars=max_output_chars,
            on_output=on_output,
        )


class NoSandbox(ProcessSandbox):
    """``none``: no kernel limits and no process count; only the wall-clock limit, the output
    limit, the environment allow-list and the killed tree."""

    kind: SandboxKind = "none"

    async def run(
        self,
        argv: Sequence[str],
        *,
        workspace: Path,
        cwd: Path,
        env: Mapping[str, str],
        limits: SandboxLimits,
        stdin: bytes | None = None,
        max_output_chars: int = 100_000,
        on_output: Callable[[str], None] | None = None,
    ) -> SandboxResult:
        bare = SandboxLimits(max_output_bytes=limits.max_output_bytes, time_secs=limits.time_secs)
        return await launch(
            self.kind,
            argv,
            cwd=cwd,
            env=env,
            limits=bare,
            stdin=stdin,
            max_output_chars=max_output_chars,
            on_output=on_output,
        )


async def launch(
    kind: SandboxKind,
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    limits: SandboxLimits,
    stdin: bytes | None,
    max_output_chars: int,
    on_output: Callable[[str], None] | None,
) -> SandboxResult:
    """Run ``argv`` through the launcher under ``limits``; `OSError` when it cannot start."""
    from promptline.security.sandbox.run import run_process

    rlimits = limits.rlimits()
    if limits.max_processes is not None:
        # Counted per user by the kernel (threads included): room for what the user already
        # runs. Root is exempt; the launcher's count applies to everyone.
        rlimits["RLIMIT_NPROC"] = _user_processes() + 2 * limits.max_processes
    read_end, write_end = os.pipe()
    config = {
        "status_fd": write_end,
        "parent": os.getpid(),
        "rlimits": rlimits,
        "max_processes": limits.max_processes,
    }
    try:
        try:
            result = await run_process(
                [sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(config), *argv],
                cwd=cwd,
                env=env,
                time_limit=limits.time_secs,
                max_output_chars=max_output_chars,
                on_output=on_output,
                stdin=stdin,
                max_output_bytes=limits.max_output_bytes,
                pass_fds=(write_end,),
            )
        finally:
            os.close(write_end)
        status = _status(read_end)
    finally:
        os.close(read_end)
    exit_code = result.exit_code
    told = status.get("exit")
    if exit_code is not None and isinstance(told, int):
        exit_code = told
    count = status.get("count")
    processes = count if status.get("limit") == "processes" and isinstance(count, int) else None
    return SandboxResult(
        exit_code=exit_code,
        output=result.output,
        omitted_chars=result.omitted_chars,
        timed_out=result.timed_out,
        sandbox=kind,
        limit=limit_hit(
            limits,
            exit_code=exit_code,
            output=result.output,
            timed_out=result.timed_out,
            output_cut_at=result.output_cut_at,
            processes=processes,
        ),
        output_cut_at=result.output_cut_at,
    )


def _status(fd: int) -> dict[str, object]:
    """The launcher's last word (empty when it was killed before saying it)."""
    os.set_blocking(fd, False)
    data = b""
    try:
        while chunk := os.read(fd, 4096):
            data += chunk
    except BlockingIOError:
        pass
    try:
        status = json.loads(data.decode() or "{}")
    except ValueError:
        return {}
    return status if isinstance(status, dict) else {}


def _user_processes() -> int:
    """Processes of this user now (from /proc; 0 where there is none)."""
    uid = os.getuid()
    count = 0
    try:
        names = os.listdir("/proc")
    except OSError:
        return 0
    for name in names:
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    count += 1
            except OSError:
                continue
    return count
