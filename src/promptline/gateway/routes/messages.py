"""A message to a session starts the run that answers it: answered at once (202), when the
run ends (``?wait=true``), or as the run's events while it goes (``?stream=true``, SSE)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response

from promptline.core.errors import InvalidInputError
from promptline.core.events import Event
from promptline.gateway.deps import CallerDep, gateway, needs
from promptline.gateway.schemas import ErrorOut, MessageIn, MessageStarted, RunOut, error_responses
from promptline.gateway.service import (
    accepted_json,
    check_agent,
    shown_run,
    start_message,
    visible_session,
)
from promptline.gateway.sse import EventStreamResponse, follow, sse_frames
from promptline.runtime.ingress import MAX_IDEMPOTENCY_KEY
from promptline.runtime.records import RUN_ENDINGS

REPLAYED_HEADER = "Idempotent-Replayed"
"""Set (``true``) on the answer to a retry whose idempotency key was used before."""

router = APIRouter(
    prefix="/v1/sessions",
    tags=["messages"],
    responses=error_responses(401, 404, 409, 422, 429),
)

_STREAM_DOC = (
    "With `stream=true`: the run's events as Server-Sent Events, each frame `id: <seq>`, "
    "`event: <type>`, `data: <event JSON>`, ending after `run_completed`, `run_failed` or "
    "`run_cancelled`."
)


@router.post(
    "/{session_id}/messages",
    dependencies=[needs("runs:write")],
    status_code=202,
    summary="Send a message (starts a run)",
    response_model=None,
    responses={
        202: {
            "model": MessageStarted,
            "description": "The message and its run are in the log; the run is queued (it "
            "starts at once when `position` is 0).",
        },
        200: {
            "model": RunOut,
            "description": "With `wait=true`: the run's record once it has ended. " + _STREAM_DOC,
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        404: {"model": ErrorOut, "description": "No such session (or not the caller's)."},
        409: {
            "model": ErrorOut,
            "description": "The session is busy and `queue_mode` is `reject`, or expired.",
        },
        422: {
            "model": ErrorOut,
            "description": "Invalid input, or an `Idempotency-Key` used before for another "
            "message (`idempotency_key_reused`).",
        },
    },
)
async def post_message(
    body: MessageIn,
    request: Request,
    caller: CallerDep,
    session_id: Annotated[str, Path(description="The session's id.")],
    wait: Annotated[bool, Query(description="Answer when the run has ended.")] = False,
    stream: Annotated[bool, Query(description="Answer with the run's events (SSE).")] = False,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="A unique value per message (a UUID): a retry with the same key gets "
            "the first answer back and starts nothing new, even across restarts.",
            max_length=MAX_IDEMPOTENCY_KEY,
        ),
    ] = None,
) -> Response:
    """Add a user message to the session for the run that answers it. The answer comes once
    the message and its run are in the log: from then on nothing loses them, and after a
    crash the run goes on.

    A client that leaves a stream (or a wait) early does not stop the run: it goes on and
    all its events are stored (read them with `GET /v1/events?run_id=` or the session's
    event stream)."""
    if wait and stream:
        raise InvalidInputError(
            "wait and stream cannot both be true",
            hint="use wait=true for the run's record, or stream=true for its events",
            field="stream",
        )
    app = gateway(request).app
    session = await visible_session(app, caller, session_id)
    chosen = body.agent
    if chosen is None and isinstance(session.metadata.get("agent"), str):
        chosen = session.metadata["agent"]
    check_agent(app, chosen)
    accepted = await start_message(
        app,
        caller,
        session_id,
        body.content,
        agent=chosen,
        model=body.model,
        mode=body.mode,
        queue_mode=body.queue_mode,
        idempotency_key=idempotency_key,
        session=session,
    )
    headers = {REPLAYED_HEADER: "true"} if accepted.replayed else None
    run_id = accepted.answer_run_id
    if stream:

        def ended(event: Event) -> bool:
            return event.type in RUN_ENDINGS and event.run_id == run_id

        # From the message on: the stream misses none of the run's events, however fast it is
        # (and a retry sees them again from the start).
        events = follow(app.bus, session_id, from_seq=accepted.seq - 1, run_id=run_id, until=ended)
        return EventStreamResponse(
            sse_frames(events), stopping=gateway(request).stopping, headers=headers
        )
    if wait:
        # The record as the run ended, read once: shown if the caller may still see it.
        record: dict[str, Any] = (
            await shown_run(app, caller, await app.runtime.wait(run_id))
        ).to_dict()
        return Response(
            RunOut.model_validate(record).model_dump_json(),
            media_type="application/json",
            headers=headers,
        )
    started = MessageStarted.model_validate(accepted_json(accepted))
    return Response(
        started.model_dump_json(), status_code=202, media_type="application/json", headers=headers
    )
