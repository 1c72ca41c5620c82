"""What PromptLine answers when an MCP server asks its client for something during a tool call:
a model call (``sampling/createMessage``, answered with the model of the agent whose call it
is), a question for the user (``elicitation/create``, asked like an approval) and the folders
it may work in (``roots/list``, the workspaces of the calls in flight).

Each request is matched to the tool call that caused it (`CallOrigin`): on 2026-07-28
connections the request travels inside the call, so it is that call; on older connections the
server sends it beside the call, so it is the call in flight on that connection, when all the
calls in flight there belong to one run.
"""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptline.core.errors import (
    InvalidInputError,
    PermissionDeniedError,
    PromptLineError,
)
from promptline.core.messages import ContentPart, ImagePart, Message, TextPart, ToolCall
from promptline.tools.executor import CallScope

if TYPE_CHECKING:
    import mcp_types

    from promptline.runtime.run import Run
    from promptline.runtime.runtime import Runtime
    from promptline.security.gate import PermissionManager

__all__ = [
    "REFUSED",
    "SAMPLING_TASK",
    "CallOrigin",
    "McpHost",
    "current_call",
    "elicitation_rule",
    "roots_of",
    "sampling_rule",
]

_log = logging.getLogger("promptline.mcp")

REFUSED = -1
"""The JSON-RPC error code of a sampling request PromptLine refused (a rule, a person, a
budget), as MCP's own examples answer a refused request."""

SAMPLING_TASK = "mcp_sampling"
"""The ``task`` of a sampling request's model call (its ``llm_command`` says so in ``params``,
and routing rules may match it)."""

_SHOWN_CHARS = 2000
"""Longest text of one sampled message shown in an approval request."""


def sampling_rule(server: str) -> str:
    """The name permission rules give a sampling request of ``server``:
    ``mcp.<server>:sampling`` (no tool name holds ``:``, so ``mcp.<server>.*`` does not
    cover it)."""
    return f"mcp.{server}:sampling"


def elicitation_rule(server: str) -> str:
    """The name of a question ``server`` asks (``mcp.<server>:elicitation``), as rules and
    the approval requests call it."""
    return f"mcp.{server}:elicitation"


@dataclass(slots=True)
class CallOrigin:
    """The tool call an MCP request belongs to: who made it and where it may work."""

    call_id: str
    tool: str
    workspace: Path
    session_id: str | None = None
    run_id: str | None = None
    user_id: str | None = None
    tenant_id: str | None = None
    agent: str | None = None
    refusals: list[str] = field(default_factory=list)
    """Why PromptLine refused a request of the server during this call (a call that fails
    because of it says so instead of the server's words)."""

    def scope(self, run: Run | None) -> CallScope:
        """The permission scope of the call (its session's own rules from its run)."""
        return CallScope(
            workspace=self.workspace,
            session_id=self.session_id,
            run_id=self.run_id,
            user_id=self.user_id,
            tenant_id=self.tenant_id,
            agent=self.agent,
            correlation_id=self.run_id,
            session_rules=run.session.rules if run is not None and run.session else {},
        )


current_call: contextvars.ContextVar[CallOrigin | None] = contextvars.ContextVar(
    "promptline_mcp_call", default=None
)
"""The MCP tool call running in this task (set around the call)."""


def roots_of(origins: list[CallOrigin]) -> mcp_types.ListRootsResult:
    """The roots of the calls ``origins``: each distinct workspace, as a ``file://`` URI."""
    import mcp_types as types

    seen: dict[str, str] = {}
    for origin in origins:
        path = origin.workspace.expanduser().resolve()
        seen.setdefault(path.as_uri(), origin.agent or path.name)
    return types.ListRootsResult(
        roots=[types.Root(uri=uri, name=f"workspace of {name}") for uri, name in seen.items()]
    )


