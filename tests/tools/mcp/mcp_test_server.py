"""A small MCP server for the MCP client tests, built with the `mcp` SDK's low-level `Server`.

Run it over stdio (``python mcp_test_server.py``) or over HTTP on 127.0.0.1
(``--transport streamable_http|sse``: it binds a free port and prints ``PORT <n>`` on stdout).
``--state DIR`` is where the ``hang`` tool records that it started and that it was cancelled.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp.server import NotificationOptions, Server, ServerRequestContext
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged

# A 1x1 transparent PNG.
PIXEL_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)

_TEXT_ARG = {
    "type": "object",
    "properties": {"text": {"type": "string", "description": "What to send back."}},
    "required": ["text"],
    "additionalProperties": False,
}
_NO_ARGS: dict[str, Any] = {"type": "object", "properties": {}}
_READ_ONLY = types.ToolAnnotations(read_only_hint=True)

TOOLS = [
    types.Tool(
        name="echo",
        description="Send the text back.",
        input_schema=_TEXT_ARG,
        annotations=_READ_ONLY,
    ),
    types.Tool(
        name="progress",
        description="Count to steps, reporting progress at each step.",
        input_schema={
            "type": "object",
            "properties": {"steps": {"type": "integer", "minimum": 1, "maximum": 50}},
            "required": ["steps"],
        },
        annotations=_READ_ONLY,
    ),
    types.Tool(
        name="hang",
        description="Wait until cancelled.",
        input_schema={
            "type": "object",
            "properties": {"tag": {"type": "string"}},
            "required": ["tag"],
        },
    ),
    types.Tool(name="fail", description="Answer with an error result.", input_schema=_NO_ARGS),
    types.Tool(name="explode", description="Raise inside the handler.", input_schema=_NO_ARGS),
    types.Tool(
        name="large",
        description="Send back size characters.",
        input_schema={
            "type": "object",
            "properties": {"size": {"type": "integer"}},
            "required": ["size"],
        },
        annotations=_READ_ONLY,
    ),
    types.Tool(name="image", description="Send back a small picture.", input_schema=_NO_ARGS),
    types.Tool(
        name="structured",
        description="Send back structured content.",
        input_schema=_NO_ARGS,
        annotations=types.ToolAnnotations(read_only_hint=False, destructive_hint=False),
    ),
    types.Tool(
        name="bad_schema",
        description="Declares an input schema that is not valid JSON schema.",
        input_schema={"type": "object", "properties": {"x": {"type": "no-such-type"}}},
    ),
    types.Tool(
        name="crash",
        description="Exit the server process in the middle of the call.",
        input_schema=_NO_ARGS,
    ),
    types.Tool(
        name="garbage",
        description="Write a line that is not JSON-RPC on stdout (stdio only).",
        input_schema=_NO_ARGS,
    ),
    types.Tool(
        name="add_tool",
        description="Add the tool `extra` and announce that the tool list changed.",
        input_schema=_NO_ARGS,
    ),
    types.Tool(
        name="env",
        description="The value of an environment variable and the working folder.",
        input_schema={
            "type": "object",
            "properties": {"name": {"type": "string"}},
            "required": ["name"],
        },
        annotations=_READ_ONLY,
    ),
]
EXTRA = types.Tool(name="extra", description="Added at run time.", input_schema=_NO_ARGS)

README = "The test server's read-me: it has tools, one resource and one prompt."


def _text(value: str) -> list[types.TextContent | types.ImageContent]:
    return [types.TextContent(type="text", text=value)]


class FixtureServer:
    """The tools' behaviour; ``wire`` is where a stdio server's JSON-RPC goes."""

    def __init__(self, state: Path | None, wire: Any = None) -> None:
        self.state = state
        self.wire = wire
        self.tools = list(TOOLS)
        # Tool-list changes reach 2026-era clients through subscriptions/listen.
        self.bus = InMemorySubscriptionBus()

    def build(self) -> Server[Any]:
        return Server(
            "promptline-test-server",
            version="1.0",
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
            on_list_resources=self.list_resources,
            on_read_resource=self.read_resource,
            on_list_prompts=self.list_prompts,
            on_get_prompt=self.get_prompt,
            on_subscriptions_listen=ListenHandler(self.bus),
        )

    async def list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=self.tools)

    def _mark(self, name: str, text: str = "") -> None:
        if self.state is not None:
            (self.state / name).write_text(text)

    async def call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        args = params.arguments or {}
        name = params.name
        if name == "echo":
            return types.CallToolResult(content=_text(str(args["text"])))
        if name == "progress":
            steps = int(args["steps"])
            for step in range(1, steps + 1):
                await ctx.session.report_progress(step, steps, f"step {step} of {steps}")
            return types.CallToolResult(content=_text(f"counted to {steps}"))
        if name == "hang":
            tag = str(args["tag"])
            self._mark(f"started-{tag}")
            try:
                await anyio.sleep_forever()
            finally:
                self._mark(f"cancelled-{tag}")
        if name == "fail":
            return types.CallToolResult(content=_text("the tool failed on purpose"), is_error=True)
        if name == "explode":
            raise RuntimeError("exploded on purpose")
        if name == "large":
            return types.CallToolResult(content=_text("x" * int(args["size"])))
        if name == "image":
            data = base64.b64encode(PIXEL_PNG).decode()
            return types.CallToolResult(
                content=[
                    types.TextContent(type="text", text="a picture:"),
                    types.ImageContent(type="image", data=data, mime_type="image/png"),
                ]
            )
        if name == "structured":
            return types.CallToolResult(
                content=_text('{"answer": 42}'), structured_content={"answer": 42}
            )
        if name == "crash":
            os._exit(3)
        if name == "garbage" and self.wire is not None:
            self.wire.write("this line is not JSON-RPC\n")
            self.wire.flush()
            await anyio.sleep_forever()
        if name == "add_tool":
            if EXTRA not in self.tools:
                self.tools.append(EXTRA)
            await self.bus.publish(ToolsListChanged())
            if ctx.protocol_version == "2025-11-25" or not ctx.protocol_version.startswith("2026"):
                await ctx.session.send_tool_list_changed()
            return types.CallToolResult(content=_text("added"))
        if name == "extra":
            return types.CallToolResult(content=_text("extra here"))
        if name == "env":
            value = os.environ.get(str(args["name"]), "")
            return types.CallToolResult(content=_text(f"{value}|{os.getcwd()}"))
        return types.CallToolResult(content=_text(f"unknown tool {name}"), is_error=True)

    async def list_resources(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        return types.ListResourcesResult(
            resources=[
                types.Resource(
                    uri="test://readme",
                    name="readme",
                    description="What this server is.",
                    mime_type="text/plain",
                )
            ]
        )

    async def read_resource(
        self, ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        if str(params.uri) != "test://readme":
            raise ValueError(f"no resource {params.uri}")
        return types.ReadResourceResult(
            contents=[
                types.TextResourceContents(uri="test://readme", mime_type="text/plain", text=README)
            ]
        )

    async def list_prompts(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        return types.ListPromptsResult(
            prompts=[
                types.Prompt(
                    name="greet",
                    description="Greet someone.",
                    arguments=[types.PromptArgument(name="name", required=True)],
                )
            ]
        )

    async def get_prompt(
        self, ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        who = (params.arguments or {}).get("name", "nobody")
        return types.GetPromptResult(
            description="A greeting.",
            messages=[
                types.PromptMessage(
                    role="user", content=types.TextContent(type="text", text=f"Say hello to {who}.")
                )
            ],
        )


def _options(server: Server[Any]) -> Any:
    return server.create_initialization_options(NotificationOptions(tools_changed=True))


async def serve_stdio(state: Path | None) -> None:
    from mcp.server.stdio import stdio_server

    # The wire is a copy of fd 1; fd 1 itself goes to stderr so stray prints miss the wire.
    wire = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    stdin = os.fdopen(os.dup(0), "r", encoding="utf-8")
    app = FixtureServer(state, wire)
    server = app.build()
    async with stdio_server(anyio.wrap_file(stdin), anyio.wrap_file(wire)) as (read, write):
        await server.run(read, write, _options(server))


async def serve_http(state: Path | None, transport: str) -> None:
    import socket

    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Mount, Route

    app = FixtureServer(state)
    server = app.build()
    if transport == "sse":
        from mcp.server.sse import SseServerTransport

        sse = SseServerTransport("/messages/")

        async def handle_sse(request: Any) -> Response:
            async with sse.connect_sse(request.scope, request.receive, request._send) as streams:
                await server.run(streams[0], streams[1], _options(server))
            return Response()

        asgi: Any = Starlette(
            routes=[
                Route("/sse", endpoint=handle_sse, methods=["GET"]),
                Mount("/messages/", app=sse.handle_post_message),
            ]
        )
    else:
        asgi = server.streamable_http_app()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    config = uvicorn.Config(asgi, log_level="warning", lifespan="on")
    userver = uvicorn.Server(config)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    await userver.serve(sockets=[sock])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", default="stdio", choices=["stdio", "streamable_http", "sse"])
    parser.add_argument("--state", type=Path, default=None)
    options = parser.parse_args()
    if options.state is not None:
        options.state.mkdir(parents=True, exist_ok=True)
    if options.transport == "stdio":
        anyio.run(serve_stdio, options.state)
    else:
        anyio.run(serve_http, options.state, options.transport)
    sys.exit(0)


if __name__ == "__main__":
    main()
