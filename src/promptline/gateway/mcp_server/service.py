"""What PromptLine offers over MCP and how a call runs: a tool per agent (a run of it,
followed for progress) and, when enabled, the registered tools (through the executor)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from promptline.core.errors import (
    InvalidInputError,
    NotFoundError,
    PromptLineError,
    SubscriberLagged,
)
from promptline.events.protocols import EventFilter
from promptline.gateway.service import MAX_CONTENT_CHARS
from promptline.runtime.records import RUN_ENDINGS
from promptline.security.auth import Caller
from promptline.tools.registry import matches

if TYPE_CHECKING:
    from promptline.app import App
    from promptline.core.events import Event
    from promptline.core.messages import ContentPart, ToolCall
    from promptline.events.protocols import Subscription
    from promptline.runtime.agent import Agent

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
"""What may not be in an MCP tool name."""
# Nor "-" in an id's part of a folder name: it separates the parts, and a tenant "a-b" with
# the user "c" must not share the folder of the tenant "a" with the user "b-c".
_NOT_IN_FOLDER_PART = re.compile(r"[^A-Za-z0-9_.]")

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
_RUN_ENDINGS = RUN_ENDINGS
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
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Call the tool ``name`` as ``caller``. Every failure of the call itself (bad
        arguments, a session the caller may not see, a failed run, a refused tool) is an
        error `Outcome`; only a tool that is not offered raises (`UnknownToolError`).
        Cancelling the call cancels the run (or tool call) it started. For an agent,
        ``idempotency_key`` makes a retry of the call answer with the first call's run."""
        offer = self.offers().get(name)
        if offer is None:
            known = ", ".join(self.offers()) or "none"
            raise UnknownToolError(f"unknown tool {name!r}", hint=f"the tools are: {known}")
        if arguments is not None and not isinstance(arguments, Mapping):
            return Outcome.error(f"invalid arguments for {name}: they must be an object")
        try:
            if offer.kind == "agent":
                return await self._run_agent(
                    caller, offer, dict(arguments or {}), progress, idempotency_key
                )
            return await self._run_tool(caller, offer, dict(arguments or {}), progress)
        except InvalidInputError as exc:
            return Outcome.error(f"invalid arguments for {name}: {error_text(exc)}")
        except PromptLineError as exc:
            return Outcome.error(error_text(exc))

    # -- agents -------------------------------------------------------------------------

    async def _run_agent(
        self,
        caller: Caller,
        offer: Offer,
        arguments: dict[str, Any],
        progress: ProgressReport | None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        from promptline.gateway.service import start_message

        task, session_id = _agent_arguments(arguments)
        app = self.app
        if session_id is None and idempotency_key is not None:
            # A retry of a call that made its own session: the session of the first answer.
            first = await app.runtime.find_keyed(caller.principal, idempotency_key)
            if first is not None:
                session_id = first.session_id
        if session_id is None:
            session = await app.sessions.create(
                caller.principal, channel=CHANNEL, metadata={"agent": offer.target}
            )
            session_id = session.id
        accepted = await start_message(
            app, caller, session_id, task, agent=offer.target, idempotency_key=idempotency_key
        )
        run_id = accepted.answer_run_id
        # No await since the message was taken: the run's first event is still to come.
        follower = _follow_run(app, run_id, progress) if progress is not None else None
        try:
            record = await app.runtime.wait(run_id)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                with contextlib.suppress(PromptLineError):
                    app.runtime.get(run_id).cancel("cancelled by the MCP client", by=caller.user_id)
            if follower is not None:
                await follower.stop()
            raise
        if follower is not None:
            await follower.finish()
        structured: dict[str, Any] = {
            "answer": record.output,
            "session_id": session_id,
            "run_id": run_id,
            "status": record.status,
        }
        if record.status == "completed":
            from promptline.core.messages import TextPart

            return Outcome([TextPart(text=record.output)], structured)
        reason = (record.error or {}).get("message")
        if not record.ended:
            message = (
                "the gateway stopped before the run finished; it goes on after the restart "
                f"(run {run_id})"
            )
        elif record.status == "failed":
            message = f"the run failed: {reason or 'no reason was recorded'}"
        else:
            message = f"the run ended {record.status}" + (f": {reason}" if reason else "")
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


def error_text(exc: PromptLineError) -> str:
    """What went wrong, and the hint when there is one, in one line for an MCP client."""
    return f"{exc.message} (hint: {exc.hint})" if exc.hint else exc.message


def _folder_part(value: str) -> str:
    """``value`` as part of a folder name; altered values get a short hash, so two ids
    never share a folder."""
    cleaned = _NOT_IN_FOLDER_PART.sub("_", value)[:64]
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