class McpHost:
    """Answers the sampling and elicitation requests of MCP servers for a running PromptLine:
    the runtime knows the runs (their model, agent and session) and the permission manager
    decides and asks."""

    def __init__(self, runtime: Runtime, permissions: PermissionManager) -> None:
        self.runtime = runtime
        self.permissions = permissions

    # -- sampling -----------------------------------------------------------------------------

    async def sample(
        self,
        server: str,
        params: mcp_types.CreateMessageRequestParams,
        origin: CallOrigin | None,
        unknown: str | None = None,
        *,
        ambiguous: bool = False,
    ) -> mcp_types.CreateMessageResult | mcp_types.ErrorData:
        """Answer a sampling request of ``server`` made during ``origin`` (None: no call
        known, ``unknown`` saying why; ``ambiguous``: it is one of several calls, so it is
        refused) with the run's model, or refuse it with an error."""
        import mcp_types as types

        try:
            if origin is None and ambiguous:
                raise PermissionDeniedError(
                    f"{unknown}, so it cannot be answered for the run that made it",
                    hint="a server of the 2026-07-28 protocol says which call asks",
                )
            return await self._sample(server, params, origin, unknown)
        except PromptLineError as exc:
            text = (
                f"PromptLine refused the sampling request of MCP server {server!r}: {exc.message}"
            )
            if origin is not None:
                origin.refusals.append(text)
            _log.warning("%s", text)
            code = types.INVALID_PARAMS if isinstance(exc, InvalidInputError) else REFUSED
            return types.ErrorData(code=code, message=text)
        except Exception as exc:  # a provider's failure, in its words
            text = f"the model call for MCP server {server!r} failed: {type(exc).__name__}: {exc}"
            if origin is not None:
                origin.refusals.append(text)
            _log.warning("%s", text)
            return types.ErrorData(code=types.INTERNAL_ERROR, message=text)

    async def _sample(
        self,
        server: str,
        params: mcp_types.CreateMessageRequestParams,
        origin: CallOrigin | None,
        unknown: str | None,
    ) -> mcp_types.CreateMessageResult:
        import mcp_types as types

        from promptline.models.instrumented import CallContext, InstrumentedModel
        from promptline.models.types import ModelRequest
        from promptline.runtime.budget import check

        if params.tools or params.tool_choice is not None:
            raise InvalidInputError(
                "sampling with tools is not supported (PromptLine does not declare it)",
                hint="send the request without tools",
            )
        messages = _messages(params)
        run = self._run(origin)
        services = self.runtime.services
        model = run.model if run is not None else (services.default_model or "")
        if not model:
            raise InvalidInputError(
                "there is no model to answer with: the request belongs to no agent's run "
                "and models.default is not set",
                hint="set models.default",
            )
        name = sampling_rule(server)
        shown = {
            "model": model,
            "max_tokens": params.max_tokens,
            "system_prompt": params.system_prompt,
            "messages": [
                {"role": m.role, "text": _clip(m.text or "[non-text content]")} for m in messages
            ],
        }
        await self._authorize(name, shown, origin, run, unknown)
        scope = origin.scope(run) if origin is not None else None
        budget = services.budget
        if scope is not None:
            session = (
                await services.spent_by_session(scope.session_id)
                if budget.any_session and scope.session_id
                else None
            )
            user = (
                await services.spent_by_user_today(scope.user_id, scope.tenant_id)
                if budget.any_user and scope.user_id
                else None
            )
            check(budget, session=session, user=user, what=f"the sampling request of {server!r}")
        agent = run.agent if run is not None else None
        limit = params.max_tokens
        if agent is not None and agent.max_tokens:
            limit = min(limit, agent.max_tokens)
        tags: list[str] = []
        if model.startswith("tag:"):
            model, tags = "", [model[4:]]
        system = (
            [Message(role="system", content=params.system_prompt)] if params.system_prompt else []
        )
        request = ModelRequest(
            model=model,
            messages=[*system, *messages],
            temperature=params.temperature
            if params.temperature is not None
            else (agent.temperature if agent is not None else None),
            max_tokens=limit,
            stop=list(params.stop_sequences) if params.stop_sequences else None,
            tags=tags,
            task=SAMPLING_TASK,
        )
        context = CallContext(**run.envelope) if run is not None else CallContext()
        llm = InstrumentedModel(services.models, services.bus, capabilities=services.capabilities)
        response = await llm.complete(request, context=context)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=response.message.text),
            model=f"{response.provider}/{response.model}" if response.provider else response.model,
            stop_reason=_STOP_REASONS.get(str(response.finish_reason), response.finish_reason),
        )

    async def _authorize(
        self,
        name: str,
        shown: dict[str, Any],
        origin: CallOrigin | None,
        run: Run | None,
        unknown: str | None,
    ) -> None:
        permissions = self.permissions
        if origin is None:
            decision = permissions.policy.decide(name, shown)
            if decision.allowed:
                return
            if decision.denied:
                raise PermissionDeniedError(decision.reason, rule=name)
            raise PermissionDeniedError(
                f"{decision.reason}, but {unknown or 'it was made outside any tool call'}, so "
                "nobody can be asked",
                hint=f"allow it with a rule for {name}",
                rule=name,
            )
        answer = await permissions.authorize(
            _ServerRequest(name), ToolCall(name=name, arguments=shown), origin.scope(run)
        )
        if not answer.allowed:
            raise PermissionDeniedError(answer.reason or "refused", rule=name)

    # -- elicitation --------------------------------------------------------------------------

    async def elicit(
        self,
        server: str,
        params: mcp_types.ElicitRequestParams,
        origin: CallOrigin | None,
        unknown: str | None = None,
    ) -> mcp_types.ElicitResult | mcp_types.ErrorData:
        """Ask the user of ``origin``'s session the question of ``server``, as an approval
        request any face can answer: a yes with content accepts, a no declines, no answer in
        time (or a withdrawn request) cancels."""
        import mcp_types as types

        from promptline.security.approvals import CANCELLED, EXPIRED, TIMEOUT

        name = elicitation_rule(server)
        if origin is None:
            _log.warning(
                "MCP server %s asked a question, but %s: nobody can be asked, so it is cancelled",
                server,
                unknown or "it was asked outside any tool call",
            )
            return types.ElicitResult(action="cancel")
        run = self._run(origin)
        scope = origin.scope(run)
        decision = self.permissions.policy.decide(
            name,
            read_only=True,
            agent=scope.agent,
            user=scope.user_id,
            session_id=scope.session_id,
            session_rules=scope.session_rules,
        )
        if decision.denied:
            _log.info("MCP server %s: its question is declined: %s", server, decision.reason)
            return types.ElicitResult(action="decline")
        schema: dict[str, Any] | None
        if isinstance(params, types.ElicitRequestURLParams):
            arguments: dict[str, Any] = {"message": params.message, "url": params.url}
            schema = None
        else:
            schema = dict(params.requested_schema)
            arguments = {"message": params.message, "requested_schema": schema}
        try:
            outcome = await self.permissions.broker.ask(
                name,
                arguments,
                scope,
                reason=f"MCP server {server!r} asks: {params.message}",
                schema=schema,
            )
        except InvalidInputError as exc:
            return types.ErrorData(code=types.INVALID_PARAMS, message=exc.message)
        except PromptLineError as exc:
            _log.warning("MCP server %s: its question could not be asked: %s", server, exc.message)
            return types.ElicitResult(action="cancel")
        if outcome.approved:
            return types.ElicitResult(action="accept", content=outcome.content)
        if outcome.decided_by in (TIMEOUT, EXPIRED, CANCELLED):
            return types.ElicitResult(action="cancel")
        return types.ElicitResult(action="decline")

    # -- internals ----------------------------------------------------------------------------

    def _run(self, origin: CallOrigin | None) -> Run | None:
        if origin is None or origin.run_id is None:
            return None
        try:
            return self.runtime.get(origin.run_id)
        except PromptLineError:
            return None  # it ended meanwhile: the call's own scope still says who it was


