"""The event log: query the events of the caller's sessions and runs, and follow one
session's stream live (Server-Sent Events)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request

from promptline.core.errors import InvalidInputError
from promptline.core.events import EVENT_CLASSES, Event, SessionExpiredEvent
from promptline.events.content import expand_prompts
from promptline.events.protocols import EventFilter
from promptline.gateway.deps import CallerDep, gateway, needs
from promptline.gateway.pagination import Cursor, Limit, Page, page_of, position_cursor
from promptline.gateway.schemas import EventOut, error_responses
from promptline.gateway.service import event_json, may_see_session, visible_run, visible_session
from promptline.gateway.sse import EventStreamResponse, follow, resume_seq, sse_frames
from promptline.sessions.projection import DELETED_REASON

router = APIRouter(prefix="/v1", tags=["events"], responses=error_responses(401, 404, 422, 429))

KNOWN_TYPES = tuple(sorted(EVENT_CLASSES))
"""The event types ``types`` may name: those this version knows."""
MAX_SEQ = 2**62


@router.get(
    "/events",
    dependencies=[needs("events:read")],
    summary="Query events",
    response_model=Page[EventOut],
)
async def query_events(
    request: Request,
    caller: CallerDep,
    session_id: Annotated[str | None, Query(max_length=255)] = None,
    run_id: Annotated[str | None, Query(max_length=255)] = None,
    types: Annotated[
        str | None,
        Query(
            max_length=2000,
            description="Event types, comma-separated (e.g. `run_started,run_completed`); "
            f"each one of: {', '.join(f'`{t}`' for t in KNOWN_TYPES)}.",
        ),
    ] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
    expand: Annotated[
        bool,
        Query(
            description="Give each `llm_command` with its whole prompt (`messages` and "
            "`tools`) instead of the compact form the log keeps (see docs/events.md)."
        ),
    ] = False,
) -> Any:
    """Events of the caller's sessions and runs (an admin or operator: its tenant's), oldest
    first. The cursor is a position in the log: a page holds the events after it."""
    app = gateway(request).app
    position = position_cursor(cursor)
    kinds = _types(types)
    scoped = session_id is not None or run_id is not None
    if session_id is not None:
        await visible_session(app, caller, session_id)
    if run_id is not None:
        await visible_run(app, caller, run_id)
    wanted = EventFilter(
        types=kinds,
        session_id=session_id,
        run_id=run_id,
        # A session or run the caller may see shows all its events; otherwise the caller's
        # tenant (and, for a user, the user) bounds what is read.
        tenant_id=None if scoped else caller.tenant_id,
        user_id=None if scoped or caller.tenant_wide else caller.user_id,
    )
    sessions: dict[str, bool] = {}
    found: list[Event] = []
    while len(found) <= limit:
        page = await app.events.read_all(wanted, from_position=position, limit=limit + 1)
        for event in page:
            position = event.position
            sid = event.session_id
            if not scoped and sid is not None:
                if sid not in sessions:
                    sessions[sid] = await may_see_session(app, caller, sid)
                if not sessions[sid]:
                    continue  # a deleted session's events go with it
            found.append(event)
            if len(found) > limit:
                break
        if len(page) <= limit:
            break
    if expand:
        # From the command's own stream and tenant: what the caller may see already.
        found = await expand_prompts(app.events, found)
    return page_of([event_json(e) for e in found], limit, lambda e: str(e["position"]))


@router.get(
    "/sessions/{session_id}/events",
    dependencies=[needs("events:read")],
    summary="Follow a session's events (SSE)",
    response_class=EventStreamResponse,
    status_code=200,
    responses={
        200: {
            "description": "Server-Sent Events: each frame `id: <seq>`, `event: <type>`, "
            "`data: <event JSON>`; a comment (`: ping`) while idle.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        # Errors are JSON, not events: name their media type (not the route's).
        **error_responses(401, 404, 422, 429, media_type="application/json"),
    },
)
async def tail_session(
    request: Request,
    caller: CallerDep,
    session_id: Annotated[str, Path(description="The session's id.")],
    from_seq: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_SEQ,
            description="Start after this seq (0: the whole stream); default: only new events.",
        ),
    ] = None,
    last_event_id: Annotated[
        str | None,
        Header(description="Sent by a reconnecting EventSource; wins over from_seq."),
    ] = None,
) -> EventStreamResponse:
    """The session's stream: the stored events after ``from_seq`` (or ``Last-Event-ID``),
    then every new one as it is written, in seq order, with no gap and no duplicate, until
    the client leaves (or the session is deleted)."""
    app = gateway(request).app
    await visible_session(app, caller, session_id)
    start = resume_seq(from_seq, last_event_id)
    if start is not None and start > MAX_SEQ:
        raise InvalidInputError("Last-Event-ID is too large", field="Last-Event-ID")
    events = follow(app.bus, session_id, from_seq=start, until=_deleted)
    return EventStreamResponse(sse_frames(events), stopping=gateway(request).stopping)


def _deleted(event: Event) -> bool:
    return isinstance(event, SessionExpiredEvent) and event.data.reason == DELETED_REASON


def _types(types: str | None) -> frozenset[str] | None:
    if types is None:
        return None
    names = frozenset(t.strip() for t in types.split(",") if t.strip())
    if not names:
        raise InvalidInputError(
            f"types must name event types separated by commas, got {types!r}",
            hint="e.g. types=run_started,run_completed, or leave types out for every type",
            field="types",
        )
    # Only the types this version knows: a misspelt one would match nothing and look like
    # an empty log. Events of newer types are still in the log, read without this filter.
    unknown = sorted(names - EVENT_CLASSES.keys())
    if unknown:
        raise InvalidInputError(
            f"unknown event type(s) in types: {', '.join(map(repr, unknown))}",
            hint=f"the event types are: {', '.join(KNOWN_TYPES)} (see docs/events.md)",
            field="types",
            unknown=unknown,
            known=list(KNOWN_TYPES),
        )
    return names
