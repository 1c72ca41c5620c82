"""The SDK's low-level MCP server over `McpService`: listing and calling its offers."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from promptline import __version__
from promptline.core.errors import InvalidInputError
from promptline.core.keys import join_key
from promptline.gateway.mcp_server.service import (
    CALLER_SCOPE_KEY,
    SERVER_NAME,
    Asking,
    McpService,
    Offer,
    ProgressReport,
    Resumed,
    UnknownToolError,
    error_text,
)
from promptline.security.auth import Caller
from promptline.security.scopes import Scope

if TYPE_CHECKING:
    from mcp.server.context import ServerRequestContext
    from mcp.server.lowlevel.server import Server
    from mcp_types import (
        CallToolRequestParams,
        CallToolResult,
        InputRequiredResult,
        ListToolsResult,
    )
    from mcp_types import PaginatedRequestParams as PageParams

    from promptline.core.messages import ContentPart


MCP_SCOPES: dict[str, Scope] = {"tools/list": "catalog:read", "tools/call": "runs:write"}
"""The scope each MCP request the server answers needs (a tool call runs an agent or a
tool: it writes)."""


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

    def allowed(ctx: ServerRequestContext[Any, Any], scope: Scope) -> Caller:
        """The caller, once its role is found to grant ``scope`` (an MCP error otherwise)."""
        who = caller_of(ctx)
        if not who.allows(scope):
            raise MCPError(
                types.INVALID_REQUEST,
                f"forbidden: the role {who.role!r} does not allow {scope}",
                {"scope": scope, "role": who.role},
            )
        return who

    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: PageParams | None
    ) -> ListToolsResult:
        allowed(ctx, MCP_SCOPES["tools/list"])
        return types.ListToolsResult(
            tools=[_mcp_tool(offer) for offer in service.offers().values()]
        )

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: CallToolRequestParams
    ) -> CallToolResult | InputRequiredResult:
        who = allowed(ctx, MCP_SCOPES["tools/call"])
        report: ProgressReport | None = None
        if progress_token_from_params(ctx.params) is not None:
            steps = 0

            async def report(message: str) -> None:
                nonlocal steps
                steps += 1
                await ctx.session.report_progress(steps, None, message)

        asking = Asking()
        if who.allows("approvals:write") and _asks_forms(ctx):
            if _modern(ctx):
                asking = Asking(hand_back=True)
            else:

                async def ask(question: str) -> bool | None:
                    return await _ask(ctx, question)

                asking = Asking(ask=ask)
        try:
            outcome = await service.call(
                who,
                params.name,
                params.arguments,
                progress=report,
                idempotency_key=_key(ctx),
                asking=asking,
                resumed=_resumed(params),
            )
        except UnknownToolError as exc:
            raise MCPError(types.INVALID_PARAMS, error_text(exc), {"tool": params.name}) from None
        except InvalidInputError as exc:
            raise MCPError(types.INVALID_PARAMS, error_text(exc)) from None
        if outcome.needs is not None:
            question = types.ElicitRequest(
                params=types.ElicitRequestFormParams(
                    message=outcome.needs.question, requested_schema=APPROVAL_SCHEMA
                )
            )
            return types.InputRequiredResult(
                input_requests={APPROVAL_KEY: question},
                request_state=json.dumps(outcome.state, separators=(",", ":")),
            )
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


IDEMPOTENCY_META_KEY = "promptline/idempotency_key"
"""The ``_meta`` member of a ``tools/call`` that names the call for retries."""


APPROVAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "approve": {
            "type": "boolean",
            "title": "Allow it",
            "description": "Allow this call once; leave unchecked to refuse it.",
        }
    },
    "required": ["approve"],
}
"""The form an approval is put to the person at an MCP client in (elicitation)."""


APPROVAL_KEY = "approval"
"""The key of the approval among the input requests of a call handed back."""


def _modern(ctx: ServerRequestContext[Any, Any]) -> bool:
    """True on a 2026-07-28 connection: the server asks by handing the call back."""
    from mcp_types.version import MODERN_PROTOCOL_VERSIONS

    return getattr(ctx.session, "protocol_version", None) in MODERN_PROTOCOL_VERSIONS


def _resumed(params: CallToolRequestParams) -> Resumed | None:
    """The retry of a call handed back: the state it echoes and the person's answer."""
    if params.request_state is None:
        return None
    try:
        state = json.loads(params.request_state)
    except ValueError:
        state = None
    if not isinstance(state, dict):
        raise InvalidInputError("requestState is not one this server gave")
    response = (params.input_responses or {}).get(APPROVAL_KEY)
    action = getattr(response, "action", None)
    answer: bool | None = None
    if action == "decline":
        answer = False
    elif action == "accept":
        found = (getattr(response, "content", None) or {}).get("approve")
        answer = found if isinstance(found, bool) else None
    return Resumed(state, answer)


def _asks_forms(ctx: ServerRequestContext[Any, Any]) -> bool:
    """True when the client said it can put a form to its user (elicitation, form mode:
    a client that names no mode means form)."""
    try:
        capabilities = ctx.session.client_capabilities
    except Exception:  # a request with no session behind it
        return False
    elicitation = getattr(capabilities, "elicitation", None)
    if elicitation is None:
        return False
    return elicitation.form is not None or elicitation.url is None


async def _ask(ctx: ServerRequestContext[Any, Any], question: str) -> bool | None:
    """Put ``question`` to the person at the client: True (allow), False (refuse), None
    (dismissed, or the client could not be asked on this connection)."""
    try:
        result = await ctx.session.elicit_form(
            question, APPROVAL_SCHEMA, related_request_id=ctx.request_id
        )
    except Exception:
        logging.getLogger("promptline.gateway.mcp").debug(
            "the MCP client could not be asked", exc_info=True
        )
        return None
    if result.action == "decline":
        return False
    if result.action != "accept":
        return None
    answer = (result.content or {}).get("approve")
    return answer if isinstance(answer, bool) else None


def _key(ctx: ServerRequestContext[Any, Any]) -> str | None:
    """The idempotency key of a call: the one its ``_meta`` gives, else its request id within
    its MCP session over HTTP (request ids are only unique within a session; over stdio a
    call without one in ``_meta`` has none)."""
    meta = (ctx.params or {}).get("_meta")
    if isinstance(meta, dict) and isinstance(meta.get(IDEMPOTENCY_META_KEY), str):
        return str(meta[IDEMPOTENCY_META_KEY])
    headers = getattr(ctx.request, "headers", None)
    session = headers.get("mcp-session-id") if headers is not None else None
    if session and ctx.request_id is not None:
        return join_key("mcp", session, str(ctx.request_id))
    return None


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
