"""A small MCP server for the MCP client tests, built with the `mcp` SDK's low-level `Server`.

Run it over stdio (``python mcp_test_server.py``) or over HTTP on 127.0.0.1
(``--transport streamable_http|sse``: it binds a free port and prints ``PORT <n>`` on stdout;
over Streamable HTTP, ``/legacy/mcp`` serves a ``--legacy`` one as well).
``--state DIR`` is where the ``hang`` tool records that it started and that it was cancelled,
and where the server notes each ``notifications/roots/list_changed`` it gets (``roots-changed``).
``--legacy`` makes it speak only the 2025-11-25 protocol (the ``initialize`` handshake), where
it asks its client for sampling, elicitation and roots with requests of its own; otherwise it
speaks 2026-07-28 too, where it asks inside the call's result (``input_required``).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import orjson
from mcp.server import NotificationOptions, Server, ServerRequestContext
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp.shared.exceptions import MCPError

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
TOOLS += [
    types.Tool(
        name="sample",
        description="Ask the client's model a question (sampling) and send back its answer.",
        input_schema={
            "type": "object",
            "properties": {"question": {"type": "string"}},
            "required": ["question"],
        },
        annotations=_READ_ONLY,
    ),
    types.Tool(
        name="ask",
        description="Ask the user for a name and an age (elicitation) and send back the answer.",
        input_schema=_NO_ARGS,
        annotations=_READ_ONLY,
    ),
    types.Tool(
        name="ask_url",
        description="Ask the user to visit a page (URL elicitation) and send back the answer.",
        input_schema=_NO_ARGS,
        annotations=_READ_ONLY,
    ),
    types.Tool(
        name="roots",
        description="Send back the client's roots.",
        input_schema=_NO_ARGS,
        annotations=_READ_ONLY,
    ),
    types.Tool(
        name="task_only",
        description="Runs only as a task.",
        input_schema=_NO_ARGS,
        execution=types.ToolExecution(task_support="required"),
    ),
]
EXTRA = types.Tool(name="extra", description="Added at run time.", input_schema=_NO_ARGS)

ASK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "Your name."},
        "age": {"type": "integer", "minimum": 0, "description": "Your age in years."},
    },
    "required": ["name"],
}
SAMPLED_CONVERSATION = [("user", "What is 2+2?"), ("assistant", "4")]
"""The turns a ``sample`` call sends before its question."""

README = "The test server's read-me: it has tools, one resource and one prompt."


def _text(value: str) -> list[types.TextContent | types.ImageContent]:
    return [types.TextContent(type="text", text=value)]


class FixtureServer:
    """The tools' behaviour; ``wire`` is where a stdio server's JSON-RPC goes."""

    def __init__(self, state: Path | None, wire: Any = None, *, legacy: bool = False) -> None:
        self.state = state
        self.wire = wire
        self.legacy = legacy
        self.tools = list(TOOLS)
        # Tool-list changes reach 2026-era clients through subscriptions/listen.
        self.bus = InMemorySubscriptionBus()

    def build(self) -> Server[Any]:
        server: Server[Any] = Server(
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
        if self.legacy:
            server.add_notification_handler(
                "notifications/roots/list_changed", types.NotificationParams, self.roots_changed
            )
            server.middleware.insert(0, _handshake_only)
        return server

    async def roots_changed(self, ctx: ServerRequestContext[Any], params: Any) -> None:
        if self.state is not None:
            with (self.state / "roots-changed").open("a") as marks:
                marks.write("changed\n")

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
        if name in ("sample", "ask", "ask_url", "roots"):
            return await self.ask_client(ctx, params)
        if name == "task_only":
            return types.CallToolResult(content=_text("not run as a task"), is_error=True)
        return types.CallToolResult(content=_text(f"unknown tool {name}"), is_error=True)

    async def ask_client(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        """A tool that needs the client: on 2026-07-28 it answers ``input_required`` and
        finishes when the call comes back with the response; before, it sends a request."""
        name, args = params.name, params.arguments or {}
        request = _client_request(name, args)
        if ctx.protocol_version.startswith("2026"):
            if not params.input_responses:
                return types.InputRequiredResult(
                    input_requests={"it": request}, request_state=f"asked {name}"
                )
            response: Any = params.input_responses["it"]
        else:
            session = ctx.session
            if isinstance(request, types.CreateMessageRequest):
                sampling = request.params
                response = await session.create_message(
                    sampling.messages,
                    max_tokens=sampling.max_tokens,
                    system_prompt=sampling.system_prompt,
                )
            elif isinstance(request, types.ElicitRequest):
                response = await session.send_request(request, types.ElicitResult)
            else:
                response = await session.list_roots()
        return types.CallToolResult(content=_text(_describe(response)))

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


def _client_request(name: str, args: dict[str, Any]) -> Any:
    if name == "sample":
        turns = [*SAMPLED_CONVERSATION, ("user", str(args["question"]))]
        return types.CreateMessageRequest(
            params=types.CreateMessageRequestParams(
                messages=[
                    types.SamplingMessage(role=role, content=types.TextContent(type="text", text=t))  # type: ignore[arg-type]
                    for role, t in turns
                ],
                system_prompt="Answer in one word.",
                max_tokens=50,
            )
        )
    if name == "ask":
        return types.ElicitRequest(
            params=types.ElicitRequestFormParams(
                message="Who are you?", requested_schema=ASK_SCHEMA
            )
        )
    if name == "ask_url":
        return types.ElicitRequest(
            params=types.ElicitRequestURLParams(
                message="Sign in to go on.",
                url="https://example.com/sign-in",
                elicitation_id="sign-in-1",
            )
        )
    return types.ListRootsRequest()


def _describe(response: Any) -> str:
    if isinstance(response, types.CreateMessageResult):
        text = response.content.text if isinstance(response.content, types.TextContent) else ""
        return f"sampled {text!r} from {response.model}"
    if isinstance(response, types.ElicitResult):
        content = orjson.dumps(response.content, option=orjson.OPT_SORT_KEYS).decode()
        return f"{response.action} {content}"
    return " ".join(str(root.uri) for root in response.roots) or "no roots"


async def _handshake_only(ctx: ServerRequestContext[Any], call_next: Any) -> Any:
    # A server of the handshake era: the client's 2026-07-28 probe is not understood.
    if ctx.method == "server/discover":
        raise MCPError(code=types.METHOD_NOT_FOUND, message="Method not found")
    return await call_next(ctx)


def _options(server: Server[Any]) -> Any:
    return server.create_initialization_options(NotificationOptions(tools_changed=True))


async def serve_stdio(state: Path | None, legacy: bool) -> None:
    from mcp.server.runner import serve_loop
    from mcp.server.stdio import stdio_server

    # The wire is a copy of fd 1; fd 1 itself goes to stderr so stray prints miss the wire.
    wire = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    stdin = os.fdopen(os.dup(0), "r", encoding="utf-8")
    app = FixtureServer(state, wire, legacy=legacy)
    server = app.build()
    async with stdio_server(anyio.wrap_file(stdin), anyio.wrap_file(wire)) as (read, write):
        if not legacy:
            await server.run(read, write, _options(server))
            return
        async with server.lifespan(server) as lifespan:
            await serve_loop(
                server, read, write, lifespan_state=lifespan, init_options=_options(server)
            )


async def serve_http(state: Path | None, transport: str, legacy: bool) -> None:
    import socket

    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Mount, Route

    app = FixtureServer(state, legacy=legacy)
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
        # One process serves both eras: /mcp as the SDK's server does, /legacy/mcp as a
        # server of the handshake era (marking in <state>/legacy).
        from mcp.server.transport_security import TransportSecuritySettings

        # The SDK's protection for a server on 127.0.0.1, plus the name the egress tests give
        # it through their own resolver.
        hosts = TransportSecuritySettings(
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*", "docs.test:*"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
        )
        modern = server.streamable_http_app(transport_security=hosts)
        old_state = None if state is None or legacy else state / "legacy"
        if old_state is not None:
            old_state.mkdir(parents=True, exist_ok=True)
        old = FixtureServer(old_state, legacy=True).build()
        handshake = old.streamable_http_app(streamable_http_path="/legacy/mcp")

        @contextlib.asynccontextmanager
        async def both(_: Any) -> AsyncIterator[None]:
            async with (
                modern.router.lifespan_context(modern),
                handshake.router.lifespan_context(handshake),
            ):
                yield

        asgi = Starlette(routes=[*modern.routes, *handshake.routes], lifespan=both)
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
    parser.add_argument("--legacy", action="store_true")
    options = parser.parse_args()
    if options.state is not None:
        options.state.mkdir(parents=True, exist_ok=True)
    if options.transport == "stdio":
        anyio.run(serve_stdio, options.state, options.legacy)
    else:
        anyio.run(serve_http, options.state, options.transport, options.legacy)
    sys.exit(0)


if __name__ == "__main__":
    main()
