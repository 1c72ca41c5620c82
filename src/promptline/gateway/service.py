"""What REST, WebSocket and OpenAI-compatible endpoints share: visibility checks (what a
caller may not see does not exist: 404, never 403), starting a run on a session, answering
approvals, and the JSON forms of sessions, events, runs and approvals."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import orjson

from promptline.core.errors import InvalidInputError, NotFoundError
from promptline.core.events import Event, encode_event
from promptline.runtime.records import RunRecord, load_run
from promptline.security.auth import Caller

if TYPE_CHECKING:
    from promptline.app import App
    from promptline.runtime.run import Run
    from promptline.security.approvals import ApprovalOutcome, ApprovalRequest
    from promptline.sessions.models import Session

__all__ = [
    "approval_json",
    "event_json",
    "respond_approval",
    "session_json",
    "start_message",
    "visible_approval",
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
    if not _may_see(caller, record.tenant_id, record.user_id, record.session_id):
        raise NotFoundError(f"no run {run_id!r}", run_id=run_id)
    if record.session_id is not None:
        await visible_session(app, caller, record.session_id)
    return record


async def visible_approval(app: App, caller: Caller, request_id: str) -> ApprovalRequest:
    """A pending or decided request if ``caller`` may answer in its session; else 404."""
    record = await app.permissions.broker.get(request_id)
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
) -> ApprovalOutcome:
    """Answer a request as ``caller``: only someone who may see its session (its owner or
    the tenant's admin) may; the answer records who gave it."""
    await visible_approval(app, caller, request_id)
    return await app.permissions.respond(
        request_id, approve=approve, scope=scope, decided_by=caller.user_id, reason=reason
    )


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
) -> Run:
    """Add a user message to a session the caller may see and start the run answering it."""
    if not isinstance(content, str) or not content.strip():
        raise InvalidInputError("content must be a non-empty string", field="content")
    if len(content) > MAX_CONTENT_CHARS:
        raise InvalidInputError(
            f"content is longer than {MAX_CONTENT_CHARS} characters", field="content"
        )
    await visible_session(app, caller, session_id)
    return await app.runtime.start_run(
        content,
        session_id=session_id,
        principal=caller.principal,
        agent=agent,
        mode=mode,
        model=model,
        queue_mode=queue_mode,
    )


def _may_see(caller: Caller, tenant: str | None, user: str | None, session: str | None) -> bool:
    if tenant is not None and tenant != caller.tenant_id:
        return False
    if session is not None:
        return True  # the session check decides
    return caller.is_admin or user == caller.user_id


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
