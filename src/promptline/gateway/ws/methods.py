"""The control plane's methods: each takes its params model and answers JSON. They go
through the same visibility checks as REST (`promptline.gateway.service`), so what a caller
may not see does not exist here either."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from promptline.core.errors import NotFoundError
from promptline.gateway.catalog_items import model_items, tool_items
from promptline.gateway.service import (
    accepted_json,
    approval_outcome_json,
    check_agent,
    check_sandbox_choice,
    control_run,
    record_sandbox_choice,
    respond_approval,
    session_json,
    start_message,
    visible_session,
)
from promptline.gateway.state_access import entry_json, set_state, state_address
from promptline.gateway.ws.context import MethodContext
from promptline.gateway.ws.params import (
    EventsSubscribe,
    EventsUnsubscribe,
    NoParams,
    PermissionRespond,
    RunControl,
    SessionCreate,
    SessionSend,
    StateGet,
    StateSet,
)
from promptline.security.scopes import Scope

__all__ = ["METHODS", "Method"]

P = TypeVar("P", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Method(Generic[P]):
    """A method: the model its params must fit, what it does with them, and the scope a
    caller's role must grant to call it (`promptline.security.scopes`)."""

    params: type[P]
    call: Callable[[MethodContext, P], Awaitable[Any]]
    scope: Scope


async def session_create(ctx: MethodContext, p: SessionCreate) -> dict[str, Any]:
    """A new session of the caller; its ``agent`` (kept as ``metadata.agent``) answers the
    messages that name none."""
    check_sandbox_choice(ctx.caller, p.sandbox)
    metadata = dict(p.metadata or {})
    agent = check_agent(ctx.app, p.agent)  # an unknown one is refused now, not at a run
    if agent is not None:
        metadata["agent"] = agent
    session = await ctx.app.sessions.create(
        ctx.caller.principal,
        channel=p.channel,
        context=p.context,
        metadata=metadata,
        ttl=timedelta(seconds=p.ttl_secs) if p.ttl_secs is not None else None,
        sandbox=p.sandbox,
    )
    if p.sandbox is not None:
        await record_sandbox_choice(ctx.app, ctx.caller, session, ctx.source)
    return session_json(session)


async def session_send(ctx: MethodContext, p: SessionSend) -> dict[str, Any]:
    """Add the message to the session for the run that answers it; the answer comes once
    both are in the log. ``client_msg_id`` makes a retry give the first answer back."""
    session = await visible_session(ctx.app, ctx.caller, p.session_id)
    agent = p.agent
    if agent is None and isinstance(session.metadata.get("agent"), str):
        agent = session.metadata["agent"]
    check_agent(ctx.app, agent)
    accepted = await start_message(
        ctx.app,
        ctx.caller,
        p.session_id,
        p.content,
        agent=agent,
        model=p.model,
        mode=p.mode,
        queue_mode=p.queue_mode,
        idempotency_key=p.client_msg_id,
        session=session,
    )
    return accepted_json(accepted)


async def run_cancel(ctx: MethodContext, p: RunControl) -> dict[str, str]:
    """Cancel a run in flight; says how it ended (``cancelling`` if not yet)."""
    return await control_run(ctx.app, ctx.caller, p.run_id, "cancel")


async def run_pause(ctx: MethodContext, p: RunControl) -> dict[str, str]:
    """Hold a run at its next safe point."""
    return await control_run(ctx.app, ctx.caller, p.run_id, "pause")


async def run_resume(ctx: MethodContext, p: RunControl) -> dict[str, str]:
    """Let a paused run go on."""
    return await control_run(ctx.app, ctx.caller, p.run_id, "resume")


async def permission_respond(ctx: MethodContext, p: PermissionRespond) -> dict[str, Any]:
    """Answer a pending permission request of a session the caller may see."""
    outcome = await respond_approval(
        ctx.app,
        ctx.caller,
        p.request_id,
        approve=p.approve,
        scope=p.scope,
        reason=p.reason,
        content=p.content,
        source=ctx.source,
    )
    return approval_outcome_json(outcome)


async def events_subscribe(ctx: MethodContext, p: EventsSubscribe) -> dict[str, Any]:
    """Follow a session's events after ``from_seq`` (left out: from now on)."""
    await visible_session(ctx.app, ctx.caller, p.session_id)
    sub_id = ctx.subscriptions.open(p.session_id, p.from_seq)
    return {"subscription": sub_id, "session_id": p.session_id}


async def events_unsubscribe(ctx: MethodContext, p: EventsUnsubscribe) -> dict[str, Any]:
    """Stop a subscription of this connection."""
    session_id = await ctx.subscriptions.close(p.subscription)
    return {"subscription": p.subscription, "session_id": session_id}


async def state_get(ctx: MethodContext, p: StateGet) -> dict[str, Any]:
    """One stored value; `NotFoundError` when the key holds none."""
    address = await state_address(ctx.app, ctx.caller, p.scope, p.key, p.session_id)
    entry = await ctx.app.state.get(p.scope, address.stored_key, namespace=address.namespace)
    if entry is None:
        raise NotFoundError(f"no {p.scope} state {p.key!r}", hint="state.set writes it", key=p.key)
    return entry_json(address, entry)


async def state_set(ctx: MethodContext, p: StateSet) -> dict[str, Any]:
    """Write a value (only if its version is ``expected_version``, when given)."""
    address = await state_address(ctx.app, ctx.caller, p.scope, p.key, p.session_id)
    entry = await set_state(ctx.app, ctx.caller, address, p.value, p.expected_version)
    return entry_json(address, entry)


async def tools_list(ctx: MethodContext, p: NoParams) -> dict[str, Any]:
    """Every registered tool, and what the policy says of it for the caller."""
    return {"items": tool_items(ctx.app, ctx.caller)}


async def models_list(ctx: MethodContext, p: NoParams) -> dict[str, Any]:
    """The model catalogue: capabilities, prices, and whether each is configured here."""
    return {"items": model_items(ctx.app)}


async def ping(ctx: MethodContext, p: NoParams) -> str:
    """An application-level heartbeat."""
    return "pong"


METHODS: dict[str, Method[Any]] = {
    "session.create": Method(SessionCreate, session_create, "sessions:write"),
    "session.send": Method(SessionSend, session_send, "runs:write"),
    "run.cancel": Method(RunControl, run_cancel, "runs:write"),
    "run.pause": Method(RunControl, run_pause, "runs:write"),
    "run.resume": Method(RunControl, run_resume, "runs:write"),
    "permission.respond": Method(PermissionRespond, permission_respond, "approvals:write"),
    "events.subscribe": Method(EventsSubscribe, events_subscribe, "events:read"),
    "events.unsubscribe": Method(EventsUnsubscribe, events_unsubscribe, "events:read"),
    "state.get": Method(StateGet, state_get, "state:read"),
    "state.set": Method(StateSet, state_set, "state:write"),
    "tools.list": Method(NoParams, tools_list, "catalog:read"),
    "models.list": Method(NoParams, models_list, "catalog:read"),
    "ping": Method(NoParams, ping, "catalog:read"),
}
"""Every method, by name."""
