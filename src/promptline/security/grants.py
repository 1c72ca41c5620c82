"""Remembered grants: an approval given for the ``session`` or ``always``, so the same tool is
not asked about again.

They live in the `StateStore`: session grants in the ``session`` scope (namespace: the session
id, key ``permissions/grants/<tool>``), always grants in the ``global`` scope under
``permissions/always/<tenant>/<user>/<tool>``, each id escaped with
`promptline.core.keys.key_part` so that no id reaches into another's keys. Grants written
when ids were escaped with `urllib.parse.quote` (which escapes more characters, ``@`` for
one) are still found under that older key, and moved to the current one when re-granted.
The state store rather than a projection of
``permission_granted`` events because a grant must be revocable (deleting the key; the log has
no event that takes a grant back, while the evented state store records the deletion as a
``state_change``), because a lookup on the hot path is one key read instead of a scan of the
log, and because it behaves alike on every backend. The ``permission_granted`` event stays in
the log as the record of who granted what.

A grant can be bound to more than its tool: a ``binding`` (for ``shell_execute``, the digest
of the command's argv chain, folder and scripts) is kept under ``<tool>/<binding>`` and
only found by a lookup with the same binding; a lookup with a binding finds no other grant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args
from urllib.parse import quote

from promptline.core.clock import Clock, SystemClock
from promptline.core.errors import InvalidInputError
from promptline.core.keys import key_part
from promptline.security.approvals import ApprovalOutcome
from promptline.state.evented import acting_for
from promptline.state.protocols import Scope, StateEntry, StateStore

__all__ = ["REMEMBERED_SCOPES", "Grant", "GrantStore", "RememberedScope"]

RememberedScope = Literal["session", "always"]
REMEMBERED_SCOPES: tuple[RememberedScope, ...] = get_args(RememberedScope)

_SESSION_PREFIX = "permissions/grants/"
_ALWAYS_PREFIX = "permissions/always/"


@dataclass(frozen=True, slots=True)
class Grant:
    """Permission to run ``tool`` without asking: in one session, or for one user always."""

    scope: RememberedScope
    tool: str
    granted_at: datetime
    session_id: str | None = None
    user_id: str | None = None
    tenant_id: str | None = None
    decided_by: str | None = None
    request_id: str | None = None
    binding: str | None = None


class GrantStore:
    """Grants kept in a `StateStore`; `remember` is the broker's decision listener."""

    def __init__(self, state: StateStore, *, clock: Clock | None = None) -> None:
        self._state = state
        self._clock: Clock = clock or SystemClock()

    async def find(
        self,
        tool: str,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        tenant_id: str | None = None,
        binding: str | None = None,
    ) -> Grant | None:
        """The grant that lets ``tool`` run without asking: the session's, else the user's.
        With a ``binding``, only a grant given for that same binding."""
        if session_id is not None:
            for key in _keys(_session_key, tool, binding):
                entry = await self._state.get("session", key, namespace=session_id)
                if entry is not None:
                    return _grant_of(entry, "session")
        for key in _keys(_always_key, tenant_id, user_id, tool, binding):
            entry = await self._state.get("global", key)
            if entry is not None:
                return _grant_of(entry, "always")
        return None

    async def add(
        self,
        scope: RememberedScope,
        tool: str,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        tenant_id: str | None = None,
        decided_by: str | None = None,
        request_id: str | None = None,
        binding: str | None = None,
    ) -> Grant:
        """Remember a grant (replacing one for the same tool, binding and owner)."""
        grant = Grant(
            scope=scope,
            tool=tool,
            granted_at=self._clock.now(),
            session_id=session_id,
            user_id=user_id,
            tenant_id=tenant_id,
            decided_by=decided_by,
            request_id=request_id,
            binding=binding,
        )
        where, keys, namespace = _place(scope, tool, session_id, user_id, tenant_id, binding)
        with acting_for(tenant_id, user_id):
            await self._state.set(where, keys[0], _value_of(grant), namespace=namespace)
            for legacy in keys[1:]:
                await self._state.delete(where, legacy, namespace=namespace)
        return grant

    async def remember(self, outcome: ApprovalOutcome) -> Grant | None:
        """Remember an approval given for the ``session`` or ``always``; others are ignored."""
        if not outcome.approved or outcome.scope == "once":
            return None
        req = outcome.request
        return await self.add(
            outcome.scope,
            req.tool,
            session_id=req.session_id if outcome.scope == "session" else None,
            user_id=req.user_id,
            tenant_id=req.tenant_id,
            decided_by=outcome.decided_by,
            request_id=req.request_id,
            binding=req.binding,
        )

    async def revoke(
        self,
        scope: RememberedScope,
        tool: str,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        tenant_id: str | None = None,
        binding: str | None = None,
    ) -> bool:
        """Forget a grant (of ``binding``, for a bound one); True if there was one. The next
        call it covered asks again."""
        where, keys, namespace = _place(scope, tool, session_id, user_id, tenant_id, binding)
        existed = False
        with acting_for(tenant_id, user_id):
            for key in keys:
                existed = await self._state.delete(where, key, namespace=namespace) or existed
        return existed

    async def list_grants(
        self,
        scope: RememberedScope,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        tenant_id: str | None = None,
    ) -> list[Grant]:
        """A session's grants, or a user's always grants, sorted by tool (then binding)."""
        if scope == "session":
            where: Scope = "session"
            namespace = _session(session_id)
            prefixes = [_SESSION_PREFIX]
        elif scope == "always":
            where, namespace = "global", ""
            prefixes = _keys(_always_prefix, tenant_id, user_id)
        else:
            raise _bad_scope(scope)
        found: dict[tuple[str, str], Grant] = {}
        for prefix in prefixes:
            for entry in await self._state.list(where, namespace=namespace, prefix=prefix):
                grant = _grant_of(entry, scope)
                current = _place(scope, grant.tool, session_id, user_id, tenant_id, grant.binding)[
                    1
                ][0]
                # A grant kept under its older key too shows once, as kept under the current.
                which = (grant.tool, grant.binding or "")
                if which not in found or entry.key == current:
                    found[which] = grant
        return [found[k] for k in sorted(found)]


