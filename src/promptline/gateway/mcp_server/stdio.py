"""``promptline mcp serve``: MCP on this process's stdin and stdout, and nothing else there."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from promptline.gateway.mcp_server.protocol import build_server
from promptline.gateway.mcp_server.service import LOCAL_CALLER, McpService
from promptline.security.auth import Caller

if TYPE_CHECKING:
    from promptline.app import App


@contextlib.contextmanager
def stdio_wire() -> Iterator[tuple[BinaryIO, BinaryIO]]:
    """Take this process's stdin and stdout for MCP alone, for as long as it lasts: yields
    private copies of them, and points fd 0 at the null device and fd 1 at stderr, so
    nothing else (a print, a log, a tool's child process) reads the client's messages or
    writes into its stream."""
    sys.stdout.flush()
    wire_in, wire_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(null, 0)
        os.dup2(2, 1)
    finally:
        os.close(null)
    # closefd=False: the text layers the SDK puts over these close them when collected.
    reader = os.fdopen(wire_in, "rb", closefd=False)
    writer = os.fdopen(wire_out, "wb", closefd=False)
    try:
        yield reader, writer
    finally:
        with contextlib.suppress(OSError, ValueError):
            writer.flush()
        sys.stdout.flush()
        os.dup2(wire_in, 0)
        os.dup2(wire_out, 1)
        os.close(wire_in)
        os.close(wire_out)


async def serve_stdio(
    app: App,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
    *,
    caller: Caller = LOCAL_CALLER,
) -> None:
    """Serve MCP on ``stdin``/``stdout`` (default: the process's own) until the client
    closes its end. Calls run as ``caller``."""
    import anyio
    from mcp.server.stdio import stdio_server

    server = build_server(McpService(app), caller=caller)
    text_in = text_out = None
    if stdin is not None:
        text_in = anyio.wrap_file(io.TextIOWrapper(stdin, encoding="utf-8", errors="replace"))
    if stdout is not None:
        text_out = anyio.wrap_file(io.TextIOWrapper(stdout, encoding="utf-8"))
    async with stdio_server(text_in, text_out) as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())
