"""PromptLine as an MCP server: its agents (and, with ``mcp_server.expose_tools``, its tools)
as MCP tools, on stdin/stdout (``promptline mcp serve``) and at ``/mcp`` on the gateway.

The ``mcp`` SDK takes half a second to import, so it is loaded only when a server is built:
by ``promptline mcp serve``, and by the gateway on the first ``/mcp`` request."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from promptline import __version__
from promptline.core.errors import (
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    PromptLineError,
    ServiceUnavailableError,
    SubscriberLagged,
)
from promptline.events.protocols import EventFilter
from promptline.gateway.service import MAX_CONTENT_CHARS
from promptline.security.auth import Caller
from promptline.tools.registry import matches

if TYPE_CHECKING:
    from fastapi import FastAPI
    from mcp.server.context import ServerRequestContext
    from mcp.server.lowlevel.server import Server
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from mcp_types import CallToolRequestParams, CallToolResult, ListToolsResult
    from mcp_types import PaginatedRequestParams as PageParams
    from starlette.types import Message, Receive, Scope, Send

    from promptline.app import App
    from promptline.core.events import Event
    from promptline.core.messages import ContentPart, ToolCall
    from promptline.events.protocols import Subscription
    from promptline.runtime.agent import Agent

__all__ = [
    "AGENT_INPUT_SCHEMA",
    "AGENT_OUTPUT_SCHEMA",
    "CALLER_SCOPE_KEY",
    "CHANNEL",
    "LOCAL_CALLER",
    "SERVER_NAME",
    "McpEndpoint",
    "McpService",
    "Offer",
    "Outcome",
    "ProgressReport",
    "UnknownToolError",
    "build_server",
    "mount_mcp",
    "serve_stdio",
    "stdio_wire",
    "tool_name",
]

_log = logging.getLogger("promptline.gateway.mcp")

SERVER_NAME = "promptline"
"""The ``serverInfo.name`` clients see (its version is PromptLine's)."""

CHANNEL = "mcp"
"""The channel of the sessions MCP calls open."""

CALLER_SCOPE_KEY = "promptline.caller"
"""Where ``/mcp`` leaves the authenticated `Caller` in the ASGI scope for the handlers."""

LOCAL_CALLER = Caller(user_id="local", tenant_id="default", role="admin")
"""Who a stdio client is: the local user, the owner of the sessions the CLI makes."""

MAX_TOOL_NAME = 128
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_.-]")
"""What may not be in an MCP tool name (nor, here, in a folder name)."""

MAX_PROGRESS_LINE = 200
"""Characters of a tool's output a progress message carries (its last line)."""

FOLLOW_WAIT_SECS = 5.0
"""How long a call waits, once its run has ended, for the last progress to be passed on."""

AGENT_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "task": {
            "type": "string",
            "minLength": 1,
            "description": "What the agent should do: the message it answers.",
        },
        "session_id": {
            "type": "string",
            "minLength": 1,
            "description": "Continue this session (the session_id of an earlier result); "
            "a new session is opened when it is left out.",
        },
    },
    "required": ["task"],
    "additionalProperties": False,
}
"""The arguments of every agent tool."""

AGENT_OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "answer": {"type": "string", "description": "The agent's answer."},
        "session_id": {"type": "string", "description": "Pass it back to continue."},
        "run_id": {"type": "string", "description": "The run that answered."},
        "status": {"type": "string", "description": "How the run ended."},
    },
    "required": ["answer", "session_id", "run_id", "status"],
}
"""The structured result of every agent tool (its ``structuredContent``)."""

_AGENT_ARGUMENTS = frozenset(AGENT_INPUT_SCHEMA["properties"])
_RUN_ENDINGS = frozenset({"run_completed", "run_failed", "run_cancelled"})
_RUN_PROGRESS = frozenset({"tool_command", "tool_progress", "tool_result", "llm_result"})
_RUN_FOLLOWED = _RUN_PROGRESS | _RUN_ENDINGS

ProgressReport = Callable[[str], Awaitable[None]]
"""``report(message)``: pass one step of a call's progress on to the client."""


class UnknownToolError(NotFoundError):
    """A call named a tool the server does not offer (to this caller)."""


@dataclass(frozen=True, slots=True)
class Offer:
    """One MCP tool of the server: an agent, or a registered tool."""

    name: str
    """Its MCP name (the agent's or tool's, made to fit MCP's rules)."""
    kind: Literal["agent", "tool"]
    target: str
    """The agent's name, or the tool's name in the registry."""
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None = None
    title: str | None = None
    read_only: bool | None = None
    destructive: bool | None = None


