"""What PromptLine offers over MCP and how a call runs: a tool per agent (a run of it,
followed for progress) and, when enabled, the registered tools (through the executor)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
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
    from promptline.core.messages import ContentPart
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
_APPROVALS = frozenset({"permission_request", "permission_granted", "permission_denied"})
_RUN_FOLLOWED = _RUN_PROGRESS | _RUN_ENDINGS | _APPROVALS

ProgressReport = Callable[[str], Awaitable[None]]
"""``report(message)``: pass one step of a call's progress on to the client."""

AskPerson = Callable[[str], Awaitable[bool | None]]
"""``ask(question)``: put an approval to the person at the MCP client (elicitation): True
to allow, False to refuse, None when they gave no answer (dismissed, or the client could
not ask); the approval then stays open for an answer from elsewhere."""

KEEP_CALL_SECS = 600.0
"""How long a direct tool call handed back for an approval keeps its result once it ended,
for the retry that takes it."""


@dataclass(frozen=True, slots=True)
class Asking:
    """How the approvals a call waits for reach the person at the client: put at once over
    the connection (``ask``, a client with a channel back to it), or handed back as the
    call's answer for the client to retry with the person's answer (``hand_back``, the
    2026-07-28 protocol's input requests). Neither: they are only reported as progress."""

    ask: AskPerson | None = None
    hand_back: bool = False


@dataclass(frozen=True, slots=True)
class Resumed:
    """A call retried with what the client was handed back: the ``state`` it echoes and the
    person's answer (None: dismissed)."""

    state: dict[str, Any]
    answer: bool | None


