"""The caller's quotas (``quotas:``) and what its user and tenant have used of them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from promptline.gateway.deps import CallerDep, gateway, needs
from promptline.gateway.schemas import error_responses

router = APIRouter(prefix="/v1", tags=["quotas"], responses=error_responses(401, 429))


@router.get("/quotas", dependencies=[needs("sessions:read")], summary="Quotas and usage")
async def get_quotas(request: Request, caller: CallerDep) -> dict[str, Any]:
    """The quotas of the caller's user and of its tenant (null: unlimited), with what each
    has used of the tokens and dollars of today, the sessions and the storage (MiB), and
    ``counting``: ``shared`` when requests per minute and concurrent runs are counted for
    every gateway process on the database, ``per_process`` when each counts its own."""
    app = gateway(request).app
    return await app.quotas.usage(caller.tenant_id, caller.user_id, app.sessions.count_active)
