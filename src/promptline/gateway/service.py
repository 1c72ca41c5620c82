"""What REST, WebSocket and OpenAI-compatible endpoints share: visibility checks (what a
caller may not see does not exist: 404, never 403), starting a run on a session, answering
approvals, and the JSON forms of sessions, events, runs and approvals."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Literal

import orjson

from promptline.core.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from promptline.core.events import Event, encode_event
from promptline.runtime.records import RunRecord, load_run
from promptline.security.auth import Caller
from promptline.security.scopes import Scope

if TYPE_CHECKING:
    from promptline.app import App
    from promptline.runtime.ingress import Accepted
    from promptline.runtime.run import Run
    from promptline.security.approvals import ApprovalOutcome, ApprovalRequest
    from promptline.sessions.models import Session

__all__ = [
    "SANDBOX_SCOPE",
    "accepted_json",
    "active_run",
    "approval_json",
    "approval_outcome_json",
    "check_agent",
    "check_sandbox_choice",
    "control_run",
    "delete_session",
    "event_json",
    "may_see_session",
    "record_sandbox_choice",
    "respond_approval",
    "run_json",
    "session_json",
    "shown_run",
    "start_message",
    "visible_approval",
    "visible_approvals",
    "visible_run",
    "visible_session",
]

MAX_CONTENT_CHARS = 200_000


async def visible_session(
    app: App, caller: Caller, session_id: str, *, history_limit: int | None = 0
) -> Session:
    """The session if ``caller`` may see it; `NotFoundError` otherwise (the same as for an
    unknown id, so nothing leaks about other tenants' sessions)."""
    return await app.sessions.get(session_id, caller.principal, history_limit=history_limit)


async def visible_run(app: App, caller: Caller, run_id: str) -> RunRecord:
    """The run's record if ``caller`` may see its session (or, for a run without one, is its
    user in its tenant, or the tenant's admin); `NotFoundError` otherwise."""
    if not isinstance(run_id, str) or not run_id or len(run_id) > 255:
        raise NotFoundError(f"no run {run_id!r}")
    try:
        record = await load_run(app.events, run_id)
    except NotFoundError:
        raise NotFoundError(f"no run {run_id!r}", run_id=run_id) from None
    return await shown_run(app, caller, record)


async def shown_run(app: App, caller: Caller, record: RunRecord) -> RunRecord:
    """``record`` (read from the log) if ``caller`` may see its run, as `visible_run` judges;
    `NotFoundError` otherwise."""
    run_id = record.run_id
    if not _may_see(caller, record.tenant_id, record.user_id, record.session_id):
        raise NotFoundError(f"no run {run_id!r}", run_id=run_id)
    if record.session_id is not None:
        try:
            await visible_session(app, caller, record.session_id)
        except NotFoundError:
            # The same answer as for an unknown run: naming the session would leak its id.
            raise NotFoundError(f"no run {run_id!r}", run_id=run_id) from None
    return record


async def visible_approval(app: App, caller: Caller, request_id: str) -> ApprovalRequest:
    """A pending or decided request if ``caller`` may answer in its session; else 404 (the
    same for an unknown request, so nothing tells them apart)."""
    try:
        record = await app.permissions.broker.get(request_id)
    except NotFoundError:
        raise NotFoundError(
            f"no permission request {request_id!r}", request_id=request_id
        ) from None
    request = record.request
    if not _may_see(caller, request.tenant_id, request.user_id, request.session_id):
        raise NotFoundError(f"no permission request {request_id!r}", request_id=request_id)
    if request.session_id is not None:
        try:
            await visible_session(app, caller, request.session_id)
        except NotFoundError:
            raise NotFoundError(
                f"no permission request {request_id!r}", request_id=request_id
            ) from None
    return request


async def respond_approval(
    app: App,
    caller: Caller,
    request_id: str,
    *,
    approve: bool,
    scope: Literal["once", "session", "always"] = "once",
    reason: str | None = None,
    content: dict[str, Any] | None = None,
    source: str | None = None,
) -> ApprovalOutcome:
    """Answer a request as ``caller``: only someone who may see its session (its owner or
    the tenant's admin) may; the answer records who gave it, and an ``audit`` event adds the
    key it came with and the address it came from (``source``). ``content`` answers a
    question (an MCP server's elicitation)."""
    request = await visible_approval(app, caller, request_id)
    outcome = await app.permissions.respond(
        request_id,
        approve=approve,
        scope=scope,
        decided_by=caller.user_id,
        reason=reason,
        content=content,
    )
    await app.audit.record(
        "approval.granted" if outcome.approved else "approval.denied",
        actor=caller.user_id,
        key_id=caller.key_id,
        tenant_id=request.tenant_id,
        target=request_id,
        source=source,
        details={
            "tool": request.tool,
            "scope": outcome.scope,
            "session_id": request.session_id,
            "run_id": request.run_id,
        },
    )
    return outcome


async def start_message(
    app: App,
    caller: Caller,
    session_id: str,
    content: str,
    *,
    agent: str | None = None,
    model: str | None = None,
    mode: Literal["plan", "act"] | None = None,
    queue_mode: Literal["enqueue", "steer", "interrupt", "reject"] | None = None,
    idempotency_key: str | None = None,
    channel: str | None = None,
    session: Session | None = None,
) -> Accepted:
    """Add a user message to a session the caller may see, for the run that answers it; the
    answer comes once both are in the log (see `Runtime.submit`, which also explains
    ``idempotency_key``). ``session``: the session as `visible_session` just read it for
    ``caller`` (so it is not read again)."""
    if not isinstance(content, str) or not content.strip():
        raise InvalidInputError("content must be a non-empty string", field="content")
    if len(content) > MAX_CONTENT_CHARS:
        raise InvalidInputError(
            f"content is longer than {MAX_CONTENT_CHARS} characters", field="content"
        )
    return await app.runtime.submit(
        content,
        session_id=session_id,
        principal=caller.principal,
        agent=agent,
        mode=mode,
        model=model,
        queue_mode=queue_mode,
        idempotency_key=idempotency_key,
        channel=channel,
        session=session,
    )


def accepted_json(accepted: Accepted) -> dict[str, Any]:
    """The acknowledgement of a message as the API shows it (the same for a retry)."""
    return {
        "run_id": accepted.answer_run_id,
        "session_id": accepted.session_id,
        "status": "started",
        "position": accepted.position,
    }


def _may_see(caller: Caller, tenant: str | None, user: str | None, session: str | None) -> bool:
    if tenant is not None and tenant != caller.tenant_id:
        return False
    if session is not None:
        return True  # the session check decides
    return caller.tenant_wide or user == caller.user_id


def event_json(event: Event) -> dict[str, Any]:
    """An event as the wire carries it (the envelope with its typed ``data``)."""
    value: dict[str, Any] = orjson.loads(encode_event(event))
    return value


def session_json(session: Session, *, history: bool = False) -> dict[str, Any]:
    """A session as the API shows it (with its history when asked)."""
    data = session.model_dump(mode="json", exclude=None if history else {"history"})
    data["permissions"] = data.get("permissions", {}).get("rules", {})
    return data


def approval_json(request: ApprovalRequest) -> dict[str, Any]:
    """A permission request as the API shows it."""
    return {
        "request_id": request.request_id,
        "tool": request.tool,
        "arguments": request.arguments,
        "reason": request.reason,
        "call_id": request.call_id,
        "destructive": request.destructive,
        "session_id": request.session_id,
        "run_id": request.run_id,
        "user_id": request.user_id,
        "requested_at": request.requested_at.isoformat(),
        "expires_at": request.expires_at.isoformat(),
    }


# -- additions for the REST resources (and any protocol that needs the same) ------------------

CANCEL_WAIT_SECS = 5.0
"""How long a cancel waits for the run to end before answering ``cancelling``."""

RunAction = Literal["cancel", "pause", "resume"]


async def visible_approvals(
    app: App, caller: Caller, session_id: str | None = None
) -> list[ApprovalRequest]:
    """Pending requests ``caller`` may answer (of one session when given: 404 if it may not
    see that session), oldest first."""
    if session_id is not None:
        await visible_session(app, caller, session_id)
    found = []
    sessions: dict[str, bool] = {}
    for request in await app.permissions.pending(session_id):
        if not _may_see(caller, request.tenant_id, request.user_id, request.session_id):
            continue
        sid = request.session_id
        if sid is not None:
            if sid not in sessions:
                sessions[sid] = await may_see_session(app, caller, sid)
            if not sessions[sid]:
                continue
        found.append(request)
    return found


async def may_see_session(app: App, caller: Caller, session_id: str) -> bool:
    """True if ``caller`` may see the session (it exists, is not deleted, and is theirs or
    their tenant's, for a tenant admin)."""
    try:
        await visible_session(app, caller, session_id)
    except NotFoundError:
        return False
    return True


async def active_run(app: App, caller: Caller, run_id: str) -> Run:
    """A run in flight (or waiting its turn) in this process that ``caller`` may see.

    `NotFoundError` for a run the caller may not see or that does not exist;
    `ConflictError` for a visible run that is not in flight here (it ended, or it waits
    for an approval since a restart)."""
    run = _runtime_run(app, run_id)
    if run is not None:
        if run.session is not None:
            if not await may_see_session(app, caller, run.session.id):
                raise NotFoundError(f"no run {run_id!r}", run_id=run_id)
        else:
            await visible_run(app, caller, run_id)
        return run
    record = await visible_run(app, caller, run_id)
    hint = (
        "answer its pending approvals to let it go on"
        if record.status == "waiting_approval"
        else "only runs in flight can be cancelled, paused or resumed"
    )
    raise ConflictError(
        f"run {run_id!r} is not in flight in this process (its status is {record.status})",
        hint=hint,
        run_id=run_id,
        status=record.status,
    )


async def control_run(app: App, caller: Caller, run_id: str, action: RunAction) -> dict[str, str]:
    """Cancel, pause or resume a run ``caller`` may see; ``{run_id, status}``.

    A cancel waits up to `CANCEL_WAIT_SECS` for the run to end and says how it ended
    (``cancelling`` if it has not ended yet); pause and resume take effect at the run's
    next safe point."""
    run = await active_run(app, caller, run_id)
    if action == "pause":
        run.pause()
        return {"run_id": run.id, "status": "paused"}
    if action == "resume":
        run.resume()
        return {"run_id": run.id, "status": "running"}
    run.cancel(f"cancelled by {caller.user_id}", by=caller.user_id)
    try:
        result = await asyncio.wait_for(run.result(), timeout=CANCEL_WAIT_SECS)
    except TimeoutError:
        return {"run_id": run.id, "status": "cancelling"}
    return {"run_id": run.id, "status": result.status}


async def run_json(app: App, caller: Caller, run_id: str) -> dict[str, Any]:
    """The record of a run ``caller`` may see (``queued`` while it waits for its session's
    turn: a run is on the log from the moment its message is taken); 404 otherwise."""
    return (await visible_run(app, caller, run_id)).to_dict()


async def delete_session(app: App, caller: Caller, session_id: str) -> None:
    """Delete a session ``caller`` may see (see `SessionManager.delete`: the log keeps it,
    every read hides it) and cancel its runs in flight."""
    await app.sessions.delete(session_id, caller.principal)
    for run in app.runtime.active:
        if run.session is not None and run.session.id == session_id:
            run.cancel("the session was deleted", by=caller.user_id)


def approval_outcome_json(outcome: ApprovalOutcome) -> dict[str, Any]:
    """The recorded answer to a permission request, as the API shows it."""
    return {
        "request_id": outcome.request_id,
        "tool": outcome.tool,
        "approved": outcome.approved,
        "status": "granted" if outcome.approved else "denied",
        "scope": outcome.scope,
        "decided_by": outcome.decided_by,
        "reason": outcome.reason,
        "decided_at": outcome.decided_at.isoformat(),
    }


def _runtime_run(app: App, run_id: str) -> Run | None:
    if not isinstance(run_id, str) or not run_id:
        return None
    try:
        return app.runtime.get(run_id)
    except NotFoundError:
        return None


SANDBOX_SCOPE: Scope = "sessions:sandbox"
"""The scope that lets a caller choose a session's own sandbox."""


def check_sandbox_choice(caller: Caller, sandbox: str | None) -> None:
    """`PermissionDeniedError` (403) when ``caller`` gives a session a sandbox without the
    scope ``sessions:sandbox`` (a plain user may not: the operator chooses where commands
    run); None, no sandbox asked for, passes."""
    if sandbox is None or caller.allows(SANDBOX_SCOPE):
        return
    raise PermissionDeniedError(
        f"the role {caller.role!r} does not allow {SANDBOX_SCOPE}: a session's own sandbox "
        "is chosen by an operator or an admin",
        hint="leave sandbox out (the session runs in its agent's and its channel's sandbox), "
        f"or use a key of a role with {SANDBOX_SCOPE} (see GET /v1/auth/roles)",
        scope=SANDBOX_SCOPE,
        role=caller.role,
        field="sandbox",
    )


async def record_sandbox_choice(
    app: App, caller: Caller, session: Session, source: str | None
) -> None:
    """Put a session's sandbox chosen by ``caller`` on the audit trail (the session's own
    events name its owner, not who chose)."""
    await app.audit.record(
        "session.sandbox_changed",
        actor=caller.user_id,
        key_id=caller.key_id,
        tenant_id=session.tenant_id,
        target=session.id,
        source=source,
        details={"sandbox": session.sandbox, "channel": session.channel},
    )


def check_agent(app: App, name: str | None) -> str | None:
    """``name`` if it names a configured agent (None stays None: the default agent);
    `InvalidInputError` listing the agents otherwise."""
    if name is None or name in app.runtime.agents:
        return name
    raise InvalidInputError(
        f"no agent {name!r}",
        hint=f"agents: {', '.join(app.runtime.agents) or 'none'} (GET /v1/agents)",
        field="agent",
    )