@dataclass(frozen=True, slots=True)
class ApprovalNeeded:
    """An approval a call waits for, to be put to the person at the client."""

    request_id: str
    question: str


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
    needs: ApprovalNeeded | None = None
    """Set when the call is handed back, waiting for this approval."""
    state: dict[str, Any] | None = None
    """What the retry of a handed-back call must bring back."""

    @classmethod
    def waiting(cls, needed: ApprovalNeeded, state: dict[str, Any], **structured: Any) -> Outcome:
        """A call handed back until the person at the client answers ``needed``."""
        return cls([], {"waiting_for": needed.request_id, **structured}, False, needed, state)

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
        self._calls = KeptCalls()

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
        asking: Asking | None = None,
        resumed: Resumed | None = None,
    ) -> Outcome:
        """Call the tool ``name`` as ``caller``. Every failure of the call itself (bad
        arguments, a session the caller may not see, a failed run, a refused tool) is an
        error `Outcome`; only a tool that is not offered raises (`UnknownToolError`).
        Cancelling the call cancels the run (or tool call) it started. For an agent,
        ``idempotency_key`` makes a retry of the call answer with the first call's run.

        A tool call of the call that waits for an approval is reported through
        ``progress`` (with the request's id, for an answer from elsewhere) and put to the
        person at the client as ``asking`` says; their answer is given as ``caller``'s,
        exactly as over REST (on the record, audited). ``resumed``: the retry of a call
        handed back. Questions (an MCP server's elicitation inside the run) are only
        reported."""
        offer = self.offers().get(name)
        if offer is None:
            known = ", ".join(self.offers()) or "none"
            raise UnknownToolError(f"unknown tool {name!r}", hint=f"the tools are: {known}")
        if arguments is not None and not isinstance(arguments, Mapping):
            return Outcome.error(f"invalid arguments for {name}: they must be an object")
        asking = asking or Asking()
        try:
            if resumed is not None:
                return await self._resume(caller, offer, resumed, progress, asking)
            if offer.kind == "agent":
                return await self._run_agent(
                    caller, offer, dict(arguments or {}), progress, asking, idempotency_key
                )
            return await self._run_tool(caller, offer, dict(arguments or {}), progress, asking)
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
        asking: Asking,
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
        # No await since the message was taken: the run's first event is still to come.
        return await self._await_run(caller, session_id, accepted.answer_run_id, progress, asking)

    async def _await_run(
        self,
        caller: Caller,
        session_id: str,
        run_id: str,
        progress: ProgressReport | None,
        asking: Asking,
        skip: frozenset[str] = frozenset(),
    ) -> Outcome:
        """Wait for the run's end (or, handing approvals back, for one it waits on)."""
        app = self.app
        follower = _follow_run(app, caller, run_id, progress, asking, skip)
        waiting: asyncio.Future[Any] | None = None
        try:
            if follower is not None and asking.hand_back:
                await follower.pending(run_id=run_id)
            waiting = asyncio.ensure_future(app.runtime.wait(run_id))
            needed = await _first(waiting, follower)
        except BaseException as exc:
            if waiting is not None:
                waiting.cancel()
            if isinstance(exc, asyncio.CancelledError):
                with contextlib.suppress(PromptLineError):
                    app.runtime.get(run_id).cancel("cancelled by the MCP client", by=caller.user_id)
            if follower is not None:
                await follower.stop()
            raise
        if needed is not None:
            assert follower is not None
            await follower.stop()
            state = {"kind": "agent", "run_id": run_id, "request_id": needed.request_id}
            return Outcome.waiting(needed, state, session_id=session_id, run_id=run_id)
        record = waiting.result()
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
        asking: Asking,
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
        follower = _follow_tool(app, caller, call.id, call.name, progress, asking)
        executing = asyncio.ensure_future(app.runtime.services.executor.execute(call, scope))
        if asking.hand_back:
            # The call may have to outlive this request: kept until a retry takes its result.
            self._calls.keep(call.id, caller, executing)
        return await self._await_tool(call.id, executing, follower)

    async def _await_tool(
        self, call_id: str, executing: asyncio.Future[Any], follower: _Follower | None
    ) -> Outcome:
        """Wait for a direct tool call's result (or, handing approvals back, for the
        approval it waits on)."""
        try:
            needed = await _first(executing, follower)
        except BaseException:
            executing.cancel()
            self._calls.drop(call_id)
            if follower is not None:
                await follower.stop()
            raise
        if needed is not None:
            assert follower is not None
            await follower.stop()
            state = {"kind": "tool", "call_id": call_id, "request_id": needed.request_id}
            return Outcome.waiting(needed, state)
        self._calls.drop(call_id)
        if follower is not None:
            await follower.finish()
        result = executing.result()
        outcome = str(result.metadata.get("outcome", "ok"))
        structured = {"outcome": outcome, "call_id": call_id}
        return Outcome(list(result.content), structured, result.is_error or outcome != "ok")

    # -- a call handed back for an approval, retried with the answer ---------------------

    async def _resume(
        self,
        caller: Caller,
        offer: Offer,
        resumed: Resumed,
        progress: ProgressReport | None,
        asking: Asking,
    ) -> Outcome:
        """Give the answer the retry brought (as ``caller``'s, exactly as over REST) and
        wait on the call again. A dismissed question leaves the approval open for an answer
        from elsewhere, and is not handed back again."""
        from promptline.gateway.service import visible_run

        app = self.app
        state = resumed.state
        kind, request_id = state.get("kind"), state.get("request_id")
        if kind not in ("agent", "tool") or not isinstance(request_id, str):
            raise InvalidInputError("requestState is not one this server gave")
        if kind != offer.kind:
            raise InvalidInputError(f"requestState is not of a call to {offer.name!r}")
        skip = frozenset({request_id}) if resumed.answer is None else frozenset()
        # What the call asks after the answer is found by the follower (subscribed after
        # it) or among the requests pending when it starts: nothing falls between.
        if kind == "agent":
            run_id = state.get("run_id")
            if not isinstance(run_id, str):
                raise InvalidInputError("requestState is not one this server gave")
            record = await visible_run(app, caller, run_id)
            if resumed.answer is not None:
                await _answer(app, caller, request_id, resumed.answer)
            return await self._await_run(
                caller, record.session_id or "", run_id, progress, asking, skip
            )
        call_id = state.get("call_id")
        executing = self._calls.find(call_id, caller) if isinstance(call_id, str) else None
        if executing is None or not isinstance(call_id, str):
            return Outcome.error(
                "the call is no longer waiting: it ended long ago, or the gateway restarted "
                "since; call the tool again"
            )
        if resumed.answer is not None:
            await _answer(app, caller, request_id, resumed.answer)
        follower = _follow_tool(app, caller, call_id, offer.target, progress, asking, skip)
        if follower is not None and asking.hand_back:
            await follower.pending(correlation_id=call_id)
        return await self._await_tool(call_id, executing, follower)

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
    """Passes a call's events on as progress, in a task of its own, until the call ends; puts
    the approvals its tool calls wait for to the person at the client as ``asking`` says
    (at once, or by handing them back: `needed`)."""

    app: App
    caller: Caller
    subscription: Subscription
    progress: ProgressReport | None
    asking: Asking
    mine: Callable[[Event], bool]
    endings: frozenset[str]
    names: dict[str, str] = field(default_factory=dict)
    """Tool call id -> tool name, for the progress of calls in flight."""
    skip: frozenset[str] = frozenset()
    """Requests not to put to the client (dismissed there already)."""
    task: asyncio.Task[None] | None = None
    asked: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    """Request id -> the question put to the client about it, while unanswered."""
    answering: set[asyncio.Task[None]] = field(default_factory=set)
    """Answers from the client being given."""
    needed: asyncio.Future[ApprovalNeeded] = field(init=False)
    """Handing back: set to the first approval the call waits for."""

    def __post_init__(self) -> None:
        self.needed = asyncio.get_running_loop().create_future()

    def start(self) -> _Follower:
        self.task = asyncio.get_running_loop().create_task(self._pump())
        return self

    async def _pump(self) -> None:
        try:
            async for event in self.subscription:
                if not self.mine(event):
                    continue
                if event.type in _APPROVALS:
                    self._approval(event)
                message = _step(event, self.names)
                if message and self.progress is not None:
                    await self.progress(message)
                if event.type in self.endings:
                    return
        except SubscriberLagged:
            pass  # progress is a courtesy: a reader that fell behind stops reporting
        except Exception:
            # The client is gone or its stream closed: the call goes on without reports.
            _log.debug("progress reports stopped", exc_info=True)

    def _approval(self, event: Event) -> None:
        """Ask about a new request; stop asking about one answered (from anywhere)."""
        from promptline.core.events import PermissionRequestEvent

        if not isinstance(event, PermissionRequestEvent):
            asked = self.asked.pop(getattr(event.data, "request_id", ""), None)
            if asked is not None:
                asked.cancel()
            return
        data = event.data
        self.waits(data.request_id, data.tool, data.arguments, data.reason)

    def waits(
        self, request_id: str, tool: str, arguments: dict[str, Any], reason: str | None
    ) -> None:
        """The call waits for the request ``request_id``: put it to the client."""
        from promptline.security.approvals import is_question

        if is_question(tool) or request_id in self.skip or request_id in self.asked:
            return
        question = _question(tool, arguments, reason)
        if self.asking.hand_back:
            if not self.needed.done():
                self.needed.set_result(ApprovalNeeded(request_id, question))
            return
        if self.asking.ask is not None:
            task = asyncio.get_running_loop().create_task(self._put(request_id, question))
            self.asked[request_id] = task

    async def pending(
        self, *, run_id: str | None = None, correlation_id: str | None = None
    ) -> None:
        """Put to the client the requests of the run (or call) already waiting when this
        follower began."""
        for request in await self.app.permissions.pending():
            if run_id is not None and request.run_id != run_id:
                continue
            if correlation_id is not None and request.correlation_id != correlation_id:
                continue
            self.waits(request.request_id, request.tool, request.arguments, request.reason)

    async def _put(self, request_id: str, question: str) -> None:
        assert self.asking.ask is not None
        try:
            answer = await self.asking.ask(question)
            # Answered: no longer withdrawn when the request is (the answer's own event
            # says so), and awaited by `finish`, so the call ends after it is recorded.
            task = self.asked.pop(request_id, None)
            if answer is not None:
                if task is not None:
                    self.answering.add(task)
                await _answer(self.app, self.caller, request_id, answer)
        except Exception:
            _log.warning("the answer to %s from the MCP client was lost", request_id, exc_info=True)
        finally:
            self.asked.pop(request_id, None)
            task = asyncio.current_task()
            if task is not None:
                self.answering.discard(task)

    async def finish(self) -> None:
        """Let the follower pass on what the call published before it ended, then stop.
        What the call published is already queued here, so this waits only on passing it
        on (the bound guards against a client that stopped reading)."""
        if self.task is not None and not self.task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.task), FOLLOW_WAIT_SECS)
        if self.answering:
            await asyncio.wait(set(self.answering))
        await self.stop()

    async def stop(self) -> None:
        """Stop at once (the call was cancelled, ended, or was handed back)."""
        if self.task is not None:
            self.task.cancel()
        for asked in [*self.asked.values(), *self.answering]:
            asked.cancel()
        self.asked.clear()
        self.answering.clear()
        await self.subscription.close()


