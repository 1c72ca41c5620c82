"""The ``bubblewrap`` sandbox: the command runs under ``bwrap`` in new namespaces (user, PID,
IPC, UTS, cgroup, network), sees the system read-only, its workspace read-write, a private
/tmp and nothing else of the host's files (PromptLine's home included); the launcher around
``bwrap`` applies the same limits as the process sandbox.

The network (``security.sandbox_network``): ``none`` leaves the command only a loopback of its
own; ``proxy`` adds the egress bridge (`bridge.py`) in front of the command, which forwards
the proxy variables' address to an `EgressProxy` of this command's own (its Unix socket is
bound into the sandbox; no other command's is); ``host`` shares the host's network.

What it does not contain: the kernel is shared (a kernel exploit escapes it), the system's
files under /usr and the few of /etc it binds are readable (and the Python installation that
runs the bridge, under ``proxy``), and under ``host`` the command reaches whatever the host
reaches.
"""

from __future__ import annotations

import dataclasses
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
    SandboxNetwork,
    SandboxResult,
    SandboxUnavailable,
)
from promptline.security.sandbox.egress import EgressProxy, Refuse
from promptline.security.sandbox.process import ProcessSandbox, launch

__all__ = ["BubblewrapSandbox", "bridge_argv", "bwrap_args", "bwrap_problem"]

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

BRIDGE = Path(__file__).with_name("bridge.py")

INSIDE = "/run/promptline"
"""Where the bridge and the proxy's socket are seen inside the sandbox."""


def bwrap_args(
    workspace: Path, cwd: Path, *, network: SandboxNetwork = "none", egress: Path | None = None
) -> list[str]:
    """The ``bwrap`` command line (up to ``--``) for a command run in ``cwd``; under the
    ``proxy`` network, ``egress`` is the proxy's socket, and the bridge starts the command
    (see `bridge_argv`)."""
    args = ["bwrap"]
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in ETC_FILES:
        args += ["--ro-bind-try", path, path]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    if network == "proxy":
        if egress is None:
            raise ValueError("the proxy network needs the egress proxy's socket")
        for folder in _interpreter_dirs():
            args += ["--ro-bind", folder, folder]
        args += ["--ro-bind", str(BRIDGE), f"{INSIDE}/bridge.py"]
        args += ["--bind", str(egress), f"{INSIDE}/egress.sock"]
    args += ["--bind", str(workspace), str(workspace), "--remount-ro", "/"]
    args += ["--unshare-all"] + (["--share-net"] if network == "host" else [])
    args += ["--die-with-parent", "--new-session", "--chdir", str(cwd), "--"]
    return args


def bridge_argv() -> list[str]:
    """What starts the command under the ``proxy`` network: the bridge, run by this Python
    (bound read-only into the sandbox where the system's folders do not hold it)."""
    return [_interpreter(), "-I", "-S", f"{INSIDE}/bridge.py", f"{INSIDE}/egress.sock"]


def _interpreter() -> str:
    # A virtual environment's python is a link to (or copy of) its base one.
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def _interpreter_dirs() -> list[str]:
    """The folders of this Python's installation that the system's folders do not hold."""
    found: list[str] = []
    for folder in (os.path.realpath(sys.base_prefix), os.path.dirname(_interpreter())):
        inside = any(
            folder == system or folder.startswith(system + "/")
            for system in (os.path.realpath(path) for path in SYSTEM_DIRS)
        )
        held = any(folder == kept or folder.startswith(kept + "/") for kept in found)
        if not inside and not held:
            found.append(folder)
    return found


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
            [*bwrap_args(here, here), "true"],
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

    def __init__(
        self,
        pass_env: Sequence[str] = (),
        *,
        network: SandboxNetwork = "none",
        egress: Refuse | None = None,
    ) -> None:
        """``egress`` is the policy of the ``proxy`` network (which needs one)."""
        super().__init__(pass_env)
        if network == "proxy" and egress is None:
            raise ValueError("the proxy network needs an egress policy (egress=...)")
        self.network: SandboxNetwork = network
        self.egress = egress

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
        if self.network != "proxy" or self.egress is None:
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
        async with EgressProxy(self.egress) as proxy:
            prefix = bwrap_args(workspace, cwd, network="proxy", egress=proxy.socket_path)
            result = await launch(
                self.kind,
                [*prefix, *bridge_argv(), *argv],
                cwd=cwd,
                env=env,
                limits=limits,
                stdin=stdin,
                max_output_chars=max_output_chars,
                on_output=on_output,
            )
        return dataclasses.replace(result, egress_refused=tuple(proxy.refused))
