"""Where a caller's state lives: ``global`` is its tenant's shared state, ``session`` a
session it may see, ``local`` its own; and the JSON form of an entry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from promptline.core.errors import InvalidInputError
from promptline.gateway.service import visible_session
from promptline.security.auth import Caller
from promptline.state.evented import acting_for
from promptline.state.owners import local_namespace, tenant_key
from promptline.state.protocols import Scope, StateEntry

if TYPE_CHECKING:
    from promptline.app import App

__all__ = ["StateAddress", "entry_json", "set_state", "state_address"]


@dataclass(frozen=True, slots=True)
class StateAddress:
    """A key as the caller names it, and where the state store keeps it."""

    scope: Scope
    key: str
    session_id: str | None
    namespace: str
    stored_key: str


async def state_address(
    app: App, caller: Caller, scope: Scope, key: str, session_id: str | None
) -> StateAddress:
    """Where ``key`` of ``scope`` is kept for ``caller``.

    ``global`` is stored in the store's global scope under ``tenants/<tenant>/<key>`` (a
    tenant never reaches another's, nor the installation's own keys); ``session`` needs a
    ``session_id`` the caller may see (`NotFoundError` otherwise); ``local`` lives in the
    namespace ``<tenant>:<user>``. The ids are escaped (see `promptline.state.owners`), so
    no two callers share an address whatever their ids hold.
    """
    if scope == "session":
        if session_id is None:
            raise InvalidInputError(
                "the session scope needs a session_id", hint="add session_id to the params"
            )
        await visible_session(app, caller, session_id)
        return StateAddress(scope, key, session_id, session_id, key)
    if session_id is not None:
        raise InvalidInputError(
            f"session_id belongs to the session scope, not {scope!r}",
            hint="leave session_id out, or use scope 'session'",
        )
    if scope == "global":
        return StateAddress(scope, key, None, "", tenant_key(caller.tenant_id, key))
    return StateAddress(scope, key, None, local_namespace(caller.tenant_id, caller.user_id), key)


async def set_state(
    app: App, caller: Caller, where: StateAddress, value: Any, expected_version: int | None
) -> StateEntry:
    """Write ``value`` at ``where`` for ``caller`` (only at ``expected_version``, when
    given), once the storage quotas of its user and tenant allow a write."""
    await app.quotas.admit_write(caller.tenant_id, caller.user_id)
    with acting_for(caller.tenant_id, caller.user_id):
        return await app.state.set(
            where.scope,
            where.stored_key,
            value,
            namespace=where.namespace,
            expected_version=expected_version,
        )


def entry_json(address: StateAddress, entry: StateEntry) -> dict[str, Any]:
    """A stored value as the API shows it (under the key the caller used)."""
    return {
        "scope": address.scope,
        "key": address.key,
        "session_id": address.session_id,
        "value": entry.value,
        "version": entry.version,
        "updated_at": entry.updated_at.isoformat(),
        "expires_at": entry.expires_at.isoformat() if entry.expires_at else None,
    }
