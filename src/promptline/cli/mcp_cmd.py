"""`promptline mcp`: the MCP servers PromptLine uses, and PromptLine as an MCP server.

Command bodies import what they need inside, so `promptline --help` stays fast."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import click

from promptline.cli.runtime import CliOptions

if TYPE_CHECKING:
    from promptline.tools.base import ToolOutput
    from promptline.tools.mcp import McpManager

pass_options = click.make_pass_decorator(CliOptions, ensure=True)


@click.group("mcp", short_help="MCP servers: list, inspect, call; serve PromptLine.")
def mcp_group() -> None:
    """MCP: inspect the configured servers, call their tools, serve PromptLine over MCP."""


@mcp_group.command("serve", short_help="Serve PromptLine over MCP on stdin/stdout.")
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


# -- the MCP servers PromptLine uses ------------------------------------------------------------


@mcp_group.command("list", short_help="The configured MCP servers and their state.")
@click.option("--json", "as_json", is_flag=True, help="Print the statuses as JSON.")
@pass_options
def mcp_list(options: CliOptions, as_json: bool) -> None:
    """The configured MCP servers: transport, state, tool count, last error. Every enabled
    server is connected (first_use ones too) to tell."""
    from promptline.cli.runtime import print_table, run, write_json

    async def main() -> list[dict[str, Any]]:
        async with _manager(options) as manager:
            await manager.start(connect_all=True)
            return [s.to_dict() for s in manager.status()]

    rows = run(main)
    if as_json:
        write_json(rows)
        return
    if not rows:
        _no_servers()
        return
    table: list[tuple[str, ...]] = []
    for row in rows:
        state = row["state"]
        style = {"connected": "green", "down": "red"}.get(state, "yellow")
        error = row["error"] or ""
        if row["skipped"]:
            error = f"{error}; " if error else ""
            error += f"not offered: {', '.join(row['skipped'])} (`promptline mcp tools` says why)"
        table.append(
            (
                row["name"],
                row["transport"],
                row["connect"],
                f"[{style}]{state}[/]",
                str(row["tools"]),
                error,
            )
        )
    print_table(
        ("server", "transport", "connect", "state", "tools", "error"), table, right={"tools"}
    )


@mcp_group.command("tools", short_help="The tools of one MCP server, or of all.")
@click.argument("server", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the tools as JSON.")
@pass_options
def mcp_tools(options: CliOptions, server: str | None, as_json: bool) -> None:
    """The tools of SERVER (of every enabled server when omitted): the name agents call
    them by, whether they are read-only, what they do. The server's tools that are not
    offered to agents are named on stderr, each with why."""
    from promptline.cli.runtime import console, fail, print_table, run, write_json

    async def main() -> tuple[list[dict[str, Any]], dict[str, str], list[tuple[str, str, str]]]:
        from promptline.core.errors import PromptLineError

        rows: list[dict[str, Any]] = []
        failed: dict[str, str] = {}
        skipped: list[tuple[str, str, str]] = []  # (server, tool, why)
        async with _manager(options) as manager:
            names = [server] if server else [s.name for s in manager.status() if s.enabled]
            for name in names:
                try:
                    tools = await manager.tools(name)
                except PromptLineError as exc:
                    if server:
                        raise
                    failed[name] = exc.message
                    continue
                rows.extend(
                    {
                        "name": t.name,
                        "server": name,
                        "tool": t.remote.name,
                        "read_only": t.read_only,
                        "destructive": t.destructive,
                        "description": t.remote.description,
                        "input_schema": t.parameters,
                    }
                    for t in tools
                )
                skipped.extend((name, tool, why) for tool, why in manager.skipped(name).items())
        return rows, failed, skipped

    rows, failed, skipped = run(main)
    if as_json:
        write_json(rows)
    elif rows:
        print_table(
            ("name", "read-only", "description"),
            ((r["name"], "yes" if r["read_only"] else "", r["description"]) for r in rows),
        )
    elif not failed:
        console().print("no tools")
    for name, tool, why in skipped:
        console(stderr=True).print(f"{name}: {tool} is not offered: {why}", markup=False)
    for name, message in failed.items():
        console(stderr=True).print(f"[yellow]{name}:[/] {message}", markup=True)
    if failed and not rows:
        fail("no MCP server could be reached", hint="`promptline mcp list` shows why")


@mcp_group.command("call", short_help="Call a tool of an MCP server; print its result.")
@click.argument("server")
@click.argument("tool")
@click.argument("pairs", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--args", "args_json", help="The arguments as a JSON object.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole result as JSON.")
@pass_options
def mcp_call(
    options: CliOptions,
    server: str,
    tool: str,
    pairs: tuple[str, ...],
    args_json: str | None,
    as_json: bool,
) -> None:
    """Call TOOL of SERVER and print its result (progress goes to stderr as it comes).

    Arguments come from --args '{"path": "a.txt"}' and/or KEY=VALUE pairs (a VALUE that is
    JSON, such as 3 or true, is taken as such). Exits with 1 when the call fails or the tool
    answers with an error. The permission policy does not apply: this is the operator.
    """
    from promptline.cli.runtime import console, fail, run, write_json

    arguments = _call_arguments(args_json, pairs)

    async def main() -> Any:
        from promptline.cli.runtime import load_settings

        settings = load_settings(options)
        limit = float(settings.security.resource_limits.timeout_secs)
        err = console(stderr=True)

        async def show(progress: float, total: float | None, message: str | None) -> None:
            amount = f"{progress * 100 / total:.0f}%" if total else f"{progress:g}"
            err.print(f"progress {amount}" + (f" {message}" if message else ""), markup=False)

        async with _manager(options) as manager:
            configured = manager.connection(server).settings.timeout_secs
            timeout = limit if configured is None else min(float(configured), limit)
            try:
                async with asyncio.timeout(timeout):
                    return await manager.call(server, tool, arguments, progress=show)
            except TimeoutError:
                fail(f"{tool} of MCP server {server!r} timed out after {timeout:g} s")

    import asyncio

    output = run(main)
    if as_json:
        write_json(_output_json(output))
    else:
        _print_output(output)
    if output.is_error:
        raise SystemExit(1)


@mcp_group.command("resources", short_help="The resources an MCP server offers.")
@click.argument("server")
@click.option("--json", "as_json", is_flag=True, help="Print the resources as JSON.")
@pass_options
def mcp_resources(options: CliOptions, server: str, as_json: bool) -> None:
    """The resources SERVER offers (read one with `promptline mcp read SERVER URI`)."""
    from promptline.cli.runtime import print_table, run, write_json

    async def main() -> list[dict[str, Any]]:
        async with _manager(options) as manager:
            return [vars_of(r) for r in await manager.resources(server)]

    rows = run(main)
    if as_json:
        write_json(rows)
        return
    print_table(
        ("uri", "name", "type", "description"),
        ((r["uri"], r["name"], r["mime_type"] or "", r["description"]) for r in rows),
    )


@mcp_group.command("read")
@click.argument("server")
@click.argument("uri")
@pass_options
def mcp_read(options: CliOptions, server: str, uri: str) -> None:
    """Print the contents of resource URI of SERVER."""
    from promptline.cli.runtime import run

    async def main() -> str:
        async with _manager(options) as manager:
            return await manager.read_resource(server, uri)

    click.echo(run(main))


@mcp_group.command("attach", short_help="Attach an MCP resource or prompt to a session.")
@click.argument("server")
@click.argument("session_id")
@click.option("--resource", "uri", metavar="URI", help="Attach this resource of SERVER.")
@click.option("--prompt", "prompt", metavar="NAME", help="Attach this prompt of SERVER, rendered.")
@click.option(
    "--arg", "-a", "arguments", multiple=True, metavar="KEY=VALUE", help="A prompt argument."
)
@pass_options
def mcp_attach(
    options: CliOptions,
    server: str,
    session_id: str,
    uri: str | None,
    prompt: str | None,
    arguments: tuple[str, ...],
) -> None:
    """Attach a resource (--resource URI) or a rendered prompt (--prompt NAME) of SERVER to
    session SESSION_ID: the agent sees it in the session's next runs. Attaching the same one
    again replaces it."""
    from promptline.cli.commands import operator
    from promptline.cli.runtime import console, fail, run, services

    if (uri is None) == (prompt is None):
        fail("give exactly one of --resource URI or --prompt NAME")
    if arguments and prompt is None:
        fail("--arg goes with --prompt")
    pairs = dict(_pair(a) for a in arguments)

    async def main() -> str:
        async with services(options) as app, _manager(options) as manager:
            if uri is not None:
                session = await manager.attach_resource(
                    app.sessions, session_id, operator(), server, uri
                )
            else:
                assert prompt is not None
                session = await manager.attach_prompt(
                    app.sessions, session_id, operator(), server, prompt, pairs
                )
            return session.id

    attached = run(main)
    what = f"resource {uri}" if uri is not None else f"prompt {prompt}"
    console().print(f"attached {what} of {server} to session {attached}", markup=False)


def _pair(text: str) -> tuple[str, str]:
    from promptline.cli.runtime import fail

    key, sep, value = text.partition("=")
    if not sep or not key:
        fail(f"--arg {text!r} is not KEY=VALUE")
    return key, value


@mcp_group.command("prompts", short_help="The prompts an MCP server offers.")
@click.argument("server")
@click.option("--json", "as_json", is_flag=True, help="Print the prompts as JSON.")
@pass_options
def mcp_prompts(options: CliOptions, server: str, as_json: bool) -> None:
    """The prompts SERVER offers and their arguments (* marks a required one)."""
    from promptline.cli.runtime import print_table, run, write_json

    async def main() -> list[dict[str, Any]]:
        async with _manager(options) as manager:
            return [vars_of(p) for p in await manager.prompts(server)]

    rows = run(main)
    if as_json:
        write_json(rows)
        return
    print_table(
        ("name", "arguments", "description"),
        (
            (
                r["name"],
                ", ".join(f"{a}*" if a in r["required"] else a for a in r["arguments"]),
                r["description"],
            )
            for r in rows
        ),
    )


@contextlib.asynccontextmanager
async def _manager(options: CliOptions) -> AsyncIterator[McpManager]:
    """A manager of the configured servers (no database, no runtime), closed on exit."""
    import logging

    from promptline.cli.runtime import load_settings
    from promptline.config.home import promptline_home
    from promptline.security.egress import EgressPolicy
    from promptline.tools.mcp import McpManager

    # The statuses and errors printed say what went wrong; the log lines would repeat it.
    quiet = logging.NullHandler()
    loggers = [logging.getLogger(name) for name in ("promptline.mcp", "mcp")]
    propagated = [logger.propagate for logger in loggers]
    for logger in loggers:
        logger.addHandler(quiet)
        logger.propagate = False
    settings = load_settings(options)
    home = promptline_home()
    manager = McpManager(
        settings.mcp_servers,
        cache_dir=home / "cache" / "mcp",
        log_dir=home / "logs" / "mcp",
        egress=EgressPolicy(settings.security.egress_allow),
    )
    try:
        yield manager
    finally:
        await manager.close()
        for logger, propagate in zip(loggers, propagated, strict=True):
            logger.removeHandler(quiet)
            logger.propagate = propagate


def _no_servers() -> None:
    from promptline.cli.runtime import console

    console().print("no MCP servers are configured")
    console().print("[yellow]hint:[/] add them under mcp_servers in config.yaml (see docs/mcp.md)")


def _call_arguments(args_json: str | None, pairs: tuple[str, ...]) -> dict[str, Any]:
    import orjson

    from promptline.cli.runtime import fail

    arguments: dict[str, Any] = {}
    if args_json is not None:
        try:
            parsed = orjson.loads(args_json)
        except orjson.JSONDecodeError as exc:
            fail(f"--args is not valid JSON: {exc}", hint="give an object: --args '{\"k\": 1}'")
        if not isinstance(parsed, dict):
            fail("--args must be a JSON object", hint="give an object: --args '{\"k\": 1}'")
        arguments.update(parsed)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"{pair!r} is not KEY=VALUE", hint="write text=hello, or use --args JSON")
        try:
            arguments[key] = orjson.loads(value)
        except orjson.JSONDecodeError:
            arguments[key] = value
    return arguments


def _output_json(output: ToolOutput) -> dict[str, Any]:
    content = output.content
    parts = (
        [{"type": "text", "text": content}]
        if isinstance(content, str)
        else [p.model_dump(exclude_none=True) for p in content]
    )
    return {"is_error": output.is_error, "content": parts, "metadata": output.metadata}


def _print_output(output: ToolOutput) -> None:
    import sys

    from promptline.core.messages import TextPart

    content = output.content
    stream = sys.stderr if output.is_error else sys.stdout
    if isinstance(content, str):
        click.echo(content, file=stream)
        return
    for part in content:
        if isinstance(part, TextPart):
            click.echo(part.text, file=stream)
        else:
            size = len(part.data or "") * 3 // 4
            kind = part.media_type or part.type
            click.echo(f"[{part.type}: {kind}, about {size} bytes]", file=stream)


def vars_of(item: Any) -> dict[str, Any]:
    """A dataclass's fields as a JSON-ready dict (tuples as lists)."""
    import dataclasses

    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(item).items()}
