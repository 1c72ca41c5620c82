"""Helpers of the sandbox tests: the backends that run on this machine, a command run in a
sandbox, and processes found by a marker in their command line."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from promptline.security.sandbox import Sandbox, SandboxLimits, SandboxResult, bwrap_problem

STUCK = 10.0
"""Bounds a wait that should end at once; only reached if the code under test is broken."""

BWRAP_PROBLEM = bwrap_problem()
needs_bwrap = pytest.mark.skipif(
    BWRAP_PROBLEM is not None, reason=f"bubblewrap cannot run here: {BWRAP_PROBLEM}"
)
needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


async def sh(
    sandbox: Sandbox, workspace: Path, command: str, limits: SandboxLimits | None = None
) -> SandboxResult:
    """``command`` run by /bin/sh in ``sandbox``, in ``workspace``."""
    return await sandbox.run(
        ["/bin/sh", "-c", command],
        workspace=workspace,
        cwd=workspace,
        env=sandbox.environment(workspace),
        limits=limits or SandboxLimits(time_secs=STUCK * 3),
    )


def marked(marker: str) -> list[int]:
    """The live processes (seen from here) whose command line holds ``marker``, shells aside."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and cmdline.startswith("sleep") and state not in ("Z", "X"):
            found.append(int(name))
    return found


async def until(check: Callable[[], bool], what: str) -> None:
    """Poll ``check()`` until it is true, within a bound."""
    deadline = asyncio.get_running_loop().time() + STUCK
    while not check():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.01)
