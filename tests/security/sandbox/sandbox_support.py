"""Helpers of the sandbox tests: the backends that run on this machine, a command run in a
sandbox, processes found by a marker in their command line, and an HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
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


@dataclass
class HostServer:
    """An HTTP server on the host's 127.0.0.1: ``heard`` holds the head of each request."""

    port: int
    heard: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def host_server(tls: ssl.SSLContext | None = None) -> AsyncIterator[HostServer]:
    """A server on 127.0.0.1 that answers every request ``hello from the host`` (over TLS
    with ``tls``)."""
    server: HostServer | None = None

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            head = await reader.readuntil(b"\r\n\r\n")
            assert server is not None
            server.heard.append(head.decode("latin-1"))
            body = b"hello from the host\n"
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (len(body), body)
            )
            await writer.drain()
        writer.close()

    listening = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=tls)
    server = HostServer(listening.sockets[0].getsockname()[1])
    try:
        yield server
    finally:
        listening.close()
        await listening.wait_closed()
