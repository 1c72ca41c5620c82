"""`promptline mcp`: the MCP servers PromptLine uses, and PromptLine as an MCP server.

Command bodies import what they need inside, so `promptline --help` stays fast."""

from __future__ import annotations

import click

from promptline.cli.runtime import CliOptions

pass_options = click.make_pass_decorator(CliOptions, ensure=True)


@click.group("mcp")
def mcp_group() -> None:
    """MCP: inspect the configured servers, call their tools, serve PromptLine over MCP."""


@mcp_group.command("serve")
@pass_options
def mcp_serve(options: CliOptions) -> None:
    """Serve PromptLine over MCP on stdin/stdout, for clients that start their servers.

    Each agent is a tool (task in, answer out; pass the result's session_id back to go on);
    with mcp_server.expose_tools the registered tools are offered too. Calls run as the
    local user. Only MCP goes to stdout; logs and errors go to stderr.
    """
    from promptline.cli.runtime import run, services

    async def main() -> None:
        from promptline.gateway.mcp_server import serve_stdio, stdio_wire

        # From start-up to exit, stdout carries MCP alone: anything else lands on stderr.
        with stdio_wire() as (wire_in, wire_out):
            async with services(options) as app:
                await app.start_runtime()
                await serve_stdio(app, wire_in, wire_out)

    run(main)