@dataclass(slots=True)
class Outcome:
    """What a call gives back: content for the client, structured data, and whether it
    failed (an ``isError`` result: the reason is in the content)."""

    content: list[ContentPart]
    structured: dict[str, Any] | None = None
    is_error: bool = False

    @classmethod
    def error(cls, message: str, structured: dict[str, Any] | None = None) -> Outcome:
        """A failed call that says why."""
        from promptline.core.messages import TextPart

        return cls([TextPart(text=message)], structured, is_error=True)


def tool_name(name: str) -> str:
    """``name`` as an MCP tool name: 1 to 128 of ``A-Z a-z 0-9 _ - .``, others made ``_``."""
    cleaned = _NOT_ALLOWED.sub("_", name.strip())[:MAX_TOOL_NAME]
    return cleaned or "_"


def _unique(name: str, taken: set[str]) -> str:
    found, number = name, 1
    while found in taken:
        number += 1
        suffix = f"_{number}"
        found = name[: MAX_TOOL_NAME - len(suffix)] + suffix
    taken.add(found)
    return found


class McpService:
    """What the MCP server offers and does, whatever the transport: the tools (one per
    agent, plus the registered tools with ``expose_tools``) and calls to them on behalf of a
    `Caller`. Holds no SDK object, so it can be built and tested without loading ``mcp``."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._offers: tuple[int, dict[str, Offer]] | None = None

    def offers(self) -> dict[str, Offer]:
        """The tools offered, by MCP name: the agents first (in name order), then, with
        ``expose_tools``, the registered tools. A name already taken (by an agent, or once
        made to fit MCP's rules) gets ``_2``, ``_3``..."""
        settings = self.app.settings.mcp_server
        version = self.app.tools.version if settings.expose_tools else -1
        if self._offers is not None and self._offers[0] == version:
            return self._offers[1]
        taken: set[str] = set()
        offers: dict[str, Offer] = {}
        # Names that fit MCP's rules as they are keep them; made-to-fit ones come second.
        agents = sorted(self.agents(), key=lambda agent: tool_name(agent.name) != agent.name)
        for agent in agents:
            name = _unique(tool_name(agent.name), taken)
            offers[name] = Offer(
                name=name,
                kind="agent",
                target=agent.name,
                description=_agent_description(agent),
                input_schema=AGENT_INPUT_SCHEMA,
                output_schema=AGENT_OUTPUT_SCHEMA,
                title=f"PromptLine agent {agent.name}",
            )
        if settings.expose_tools:
            tools = sorted(self.app.tools, key=lambda tool: tool_name(tool.name) != tool.name)
            for tool in tools:
                name = _unique(tool_name(tool.name), taken)
                schema = dict(tool.parameters or {})
                schema.setdefault("type", "object")
                offers[name] = Offer(
                    name=name,
                    kind="tool",
                    target=tool.name,
                    description=tool.description,
                    input_schema=schema,
                    read_only=tool.read_only,
                    destructive=False if tool.read_only else tool.destructive,
                )
        self._offers = (version, offers)
        return offers

    def agents(self) -> list[Agent]:
        """The agents offered: every agent of the runtime, or those ``mcp_server.agents``
        names (names or patterns)."""
        wanted = self.app.settings.mcp_server.agents
        agents = list(self.app.runtime.agents.values())
        if wanted is None:
            return agents
        return [a for a in agents if any(matches(pattern, a.name) for pattern in wanted)]

    async def call(
        self,
        caller: Caller,
        name: str,
        arguments: Mapping[str, Any] | None,
        *,
        progress: ProgressReport | None = None,
    ) -> Outcome:
        """Call the tool ``name`` as ``caller``. Every failure of the call itself (bad
        arguments, a session the caller may not see, a failed run, a refused tool) is an
        error `Outcome`; only a tool that is not offered raises (`UnknownToolError`).
        Cancelling the call cancels the run (or tool call) it started."""
        offer = self.offers().get(name)
        if offer is None:
            known = ", ".join(self.offers()) or "none"
            raise UnknownToolError(f"unknown tool {name!r}", hint=f"the tools are: {known}")
        if arguments is not None and not isinstance(arguments, Mapping):
            return Outcome.error(f"invalid arguments for {name}: they must be an object")
        try:
            if offer.kind == "agent":
                return await self._run_agent(caller, offer, dict(arguments or {}), progress)
            return await self._run_tool(caller, offer, dict(arguments or {}), progress)
        except InvalidInputError as exc:
            return Outcome.error(f"invalid arguments for {name}: {_said(exc)}")
        except PromptLineError as exc:
            return Outcome.error(_said(exc))

    # -- agents -------------------------------------------------------------------------

    async def _run_agent(
        self,
        caller: Caller,
        offer: Offer,
        arguments: dict[str, Any],
        progress: ProgressReport | None,
    ) -> Outcome:
        from promptline.gateway.service import start_message

        task, session_id = _agent_arguments(arguments)
        app = self.app
        if session_id is None:
            session = await app.sessions.create(
                caller.principal, channel=CHANNEL, metadata={"agent": offer.target}
            )
            session_id = session.id
        run = await start_message(app, caller, session_id, task, agent=offer.target)
        # No await since the run started: its first event is still to come.
        follower = _follow_run(app, run.id, progress) if progress is not None else None
        try:
            result = await run.result()
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                run.cancel("cancelled by the MCP client", by=caller.user_id)
            if follower is not None:
                await follower.stop()
            raise
        if follower is not None:
            await follower.finish()
        structured = {
            "answer": result.text,
            "session_id": session_id,
            "run_id": run.id,
            "status": result.status,
        }
        if result.ok:
            from promptline.core.messages import TextPart

            return Outcome([TextPart(text=result.text)], structured)
        reason = result.error.message if result.error is not None else None
        if result.status == "failed":
            message = f"the run failed: {reason or 'no reason was recorded'}"
        else:
            message = f"the run ended {result.status}" + (f": {reason}" if reason else "")
        structured["error"] = message
        return Outcome.error(message, structured)

    # -- registered tools ---------------------------------------------------------------

    async def _run_tool(
        self,
        caller: Caller,
        offer: Offer,
        arguments: dict[str, Any],
        progress: ProgressReport | None,
    ) -> Outcome:
        from promptline.core.messages import ToolCall
        from promptline.tools.executor import CallScope

        app = self.app
        if app.tools.get(offer.target) is None:
            raise UnknownToolError(
                f"unknown tool {offer.name!r}", hint="it was unregistered; list the tools again"
            )
        call = ToolCall(name=offer.target, arguments=arguments)
        scope = CallScope(
            workspace=self._workspace(caller),
            user_id=caller.user_id,
            tenant_id=caller.tenant_id,
            mode="act",
            correlation_id=call.id,
        )
        follower = _follow_tool(app, caller, call, progress) if progress else None
        try:
            result = await app.runtime.services.executor.execute(call, scope)
        except BaseException:
            if follower is not None:
                await follower.stop()
            raise
        if follower is not None:
            await follower.finish()
        outcome = str(result.metadata.get("outcome", "ok"))
        structured = {"outcome": outcome, "call_id": call.id}
        return Outcome(list(result.content), structured, result.is_error or outcome != "ok")

    def _workspace(self, caller: Caller) -> Path:
        """The folder file tools called over MCP may touch: the agents' shared workspace
        when one is configured, else one per caller (so tenants never share files)."""
        shared = self.app.settings.agent.workspace
        if shared is not None:
            return shared
        key = f"mcp-{_folder_part(caller.tenant_id)}-{_folder_part(caller.user_id)}"
        return self.app.runtime.services.workspaces_dir / key


def _agent_description(agent: Agent) -> str:
    about = agent.description.strip() or f"The PromptLine agent {agent.name}."
    return (
        f"{about}\n\nRuns the agent on `task` and returns its answer. The result's "
        "`session_id` continues the conversation when passed back."
    )


def _agent_arguments(arguments: dict[str, Any]) -> tuple[str, str | None]:
    unknown = sorted(set(arguments) - _AGENT_ARGUMENTS)
    if unknown:
        raise InvalidInputError(
            f"unknown argument {unknown[0]!r}",
            hint="an agent tool takes `task` (a string) and, to continue, `session_id`",
            field=unknown[0],
        )
    task = arguments.get("task")
    if task is None:
        raise InvalidInputError(
            "`task` is missing", hint="pass `task`: what the agent should do", field="task"
        )
    if not isinstance(task, str):
        raise InvalidInputError(f"`task` must be a string, not {_json_type(task)}", field="task")
    if not task.strip():
        raise InvalidInputError("`task` is empty", hint="say what the agent should do")
    if len(task) > MAX_CONTENT_CHARS:
        raise InvalidInputError(
            f"`task` is longer than {MAX_CONTENT_CHARS} characters", field="task"
        )
    session_id = arguments.get("session_id")
    if session_id is not None and (not isinstance(session_id, str) or not session_id):
        raise InvalidInputError(
            f"`session_id` must be a non-empty string, not {_json_type(session_id)}",
            hint="pass the session_id of an earlier result, or leave it out",
            field="session_id",
        )
    return task, session_id


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "an empty string"
    return "an array" if isinstance(value, list) else "an object"


def _said(exc: PromptLineError) -> str:
    return f"{exc.message} (hint: {exc.hint})" if exc.hint else exc.message


def _folder_part(value: str) -> str:
    """``value`` as part of a folder name; altered values get a short hash, so two ids
    never share a folder."""
    cleaned = _NOT_ALLOWED.sub("_", value)[:64]
    if cleaned == value and value not in ("", ".", ".."):
        return value
    return f"{cleaned}_{hashlib.sha256(value.encode()).hexdigest()[:8]}"


# -- progress -------------------------------------------------------------------------------


@dataclass
class _Follower:
    """Passes a call's events on as progress, in a task of its own, until the call ends."""

    subscription: Subscription
    progress: ProgressReport
    mine: Callable[[Event], bool]
    endings: frozenset[str]
    names: dict[str, str] = field(default_factory=dict)
    """Tool call id -> tool name, for the progress of calls in flight."""
    task: asyncio.Task[None] | None = None

    def start(self) -> _Follower:
        self.task = asyncio.get_running_loop().create_task(self._pump())
        return self

    async def _pump(self) -> None:
        try:
            async for event in self.subscription:
                if not self.mine(event):
                    continue
                message = _step(event, self.names)
                if message:
                    await self.progress(message)
                if event.type in self.endings:
                    return
        except SubscriberLagged:
            pass  # progress is a courtesy: a reader that fell behind stops reporting
        except Exception:
            # The client is gone or its stream closed: the call goes on without reports.
            _log.debug("progress reports stopped", exc_info=True)

    async def finish(self) -> None:
        """Let the follower pass on what the call published before it ended, then stop.
        What the call published is already queued here, so this waits only on passing it
        on (the bound guards against a client that stopped reading)."""
        if self.task is not None and not self.task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.task), FOLLOW_WAIT_SECS)
        await self.stop()

    async def stop(self) -> None:
        """Stop at once (the call was cancelled)."""
        if self.task is not None:
            self.task.cancel()
        await self.subscription.close()


