"""Sessions: create, list, read, delete, export, import and search the caller's sessions."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response

from promptline.core.errors import InvalidInputError, NotFoundError
from promptline.gateway.deps import CallerDep, gateway, needs, source_of
from promptline.gateway.pagination import MAX_LIMIT, Cursor, Limit, Page, page_of
from promptline.gateway.schemas import (
    SearchHitOut,
    SessionCreate,
    SessionImport,
    SessionOut,
    SessionSandbox,
    SessionWithHistory,
    error_responses,
)
from promptline.gateway.service import (
    check_agent,
    check_sandbox_choice,
    delete_session,
    record_sandbox_choice,
    session_json,
    visible_session,
)
from promptline.sessions.export import SessionDocument

router = APIRouter(
    prefix="/v1/sessions",
    tags=["sessions"],
    responses=error_responses(401, 403, 404, 409, 422, 429),
)

MAX_HISTORY = 1_000_000
SessionId = Annotated[str, Path(description="The session's id.")]


@router.post(
    "",
    dependencies=[needs("sessions:write")],
    status_code=201,
    summary="Create a session",
    response_model=SessionOut,
)
async def create_session(body: SessionCreate, request: Request, caller: CallerDep) -> Any:
    """A new session owned by the caller (its user, in its tenant). Giving it a ``sandbox``
    needs the scope ``sessions:sandbox`` (403 otherwise)."""
    app = gateway(request).app
    check_sandbox_choice(caller, body.sandbox)
    metadata = dict(body.metadata or {})
    agent = check_agent(app, body.agent)
    if agent is not None:
        metadata["agent"] = agent
    session = await app.sessions.create(
        caller.principal,
        channel=body.channel,
        context=body.context,
        metadata=metadata,
        ttl=None if body.ttl_secs is None else timedelta(seconds=body.ttl_secs),
        sandbox=body.sandbox,
    )
    if body.sandbox is not None:
        await record_sandbox_choice(app, caller, session, source_of(request))
    return session_json(session)


@router.get(
    "",
    dependencies=[needs("sessions:read")],
    summary="List sessions",
    response_model=Page[SessionOut],
)
async def list_sessions(
    request: Request,
    caller: CallerDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    user_id: Annotated[
        str | None,
        Query(max_length=255, description="Another user's sessions (an admin or operator only)."),
    ] = None,
    channel: Annotated[str | None, Query(max_length=64)] = None,
    status: Literal["active", "expired"] | None = None,
) -> Any:
    """The caller's sessions (an admin or operator: its tenant's), newest first, without their
    histories. Deleted sessions are not listed. The cursor is the id of a session."""
    app = gateway(request).app
    fetch = min(limit + 1, MAX_LIMIT)
    try:
        found = await app.sessions.list(
            caller.principal,
            user_id=user_id,
            channel=channel,
            status=status,
            limit=fetch,
            before=cursor,
        )
    except NotFoundError:
        raise InvalidInputError(
            f"cursor {cursor!r} is not one this list gave (or its session is gone)",
            hint="pass the next_cursor of the previous page, or leave cursor out",
            field="cursor",
        ) from None
    page = page_of([session_json(s) for s in found], limit, lambda s: str(s["id"]))
    if fetch == limit and len(found) == limit:  # a full page of the largest size
        page["next_cursor"] = found[-1].id
    return page


@router.get(
    "/search",
    dependencies=[needs("sessions:read")],
    summary="Search messages",
    response_model=Page[SearchHitOut],
)
async def search_sessions(
    request: Request,
    caller: CallerDep,
    q: Annotated[str, Query(min_length=1, max_length=1000, description="The words to find.")],
    session_id: Annotated[str | None, Query(max_length=255)] = None,
    limit: Limit = 20,
) -> Any:
    """Messages of the caller's sessions that hold every word of ``q`` (any order, any
    case), best match first. Not paged: ``next_cursor`` is always null."""
    app = gateway(request).app
    hits = await app.sessions.search(caller.principal, q, session_id=session_id, limit=limit)
    items = [
        {
            "session_id": hit.session_id,
            "idx": hit.idx,
            "message": hit.message.model_dump(mode="json"),
            "snippet": hit.snippet,
            "rank": hit.rank,
        }
        for hit in hits
    ]
    return {"items": items, "next_cursor": None}


@router.post(
    "/import",
    dependencies=[needs("sessions:write")],
    status_code=201,
    summary="Import an exported session",
    response_model=SessionOut,
)
async def import_session(body: SessionImport, request: Request, caller: CallerDep) -> Any:
    """Store an export document as a session of the caller's tenant (a user may import only
    its own sessions; an admin or operator any of its tenant's). 409 if the id is in use: import
    with ``as_new_id``."""
    app = gateway(request).app
    session = await app.sessions.import_(body.document, caller.principal, as_new_id=body.as_new_id)
    return session_json(session)


@router.get(
    "/{session_id}",
    dependencies=[needs("sessions:read")],
    summary="Read a session",
    response_model=SessionWithHistory,
)
async def get_session(
    session_id: SessionId,
    request: Request,
    caller: CallerDep,
    history_limit: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_HISTORY,
            description="Only the latest this many messages (default: the whole history).",
        ),
    ] = None,
) -> Any:
    """The session and its history; 404 for a session the caller may not see."""
    app = gateway(request).app
    session = await visible_session(app, caller, session_id, history_limit=history_limit)
    return session_json(session, history=True)


@router.delete(
    "/{session_id}",
    dependencies=[needs("sessions:write")],
    status_code=204,
    summary="Delete a session",
)
async def remove_session(session_id: SessionId, request: Request, caller: CallerDep) -> Response:
    """Delete the session: its runs in flight are cancelled, it disappears from every read,
    list and search, and it takes no more messages. The event log is append-only, so its
    events stay there (a ``session_expired`` event with reason ``deleted`` records it)."""
    await delete_session(gateway(request).app, caller, session_id)
    return Response(status_code=204)


@router.put(
    "/{session_id}/sandbox",
    dependencies=[needs("sessions:sandbox")],
    summary="Choose a session's sandbox",
    response_model=SessionOut,
)
async def set_session_sandbox(
    session_id: SessionId, body: SessionSandbox, request: Request, caller: CallerDep
) -> Any:
    """Give the session a sandbox of its own (recorded in its event log, so it holds after a
    restart, and on the audit trail); runs that start from now on use it. It only tightens:
    commands run in the strongest of it, the channel's (`security.sandbox_channels`) and the
    agent's sandbox. 409 for an expired session."""
    app = gateway(request).app
    session = await app.sessions.update(session_id, caller.principal, sandbox=body.sandbox)
    await record_sandbox_choice(app, caller, session, source_of(request))
    return session_json(session)


@router.get(
    "/{session_id}/export",
    dependencies=[needs("sessions:read")],
    summary="Export a session",
    response_model=SessionDocument,
)
async def export_session(session_id: SessionId, request: Request, caller: CallerDep) -> Any:
    """The session and its whole history as a ``promptline.session`` version 1 document,
    which ``POST /v1/sessions/import`` (here or elsewhere) reads back."""
    return await gateway(request).app.sessions.export(session_id, caller.principal)
