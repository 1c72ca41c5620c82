"""State: values kept across runs, per scope. ``global`` is the caller's tenant's shared
state, ``session`` a session's (which the caller must see), ``local`` the caller's own."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response

from promptline.core.errors import InvalidInputError, NotFoundError
from promptline.gateway.deps import CallerDep, gateway
from promptline.gateway.schemas import StateEntryOut, StateWrite, error_responses
from promptline.gateway.service import visible_session
from promptline.security.auth import Caller
from promptline.state.protocols import Scope, StateEntry

if TYPE_CHECKING:
    from promptline.app import App

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


@router.get("/{scope}/{key:path}", summary="Read a value", response_model=StateEntryOut)
async def get_state(
    scope: ScopePath,
    key: KeyPath,
    request: Request,
    caller: CallerDep,
    session_id: SessionQuery = None,
) -> Any:
    """The value and its version; 404 when there is none."""
    app = gateway(request).app
    namespace, stored = await _address(app, caller, scope, key, session_id)
    entry = await app.state.get(scope, stored, namespace=namespace)
    if entry is None:
        raise _missing(scope, key)
    return _entry_json(entry, key, session_id)


@router.put("/{scope}/{key:path}", summary="Write a value", response_model=StateEntryOut)
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
    Every write is recorded as a ``state_change`` event."""
    app = gateway(request).app
    namespace, stored = await _address(app, caller, scope, key, session_id)
    entry = await app.state.set(
        scope, stored, body.value, namespace=namespace, expected_version=body.expected_version
    )
    return _entry_json(entry, key, session_id)


@router.delete("/{scope}/{key:path}", status_code=204, summary="Delete a value")
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
    namespace, stored = await _address(app, caller, scope, key, session_id)
    existed = await app.state.delete(
        scope, stored, namespace=namespace, expected_version=expected_version
    )
    if not existed:
        raise _missing(scope, key)
    return Response(status_code=204)


async def _address(
    app: App, caller: Caller, scope: Scope, key: str, session_id: str | None
) -> tuple[str, str]:
    """The store's namespace and key for the caller's ``scope``/``key``."""
    if scope == "session":
        if session_id is None:
            raise InvalidInputError(
                "the session scope needs session_id",
                hint="add ?session_id=<the session's id>",
                field="session_id",
            )
        await visible_session(app, caller, session_id)
        return session_id, key
    if session_id is not None:
        raise InvalidInputError(
            f"session_id is only for the session scope, not {scope!r}",
            hint="leave session_id out",
            field="session_id",
        )
    if scope == "global":
        return "", f"tenants/{caller.tenant_id}/{key}"
    return f"{caller.tenant_id}:{caller.user_id}", key


def _entry_json(entry: StateEntry, key: str, session_id: str | None) -> dict[str, Any]:
    return {
        "scope": entry.scope,
        "key": key,
        "session_id": session_id if entry.scope == "session" else None,
        "value": entry.value,
        "version": entry.version,
        "updated_at": entry.updated_at.isoformat(),
        "expires_at": entry.expires_at.isoformat() if entry.expires_at else None,
    }


def _missing(scope: str, key: str) -> NotFoundError:
    return NotFoundError(
        f"no {scope} state {key!r}", hint="write it first with PUT", scope=scope, key=key
    )