def _follow_run(app: App, run_id: str, progress: ProgressReport) -> _Follower:
    """Pass the run's steps (tool calls, their progress and results, model answers) on as
    progress. Subscribes at once: call it with no await since the run was started."""
    subscription = app.bus.subscribe(EventFilter(run_id=run_id, types=_RUN_FOLLOWED))
    return _Follower(subscription, progress, lambda event: True, _RUN_ENDINGS).start()


def _follow_tool(app: App, caller: Caller, call: ToolCall, progress: ProgressReport) -> _Follower:
    """Pass a direct tool call's progress on, until its result."""
    wanted = EventFilter(
        types=frozenset({"tool_progress", "tool_result"}),
        user_id=caller.user_id,
        tenant_id=caller.tenant_id,
    )
    subscription = app.bus.subscribe(wanted)
    follower = _Follower(
        subscription,
        progress,
        lambda event: event.correlation_id == call.id,
        frozenset({"tool_result"}),
        names={call.id: call.name},
    )
    return follower.start()


def _last_line(output: str | None) -> str:
    """The last line of a tool's output so far, short enough for a progress message."""
    lines = [line for line in (output or "").splitlines() if line.strip()]
    last = lines[-1].strip() if lines else ""
    return last if len(last) <= MAX_PROGRESS_LINE else last[: MAX_PROGRESS_LINE - 3] + "..."


