"""Runs: list and read them (records folded from the event log), and cancel, pause or
resume the ones in flight."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from promptline.core.errors import NotFoundError
from promptline.core.events import RunStartedEvent
from promptline.events.protocols import EventFilter
from promptline.gateway.deps import CallerDep, gateway, needs
from promptline.gateway.pagination import Cursor, Limit, Page, page_of, position_cursor
from promptline.gateway.schemas import RunControlOut, RunOut, RunStatus, error_responses
from promptline.gateway.service import (
    control_run,
    may_see_session,
    run_json,
    visible_session,
)
from promptline.runtime.records import RUN_TYPES, fold_run
from promptline.security.auth import Caller

if TYPE_CHECKING:
    from promptline.app import App

router = APIRouter(
    prefix="/v1/runs", tags=["runs"], responses=error_responses(401, 404, 409, 422, 429)
)

RECORD_TYPES = frozenset(
    {
        *RUN_TYPES,
        "message_received",
        "llm_result",
        "tool_command",
        "permission_request",
        "permission_granted",
        "permission_denied",
    }
)
"""The events a run record is folded from (its deltas and lifecycle moves are not needed;
``message_received`` gives a queued run its input)."""

RunId = Annotated[str, Path(description="The run's id.")]


@router.get("", dependencies=[needs("runs:read")], summary="List runs", response_model=Page[RunOut])
async def list_runs(
    request: Request,
    caller: CallerDep,
    session_id: Annotated[str | None, Query(max_length=255)] = None,
    status: RunStatus | None = None,
    active: Annotated[
        bool, Query(description="Only runs in flight (or queued) in this process.")
    ] = False,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Any:
    """The runs of the caller's sessions (an admin or operator: its tenant's), newest first.

    With ``active=true`` only the runs this process has in flight or queued (the cursor is
    then a run id); otherwise every run the log holds (the cursor is a log position)."""
    app = gateway(request).app
    if session_id is not None:
        await visible_session(app, caller, session_id)
    if active:
        return await _active_runs(app, caller, session_id, status, limit, cursor)
    return await _logged_runs(app, caller, session_id, status, limit, position_cursor(cursor))


@router.get(
    "/{run_id}", dependencies=[needs("runs:read")], summary="Read a run", response_model=RunOut
)
async def get_run(run_id: RunId, request: Request, caller: CallerDep) -> Any:
    """The run's record; 404 for a run the caller may not see."""
    return await run_json(gateway(request).app, caller, run_id)


@router.post(
    "/{run_id}/cancel",
    dependencies=[needs("runs:write")],
    summary="Cancel a run",
    response_model=RunControlOut,
)
async def cancel_run(run_id: RunId, request: Request, caller: CallerDep) -> Any:
    """End the run now, tool calls included; answers how it ended (``cancelling`` if it
    has not within a few seconds). 409 for a run that is not in flight."""
    return await control_run(gateway(request).app, caller, run_id, "cancel")


@router.post(
    "/{run_id}/pause",
    dependencies=[needs("runs:write")],
    summary="Pause a run",
    response_model=RunControlOut,
)
async def pause_run(run_id: RunId, request: Request, caller: CallerDep) -> Any:
    """Hold the run at its next safe point (before a model call or a tool turn) until it is
    resumed. 409 for a run that is not in flight."""
    return await control_run(gateway(request).app, caller, run_id, "pause")


@router.post(
    "/{run_id}/resume",
    dependencies=[needs("runs:write")],
    summary="Resume a paused run",
    response_model=RunControlOut,
)
async def resume_run(run_id: RunId, request: Request, caller: CallerDep) -> Any:
    """Let a paused run go on. 409 for a run that is not in flight."""
    return await control_run(gateway(request).app, caller, run_id, "resume")


async def _active_runs(
    app: App,
    caller: Caller,
    session_id: str | None,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> dict[str, object]:
    records = []
    for run in app.runtime.active:
        if session_id is not None and (run.session is None or run.session.id != session_id):
            continue
        if cursor is not None and run.id >= cursor:
            continue
        try:
            record = await run_json(app, caller, run.id)
        except NotFoundError:
            continue
        if status is None or record["status"] == status:
            records.append(record)
    records.sort(key=lambda r: str(r["run_id"]), reverse=True)  # ids sort by creation
    return page_of(records, limit, lambda r: str(r["run_id"]))


async def _logged_runs(
    app: App,
    caller: Caller,
    session_id: str | None,
    status: str | None,
    limit: int,
    position: int,
) -> dict[str, object]:
    # A run is listed at its run_queued; a run_started is a run's first event only in a log
    # written before messages were queued (it then names no input_id).
    starts = EventFilter(
        types=frozenset({"run_queued", "run_started"}),
        session_id=session_id,
        tenant_id=caller.tenant_id,
        user_id=None if caller.tenant_wide else caller.user_id,
    )
    batch = min(max(2 * limit, 50), 500)
    sessions: dict[str, bool] = {}
    found: list[tuple[int, dict[str, Any]]] = []
    while len(found) <= limit:
        page = await app.events.read_all(
            starts, from_position=position, limit=batch, descending=True
        )
        for started in page:
            position = started.position
            run_id, sid = started.run_id, started.session_id
            if run_id is None:
                continue
            if isinstance(started, RunStartedEvent) and started.data.input_id is not None:
                continue
            if sid is not None:
                if sid not in sessions:
                    sessions[sid] = await may_see_session(app, caller, sid)
                if not sessions[sid]:
                    continue  # a deleted session's runs go with it
            events = await app.events.read_all(EventFilter(run_id=run_id, types=RECORD_TYPES))
            record = fold_run(run_id, events)
            if status is None or record.status == status:
                found.append((started.position, record.to_dict()))
                if len(found) > limit:
                    break
        if len(page) < batch:
            break
    more = len(found) > limit
    return {
        "items": [record for _, record in found[:limit]],
        "next_cursor": str(found[limit - 1][0]) if more else None,
    }
