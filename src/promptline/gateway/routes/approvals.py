"""Approvals: the tool calls waiting for a person, and the answers to them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from promptline.gateway.deps import CallerDep, gateway, needs, source_of
from promptline.gateway.pagination import Page
from promptline.gateway.schemas import (
    ApprovalAnswer,
    ApprovalOut,
    ApprovalOutcomeOut,
    error_responses,
)
from promptline.gateway.service import (
    approval_json,
    approval_outcome_json,
    respond_approval,
    visible_approvals,
)

router = APIRouter(
    prefix="/v1/approvals",
    tags=["approvals"],
    responses=error_responses(401, 404, 409, 422, 429),
)


@router.get(
    "",
    dependencies=[needs("approvals:read")],
    summary="List pending approvals",
    response_model=Page[ApprovalOut],
)
async def list_approvals(
    request: Request,
    caller: CallerDep,
    session_id: Annotated[str | None, Query(max_length=255)] = None,
) -> Any:
    """Requests waiting for an answer in the caller's sessions (an admin or operator: its
    tenant's), oldest first; of one session with ``session_id``. Not paged."""
    found = await visible_approvals(gateway(request).app, caller, session_id)
    return {"items": [approval_json(r) for r in found], "next_cursor": None}


@router.post(
    "/{request_id}",
    dependencies=[needs("approvals:write")],
    summary="Answer a permission request",
    response_model=ApprovalOutcomeOut,
)
async def answer_approval(
    request_id: Annotated[str, Path(description="The request's id.")],
    body: ApprovalAnswer,
    request: Request,
    caller: CallerDep,
) -> Any:
    """Approve or refuse; the run waiting on it goes on. Only someone who may see the
    session may answer (404 for anyone else: the request stays pending); 409 for a request
    already answered or past its time. A question (an MCP server's elicitation) is answered
    with `content` (422 when it does not match the question's schema)."""
    outcome = await respond_approval(
        gateway(request).app,
        caller,
        request_id,
        approve=body.approve,
        scope=body.scope,
        reason=body.reason,
        content=body.content,
        source=source_of(request),
    )
    return approval_outcome_json(outcome)