def _step(event: Event, names: dict[str, str]) -> str | None:
    """One event of a call as a progress message (None: not worth one)."""
    from promptline.core.events import (
        LlmResultEvent,
        ToolCommandEvent,
        ToolProgressEvent,
        ToolResultEvent,
    )

    if isinstance(event, ToolCommandEvent):
        names[event.data.call.id] = event.data.call.name
        return f"calling {event.data.call.name}"
    if isinstance(event, ToolProgressEvent):
        data = event.data
        tool = names.get(data.call_id, "a tool")
        done = f" {data.percent:.0f}%" if data.percent is not None else ""
        said = data.message or _last_line(data.output)
        said = f": {said}" if said else ""
        return f"{tool}{done}{said}" if done or said else None
    if isinstance(event, ToolResultEvent):
        result = event.data.result
        names.pop(result.call_id, None)
        return f"{result.name} failed" if result.is_error else f"{result.name} done"
    if isinstance(event, LlmResultEvent):
        if event.data.finish_reason == "tool_calls":
            return "the model asked for tools"
        return "the model answered"
    return None


# -- the SDK server -------------------------------------------------------------------------


def build_server(service: McpService, *, caller: Caller | None = None) -> Server[Any]:
    """The SDK's low-level server over ``service``. Calls run as the `Caller` ``/mcp`` put
    in the request's scope, else as ``caller`` (stdio: `LOCAL_CALLER`)."""
    import mcp_types as types
    from mcp.server.lowlevel.server import Server
    from mcp.shared.exceptions import MCPError
    from mcp.shared.jsonrpc_dispatcher import progress_token_from_params

    def caller_of(ctx: ServerRequestContext[Any, Any]) -> Caller:
        scope = getattr(ctx.request, "scope", None)
        found = scope.get(CALLER_SCOPE_KEY) if isinstance(scope, dict) else None
        if isinstance(found, Caller):
            return found
        if caller is None:
            raise MCPError(types.INVALID_REQUEST, "the request carries no authenticated caller")
        return caller

    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: PageParams | None
    ) -> ListToolsResult:
        return types.ListToolsResult(
            tools=[_mcp_tool(offer) for offer in service.offers().values()]
        )

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: CallToolRequestParams
    ) -> CallToolResult:
        who = caller_of(ctx)
        report: ProgressReport | None = None
        if progress_token_from_params(ctx.params) is not None:
            steps = 0

            async def report(message: str) -> None:
                nonlocal steps
                steps += 1
                await ctx.session.report_progress(steps, None, message)

        try:
            outcome = await service.call(who, params.name, params.arguments, progress=report)
        except UnknownToolError as exc:
            raise MCPError(types.INVALID_PARAMS, _said(exc), {"tool": params.name}) from None
        return types.CallToolResult(
            content=[_mcp_content(part) for part in outcome.content],
            structured_content=outcome.structured,
            is_error=outcome.is_error,
        )

    def input_schema(name: str) -> dict[str, Any] | None:
        offer = service.offers().get(name)
        return None if offer is None else offer.input_schema

    return Server(
        SERVER_NAME,
        version=__version__,
        title="PromptLine",
        instructions="PromptLine's agents as tools: each runs an agent on a task and answers; "
        "pass a result's session_id back to continue that conversation.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        get_tool_input_schema=input_schema,
    )