async def _answer(app: App, caller: Caller, request_id: str, approve: bool) -> None:
    """Give the person's answer at the client as ``caller``'s, as over REST; an answer
    given elsewhere first (or the request's time running out) stands."""
    from promptline.core.errors import ConflictError
    from promptline.gateway.service import respond_approval

    with contextlib.suppress(ConflictError, NotFoundError):
        await respond_approval(
            app,
            caller,
            request_id,
            approve=approve,
            reason=None if approve else "refused at the MCP client",
            source="mcp",
        )


async def _first(work: asyncio.Future[Any], follower: _Follower | None) -> ApprovalNeeded | None:
    """Wait for ``work`` to end (None), or for an approval it waits on to be handed back."""
    if follower is None or not follower.asking.hand_back:
        await asyncio.shield(work)
        return None
    needed = follower.needed
    await asyncio.wait({work, needed}, return_when=asyncio.FIRST_COMPLETED)
    if needed.done() and not work.done():
        return needed.result()
    return None


class KeptCalls:
    """Direct tool calls handed back for an approval, kept (with whose they are) until a
    retry gives their result; each ended one is forgotten `KEEP_CALL_SECS` after its end."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._calls: dict[str, tuple[str, str, asyncio.Future[Any]]] = {}
        self._ended: dict[str, float] = {}
        self._clock = clock

    def keep(self, call_id: str, caller: Caller, work: asyncio.Future[Any]) -> None:
        self._forget_old()
        self._calls[call_id] = (caller.tenant_id, caller.user_id, work)
        if work.done():
            self._ended.setdefault(call_id, self._now())
        else:
            work.add_done_callback(lambda _: self._ended.setdefault(call_id, self._now()))

    def find(self, call_id: str, caller: Caller) -> asyncio.Future[Any] | None:
        """The call, when ``caller`` made it (None otherwise, as for one unknown); it stays
        kept until its result is given (`drop`) or it is forgotten."""
        self._forget_old()
        kept = self._calls.get(call_id)
        if kept is None or kept[:2] != (caller.tenant_id, caller.user_id):
            return None
        return kept[2]

    def drop(self, call_id: str) -> None:
        self._calls.pop(call_id, None)
        self._ended.pop(call_id, None)

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def _forget_old(self) -> None:
        now = self._now()
        for call_id, ended in list(self._ended.items()):
            if now - ended > KEEP_CALL_SECS:
                self.drop(call_id)


def _question(tool: str, arguments: dict[str, Any], reason: str | None) -> str:
    """What the person at the client is asked about a permission request."""
    shown = json.dumps(arguments or {}, ensure_ascii=False, sort_keys=True)
    if len(shown) > MAX_PROGRESS_LINE:
        shown = shown[: MAX_PROGRESS_LINE - 3] + "..."
    text = f"Allow {tool} {shown}?"
    return f"{text} ({reason})" if reason else text


def _follow_run(
    app: App,
    caller: Caller,
    run_id: str,
    progress: ProgressReport | None,
    asking: Asking,
    skip: frozenset[str] = frozenset(),
) -> _Follower | None:
    """Pass the run's steps (tool calls, their progress and results, model answers, the
    approvals they wait for) on as progress, and put its approvals to the client.
    Subscribes at once: call it with no await since the run was started. None when there
    is neither anyone to report to nor to ask."""
    if progress is None and asking.ask is None and not asking.hand_back:
        return None
    subscription = app.bus.subscribe(EventFilter(run_id=run_id, types=_RUN_FOLLOWED))
    return _Follower(
        app, caller, subscription, progress, asking, lambda event: True, _RUN_ENDINGS, skip=skip
    ).start()


def _follow_tool(
    app: App,
    caller: Caller,
    call_id: str,
    tool: str,
    progress: ProgressReport | None,
    asking: Asking,
    skip: frozenset[str] = frozenset(),
) -> _Follower | None:
    """Pass a direct tool call's progress on, until its result; put its approval to the
    client. None when there is neither anyone to report to nor to ask."""
    if progress is None and asking.ask is None and not asking.hand_back:
        return None
    wanted = EventFilter(
        types=frozenset({"tool_progress", "tool_result"}) | _APPROVALS,
        user_id=caller.user_id,
        tenant_id=caller.tenant_id,
    )
    subscription = app.bus.subscribe(wanted)
    follower = _Follower(
        app,
        caller,
        subscription,
        progress,
        asking,
        lambda event: event.correlation_id == call_id,
        frozenset({"tool_result"}),
        names={call_id: tool},
        skip=skip,
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
        PermissionDeniedEvent,
        PermissionGrantedEvent,
        PermissionRequestEvent,
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
    if isinstance(event, PermissionRequestEvent):
        asked = event.data
        return (
            f"waiting for approval {asked.request_id}: {asked.tool}"
            + (f" ({asked.reason})" if asked.reason else "")
            + f"; answer it with POST /v1/approvals/{asked.request_id}"
        )
    if isinstance(event, PermissionGrantedEvent):
        return f"{event.data.tool} approved"
    if isinstance(event, PermissionDeniedEvent):
        return f"{event.data.tool} refused"
    if isinstance(event, LlmResultEvent):
        if event.data.finish_reason == "tool_calls":
            return "the model asked for tools"
        return "the model answered"
    return None
