"""`promptline mcp`: the MCP servers PromptLine uses, and PromptLine as an MCP server.

Command bodies import what they need inside, so `promptline --help` stays fast."""

from __future__ import annotations

import click

from promptline.cli.runtime import CliOptions

pass_options = click.make_pass_decorator(CliOptions, ensure=True)


@click.group("mcp")
def mcp_group() -> None:
    """MCP: inspect the configured servers, call their tools, serve PromptLine over MCP."""