def _mcp_tool(offer: Offer) -> Any:
    import mcp_types as types

    annotations = types.ToolAnnotations(
        title=offer.title, read_only_hint=offer.read_only, destructive_hint=offer.destructive
    )
    return types.Tool(
        name=offer.name,
        title=offer.title,
        description=offer.description,
        input_schema=offer.input_schema,
        output_schema=offer.output_schema,
        annotations=annotations,
    )


def _mcp_content(part: ContentPart) -> Any:
    import mcp_types as types

    from promptline.core.messages import ImagePart, TextPart

    if isinstance(part, TextPart):
        return types.TextContent(text=part.text)
    if isinstance(part, ImagePart) and part.data and part.media_type:
        return types.ImageContent(data=part.data, mime_type=part.media_type)
    where = part.url or getattr(part, "name", None) or "inline data"
    return types.TextContent(text=f"[{part.type}: {where}]")


# -- stdio ----------------------------------------------------------------------------------


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


# -- Streamable HTTP: /mcp on the gateway -----------------------------------------------------


def mount_mcp(api: FastAPI, app: App, *, path: str = "/mcp") -> McpEndpoint:
    """Serve MCP at ``path`` of the gateway ``api``, behind its API keys, for the lifetime
    of ``api``'s lifespan (the SDK's session manager runs inside it)."""
    from starlette.routing import Route

    endpoint = McpEndpoint(app)
    api.router.routes.append(Route(path, endpoint, include_in_schema=False, name="mcp"))
    outer = api.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(asgi: Any) -> AsyncIterator[Any]:
        async with outer(asgi) as state, endpoint.running():
            yield state

    api.router.lifespan_context = lifespan
    return endpoint