class _ServerRequest:
    """A server's request as the permission gate sees a tool: it changes nothing here, and
    destroys nothing (so no alert when refused)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.description = f"a request of an MCP server ({name})"
        self.parameters: dict[str, Any] = {"type": "object"}
        self.read_only = False
        self.destructive = False
        self.timeout: float | None = None

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        return arguments

    async def run(self, arguments: dict[str, Any], context: Any) -> Any:
        raise NotImplementedError(f"{self.name} is not a tool")


_STOP_REASONS = {"stop": "endTurn", "length": "maxTokens", "tool_calls": "toolUse"}


def _messages(params: mcp_types.CreateMessageRequestParams) -> list[Message]:
    import mcp_types as types

    found: list[Message] = []
    for message in params.messages:
        parts: list[ContentPart] = []
        for block in message.content_as_list:
            if isinstance(block, types.TextContent):
                parts.append(TextPart(text=block.text))
            elif isinstance(block, types.ImageContent):
                parts.append(ImagePart(data=block.data, media_type=block.mime_type))
            else:
                raise InvalidInputError(
                    f"sampling messages with {block.type} content are not supported",
                    hint="send text and images",
                )
        found.append(Message(role=message.role, content=parts))
    if not found:
        raise InvalidInputError("a sampling request needs at least one message")
    return found


def _clip(text: str) -> str:
    if len(text) <= _SHOWN_CHARS:
        return text
    return text[:_SHOWN_CHARS] + f"... ({len(text) - _SHOWN_CHARS} more characters)"