def _place(
    scope: str,
    tool: str,
    session_id: str | None,
    user_id: str | None,
    tenant_id: str | None,
    binding: str | None = None,
) -> tuple[Scope, list[str], str]:
    """Where a grant of ``scope`` for ``tool`` (and ``binding``) is kept: the state scope,
    its keys (the current one first, then an older form if it differs) and the namespace."""
    if scope == "session":
        return "session", _keys(_session_key, tool, binding), _session(session_id)
    if scope == "always":
        return "global", _keys(_always_key, tenant_id, user_id, tool, binding), ""
    raise _bad_scope(scope)


def _part(value: str | None, *, legacy: bool = False) -> str:
    # Escaped so that an id holding "/" cannot reach into another id's keys.
    if legacy:
        return quote(value or "", safe="")
    return key_part(value or "", "/")


def _keys(make: Callable[..., str], *ids: str | None) -> list[str]:
    """The key ``make`` builds of ``ids``, and then its older form if that differs."""
    current = make(*ids)
    older = make(*ids, legacy=True)
    return [current] if older == current else [current, older]


def _session_key(tool: str, binding: str | None, *, legacy: bool = False) -> str:
    return _SESSION_PREFIX + _part(tool, legacy=legacy) + _bound(binding, legacy=legacy)


def _always_prefix(tenant_id: str | None, user_id: str | None, *, legacy: bool = False) -> str:
    return f"{_ALWAYS_PREFIX}{_part(tenant_id, legacy=legacy)}/{_part(user_id, legacy=legacy)}/"


def _always_key(
    tenant_id: str | None,
    user_id: str | None,
    tool: str,
    binding: str | None,
    *,
    legacy: bool = False,
) -> str:
    return (
        _always_prefix(tenant_id, user_id, legacy=legacy)
        + _part(tool, legacy=legacy)
        + _bound(binding, legacy=legacy)
    )


def _bound(binding: str | None, *, legacy: bool = False) -> str:
    """The key's tail for a grant bound to ``binding`` (none for a grant of the tool)."""
    return "" if binding is None else "/" + _part(binding, legacy=legacy)


def _session(session_id: str | None) -> str:
    if not session_id:
        raise InvalidInputError(
            "a session grant needs the session it is for", hint="pass session_id"
        )
    return session_id


def _bad_scope(scope: str) -> InvalidInputError:
    return InvalidInputError(
        f"grants are remembered for 'session' or 'always', not {scope!r}",
        hint="an approval for one call ('once') is not remembered",
    )


def _value_of(grant: Grant) -> dict[str, Any]:
    return {
        "tool": grant.tool,
        "granted_at": grant.granted_at.isoformat(),
        "session_id": grant.session_id,
        "user_id": grant.user_id,
        "tenant_id": grant.tenant_id,
        "decided_by": grant.decided_by,
        "request_id": grant.request_id,
        "binding": grant.binding,
    }


def _grant_of(entry: StateEntry, scope: RememberedScope) -> Grant:
    value: dict[str, Any] = entry.value if isinstance(entry.value, dict) else {}
    granted_at = value.get("granted_at")
    return Grant(
        scope=scope,
        tool=str(value.get("tool", "")),
        granted_at=(
            datetime.fromisoformat(granted_at) if isinstance(granted_at, str) else entry.updated_at
        ),
        session_id=value.get("session_id"),
        user_id=value.get("user_id"),
        tenant_id=value.get("tenant_id"),
        decided_by=value.get("decided_by"),
        request_id=value.get("request_id"),
        binding=value.get("binding"),
    )
