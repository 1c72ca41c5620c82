"""The ``bubblewrap`` sandbox: the command runs under ``bwrap`` in new namespaces (user, PID,
IPC, UTS, cgroup and, unless allowed, network), sees the system read-only, its workspace
read-write, a private /tmp and nothing else of the host's files (PromptLine's home included);
the launcher around ``bwrap`` applies the same limits as the process sandbox.

What it does not contain: the kernel is shared (a kernel exploit escapes it), the system's
files under /usr and the few of /etc it binds are readable, and with network allowed the
command reaches whatever the host reaches.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from promptline.security.sandbox.base import (
    SandboxKind,
    SandboxLimits,
    SandboxResult,
    SandboxUnavailable,
)
from promptline.security.sandbox.process import ProcessSandbox, launch

__all__ = ["BubblewrapSandbox", "bwrap_args", "bwrap_problem"]

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
"""Bound read-only (a symbolic link, as /bin is on merged-/usr systems, stays one)."""

ETC_FILES = (
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/resolv.conf",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/alternatives",
    "/etc/ssl",
    "/etc/ca-certificates",
)
"""The part of /etc programs need (users, name lookup, libraries, time zone, certificates)."""


def bwrap_args(workspace: Path, cwd: Path, *, network: bool) -> list[str]:
    """The ``bwrap`` command line (up to ``--``) for a command run in ``cwd``."""
    args = ["bwrap"]
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in ETC_FILES:
        args += ["--ro-bind-try", path, path]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    args += ["--bind", str(workspace), str(workspace), "--remount-ro", "/"]
    args += ["--unshare-all"] + (["--share-net"] if network else [])
    args += ["--die-with-parent", "--new-session", "--chdir", str(cwd), "--"]
    return args


@functools.cache
def bwrap_problem() -> str | None:
    """Why bubblewrap cannot run commands here, or None when it can (asked once per process:
    it runs ``bwrap`` on ``true``)."""
    if not sys.platform.startswith("linux"):
        return f"bubblewrap runs on Linux only (this is {sys.platform})"
    if shutil.which("bwrap") is None:
        return "bwrap is not installed (apt-get install bubblewrap)"
    here = Path("/")
    try:
        done = subprocess.run(
            [*bwrap_args(here, here, network=False), "true"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bwrap cannot be run: {exc}"
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        return "bwrap fails here: " + (reason[-1] if reason else f"exit code {done.returncode}")
    return None


class BubblewrapSandbox(ProcessSandbox):
    """Namespaces around the process sandbox; see the module docstring."""

    kind: SandboxKind = "bubblewrap"

    def __init__(self, pass_env: Sequence[str] = (), *, network: bool = False) -> None:
        super().__init__(pass_env)
        self.network = network

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
        problem = bwrap_problem()
        if problem is not None:
            raise SandboxUnavailable(f"the bubblewrap sandbox cannot run here: {problem}")
        return await launch(
            self.kind,
            [*bwrap_args(workspace, cwd, network=self.network), *argv],
            cwd=cwd,
            env=env,
            limits=limits,
            stdin=stdin,
            max_output_chars=max_output_chars,
            on_output=on_output,
        )
