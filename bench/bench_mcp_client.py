"""What PromptLine adds to calling an MCP tool: the ``echo`` tool of a stdio MCP server called
through PromptLine's `ToolExecutor` (argument validation against the tool's schema, the
``tool_command``/``tool_result`` events in an in-memory log, the result conversion) against
the same call through the bare ``mcp`` SDK client.

Each row has its own server process (the same small server, written by this script) and its
own connection. After a warm-up, the rows take turns in rounds of ``--round`` calls, so a
slower moment of the machine falls on both. One call at a time.

    python bench/bench_mcp_client.py [--calls N] [--round R]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

SERVER = """\
import anyio
import mcp_types as types
from mcp.server import Server
from mcp.server.stdio import stdio_server

TOOL = types.Tool(
    name="echo",
    description="Send the text back.",
    input_schema={"type": "object", "properties": {"text": {"type": "string"}},
                  "required": ["text"]},
    annotations=types.ToolAnnotations(read_only_hint=True),
)

async def list_tools(ctx, params):
    return types.ListToolsResult(tools=[TOOL])

async def call_tool(ctx, params):
    text = params.arguments["text"]
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])

async def main():
    server = Server("bench", on_list_tools=list_tools, on_call_tool=call_tool)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())

anyio.run(main)
"""
WARMUP = 50
TEXT = "hello, benchmark"


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100), nearest rank."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def main(calls: int, round_size: int) -> None:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters, stdio_client

    from promptline.config.plugins import McpServerSettings
    from promptline.core.messages import ToolCall
    from promptline.events.bus import InProcessEventBus
    from promptline.events.memory import InMemoryEventStore
    from promptline.tools.executor import CallScope, ToolExecutor
    from promptline.tools.mcp import McpManager

    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "echo_server.py"
        script.write_text(SERVER, encoding="utf-8")

        manager = McpManager(
            {"bench": McpServerSettings(command=sys.executable, args=[str(script)])}
        )
        bus = InProcessEventBus(InMemoryEventStore())
        executor = ToolExecutor(manager.registry, bus)
        scope = CallScope(workspace=Path(tmp))
        params = StdioServerParameters(command=sys.executable, args=[str(script)])
        async with Client(stdio_client(params, errlog=sys.stderr), cache=None) as client:
            await manager.start()
            status = manager.status()[0]
            assert status.state == "connected", status.error

            async def direct() -> None:
                result = await client.call_tool("echo", {"text": TEXT})
                assert result.content[0].text == TEXT  # type: ignore[union-attr]

            async def through_promptline() -> None:
                call = ToolCall(name="mcp.bench.echo", arguments={"text": TEXT})
                result = await executor.execute(call, scope)
                assert result.text == TEXT, result

            rows: dict[str, Callable[[], Awaitable[None]]] = {
                "mcp SDK ClientSession": direct,
                "PromptLine ToolExecutor": through_promptline,
            }
            times: dict[str, list[float]] = {name: [] for name in rows}
            for call_once in rows.values():
                for _ in range(WARMUP):
                    await call_once()
            started = time.perf_counter()
            done = 0
            while done < calls:
                batch = min(round_size, calls - done)
                for name, call_once in rows.items():
                    for _ in range(batch):
                        begin = time.perf_counter()
                        await call_once()
                        times[name].append((time.perf_counter() - begin) * 1000)
                done += batch
            elapsed = time.perf_counter() - started
            await manager.close()
            await bus.close()

    print(f"MCP tool call (echo over stdio), {calls} calls per row, one at a time")
    print(f"{'row':<26}{'median ms':>11}{'p99 ms':>10}{'mean ms':>10}{'calls/s':>10}")
    medians = {}
    for name, values in times.items():
        medians[name] = statistics.median(values)
        print(
            f"{name:<26}{medians[name]:>11.3f}{percentile(values, 99):>10.3f}"
            f"{statistics.fmean(values):>10.3f}{1000 / statistics.fmean(values):>10.0f}"
        )
    direct_ms = medians["mcp SDK ClientSession"]
    ours_ms = medians["PromptLine ToolExecutor"]
    print(
        f"per-call overhead of PromptLine (median): {ours_ms - direct_ms:.3f} ms; "
        f"ratio {ours_ms / direct_ms:.2f}x; measured in {elapsed:.1f} s"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500, help="calls per row (500)")
    parser.add_argument("--round", type=int, default=50, help="calls per turn of a row (50)")
    options = parser.parse_args()
    asyncio.run(main(options.calls, options.round))