class McpEndpoint:
    """The ASGI app at ``/mcp``: checks the caller (API key, Origin), then lets the SDK's
    Streamable HTTP session manager answer, the caller in the request's scope.

    The session manager runs in a task of its own, started by the first request and
    stopped when the gateway's lifespan ends (`running`): its task group must be entered
    and left by one task, and loading the SDK only when MCP is used keeps the gateway's
    start fast. Outside a running lifespan the endpoint answers 503.
    """

    def __init__(self, app: App) -> None:
        self.service = McpService(app)
        self._serving = False
        self._manager: StreamableHTTPSessionManager | None = None
        self._owner: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The endpoint's lifetime (enter it in the ASGI app's lifespan): on exit the MCP
        sessions end and their calls are cancelled."""
        self._serving = True
        try:
            yield
        finally:
            self._serving = False
            owner, self._owner, self._manager = self._owner, None, None
            if owner is not None and self._stop is not None:
                self._stop.set()
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from starlette.requests import HTTPConnection

        from promptline.gateway.deps import authenticate, gateway
        from promptline.gateway.ws.handshake import origin_allowed

        conn = HTTPConnection(scope)
        state = gateway(conn)
        origin = conn.headers.get("origin")
        if origin is not None and not origin_allowed(
            origin, state.app.settings.gateway.allowed_origins
        ):
            # Browsers send an Origin: a page of another site must not reach a local server.
            raise PermissionDeniedError(
                f"origin not allowed: {origin}", hint="add it to gateway.allowed_origins"
            )
        caller = await authenticate(conn)
        manager = await self._started()
        scope[CALLER_SCOPE_KEY] = caller
        # The SDK ties a (stateful) MCP session to the credential that opened it.
        scope["user"] = _sdk_user(caller)
        if scope.get("method") == "GET":
            # A GET is the client's endless event stream: it ends when the server stops.
            await _stream_until(state.stopping, manager.handle_request, scope, receive, send)
        else:
            await manager.handle_request(scope, receive, send)

    async def _started(self) -> StreamableHTTPSessionManager:
        if not self._serving:
            raise ServiceUnavailableError(
                "the MCP endpoint is not running",
                hint="serve the gateway with its ASGI lifespan on (promptline serve does)",
            )
        if self._manager is not None:
            return self._manager
        async with self._lock:
            if self._manager is None:
                loop = asyncio.get_running_loop()
                ready: asyncio.Future[StreamableHTTPSessionManager] = loop.create_future()
                self._stop = asyncio.Event()
                self._owner = loop.create_task(self._own(ready, self._stop), name="mcp-http")
                try:
                    self._manager = await asyncio.shield(ready)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._owner = None
                    _log.exception("the MCP endpoint could not start")
                    raise ServiceUnavailableError(
                        f"the MCP endpoint could not start: {type(exc).__name__}: {exc}",
                        hint="see the server log",
                    ) from exc
            return self._manager

    async def _own(
        self, ready: asyncio.Future[StreamableHTTPSessionManager], stop: asyncio.Event
    ) -> None:
        try:
            from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

            manager = StreamableHTTPSessionManager(app=build_server(self.service))
            async with manager.run():
                ready.set_result(manager)
                await stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError(exc))
            if not isinstance(exc, Exception):
                raise


def _sdk_user(caller: Caller) -> Any:
    from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
    from mcp.server.auth.provider import AccessToken

    key = caller.key_id or f"{caller.tenant_id}/{caller.user_id}"
    token = AccessToken(
        token=key, client_id=key, scopes=[], subject=f"{caller.tenant_id}/{caller.user_id}"
    )
    return AuthenticatedUser(token)


async def _stream_until(
    stopping: asyncio.Event,
    app: Callable[[Scope, Receive, Send], Awaitable[None]],
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """Serve an endless response with ``app`` until the client leaves or ``stopping`` is
    set: then the response is ended (an empty last chunk, or 503 if it had not begun)."""
    begun = ended = False

    async def tracking_send(message: Message) -> None:
        nonlocal begun, ended
        if message["type"] == "http.response.start":
            begun = True
        elif message["type"] == "http.response.body" and not message.get("more_body"):
            ended = True
        await send(message)

    job = asyncio.ensure_future(app(scope, receive, tracking_send))
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({job, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not job.done():
            job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job
    if ended:
        return
    with contextlib.suppress(OSError, RuntimeError):  # the client may be gone already
        if begun:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        else:
            from starlette.responses import JSONResponse

            from promptline.gateway.errors import error_body

            body = error_body("service_unavailable", "the server is stopping")
            await JSONResponse(body, status_code=503)(scope, receive, send)
