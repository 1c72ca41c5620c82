"""Shared pieces of the MCP client tests: the test server's command line, an HTTP test server
run as a subprocess, and waiting for a condition."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

SERVER_SCRIPT = Path(__file__).with_name("mcp_test_server.py")
PYTHON = sys.executable

# Bounds a wait that should end quickly; only reached if the code under test is broken.
STUCK = 30.0


def stdio_server(
    state: Path | None = None, *, legacy: bool = False, **extra: Any
) -> dict[str, Any]:
    """The config of the test server over stdio (``state``: where ``hang`` leaves marks;
    ``legacy``: it speaks only the 2025-11-25 protocol)."""
    args = [str(SERVER_SCRIPT)]
    if state is not None:
        args += ["--state", str(state)]
    if legacy:
        args.append("--legacy")
    return {"command": PYTHON, "args": args, **extra}


@contextlib.asynccontextmanager
async def http_server(transport: str, state: Path | None = None) -> AsyncIterator[str]:
    """Run the test server over ``transport`` (streamable_http or sse); yields its URL (over
    Streamable HTTP, the same with ``/legacy/mcp`` reaches a server of the 2025-11-25 era)."""
    args = [str(SERVER_SCRIPT), "--transport", transport]
    if state is not None:
        args += ["--state", str(state)]
    process = await asyncio.create_subprocess_exec(
        PYTHON, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), STUCK)).decode()
        assert line.startswith("PORT "), line
        port = int(line.split()[1])
        path = "/sse" if transport == "sse" else "/mcp"
        yield f"http://127.0.0.1:{port}{path}"
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()


async def wait_until(condition: Callable[[], bool], what: str, within: float = STUCK) -> None:
    """Wait until ``condition()`` holds (checked often), failing with ``what`` after
    ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.02)
