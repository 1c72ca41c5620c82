"""State: values kept across runs, per scope. ``global`` is the caller's tenant's shared
state, ``session`` a session's (which the caller must see), ``local`` the caller's own."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response

from promptline.core.errors import NotFoundError
from promptline.gateway.deps import CallerDep, gateway, needs
from promptline.gateway.schemas import StateEntryOut, StateWrite, error_responses
from promptline.gateway.state_access import entry_json, set_state, state_address
from promptline.state.evented import acting_for

router = APIRouter(
    prefix="/v1/state", tags=["state"], responses=error_responses(401, 404, 409, 422, 429)
)

ScopePath = Annotated[
    Literal["global", "session", "local"],
    Path(description="global: the tenant's; session: a session's; local: the caller's own."),
]
KeyPath = Annotated[str, Path(description="The key (may hold `/`).", max_length=400)]
SessionQuery = Annotated[
    str | None, Query(max_length=255, description="The session, for the session scope.")
]


@router.get(
    "/{scope}/{key:path}",
    dependencies=[needs("state:read")],
    summary="Read a value",
    response_model=StateEntryOut,
)
async def get_state(
    scope: ScopePath,
    key: KeyPath,
    request: Request,
    caller: CallerDep,
    session_id: SessionQuery = None,
) -> Any:
    """The value and its version; 404 when there is none."""
    app = gateway(request).app
    where = await state_address(app, caller, scope, key, session_id)
    entry = await app.state.get(scope, where.stored_key, namespace=where.namespace)
    if entry is None:
        raise _missing(scope, key)
    return entry_json(where, entry)


@router.put(
    "/{scope}/{key:path}",
    dependencies=[needs("state:write")],
    summary="Write a value",
    response_model=StateEntryOut,
)
async def put_state(
    scope: ScopePath,
    key: KeyPath,
    body: StateWrite,
    request: Request,
    caller: CallerDep,
    session_id: SessionQuery = None,
) -> Any:
    """Store the value (any JSON); the version grows by one. With ``expected_version`` the
    write happens only if the stored version is that (0: the key must not exist), else 409.
    Every write is recorded as a ``state_change`` event; past the storage quota of the
    caller's user or tenant it is refused (429)."""
    app = gateway(request).app
    where = await state_address(app, caller, scope, key, session_id)
    entry = await set_state(app, caller, where, body.value, body.expected_version)
    return entry_json(where, entry)


@router.delete(
    "/{scope}/{key:path}",
    dependencies=[needs("state:write")],
    status_code=204,
    summary="Delete a value",
)
async def delete_state(
    scope: ScopePath,
    key: KeyPath,
    request: Request,
    caller: CallerDep,
    session_id: SessionQuery = None,
    expected_version: Annotated[
        int | None, Query(ge=0, le=2**62, description="Delete only at this version (else 409).")
    ] = None,
) -> Response:
    """Remove the value; 404 when there is none."""
    app = gateway(request).app
    where = await state_address(app, caller, scope, key, session_id)
    with acting_for(caller.tenant_id, caller.user_id):
        existed = await app.state.delete(
            scope, where.stored_key, namespace=where.namespace, expected_version=expected_version
        )
    if not existed:
        raise _missing(scope, key)
    return Response(status_code=204)


def _missing(scope: str, key: str) -> NotFoundError:
    return NotFoundError(
        f"no {scope} state {key!r}", hint="write it first with PUT", scope=scope, key=key
    )
