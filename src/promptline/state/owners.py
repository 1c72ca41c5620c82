"""Where a caller's state is kept, and whom a stored state address belongs to.

A tenant's shared values live in the ``global`` scope under ``tenants/<tenant>/<key>``, a
user's own in the ``local`` scope under the namespace ``<tenant>:<user>``, a session's in the
``session`` scope under the session id. The ids are escaped with
`promptline.core.keys.join_key`, so no two callers ever share an address (the tenant ``t1:x``
with the user ``y`` lives at ``t1%3Ax:y``, the tenant ``t1`` with the user ``x:y`` at
``t1:x%3Ay``); ids without ``%`` or the separator are kept as they are, so addresses written
before escaping was introduced are still found. `StateOwners` reads an address back into
its owner, for the envelopes of ``state_change`` events.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from promptline.core.errors import InvalidInputError, NotFoundError
from promptline.core.keys import join_key, key_part, split_key
from promptline.state.evented import Owner
from promptline.state.protocols import Scope
from promptline.state.rules import MAX_NAMESPACE_LENGTH

if TYPE_CHECKING:
    from promptline.sessions.manager import SessionManager

__all__ = ["TENANT_PREFIX", "StateOwners", "local_namespace", "tenant_key"]

TENANT_PREFIX = "tenants/"
"""The ``global`` keys of tenants: ``tenants/<tenant>/<key>``."""

SessionOwner = Callable[[str], Awaitable[Owner | None]]
"""``session_id -> Owner`` of the session (None: no such session)."""

_CACHED_SESSIONS = 10_000


def local_namespace(tenant_id: str, user_id: str) -> str:
    """The ``local`` namespace of a tenant's user: ``<tenant>:<user>``, each id escaped.

    Ids too long for a namespace together give ``~`` and the SHA-256 of that text instead:
    it holds no ``:``, so it never equals the namespace of another pair of ids.
    """
    namespace = join_key(tenant_id, user_id)
    if len(namespace) <= MAX_NAMESPACE_LENGTH:
        return namespace
    return "~" + hashlib.sha256(namespace.encode("utf-8", "surrogatepass")).hexdigest()


def tenant_key(tenant_id: str, key: str) -> str:
    """The ``global`` key of a tenant's ``key``: ``tenants/<tenant>/<key>``, the tenant
    escaped (``key`` may hold ``/``: everything after the tenant is the key)."""
    return f"{TENANT_PREFIX}{key_part(tenant_id, '/')}/{key}"


def owner_of_address(scope: Scope, namespace: str, key: str) -> Owner | None:
    """The owner the layout above gives an address: the tenant and user of a ``local``
    namespace, the tenant of a tenant's ``global`` key; None for anything else (a run's
    local namespace, an installation-wide key)."""
    try:
        if scope == "local":
            parts = split_key(namespace)
            return Owner(parts[0], parts[1]) if len(parts) == 2 else None
        if scope == "global" and key.startswith(TENANT_PREFIX):
            tenant, sep, _ = key[len(TENANT_PREFIX) :].partition("/")
            return Owner(split_key(tenant, "/")[0], None) if sep else None
    except ValueError:
        return None  # not made by join_key: not one of ours
    return None


class StateOwners:
    """An `OwnerLookup` for `EventedStateStore`: a session's state belongs to the session's
    tenant and user; ``local`` and ``global`` addresses to what their layout says.

    Session owners are remembered (a session never changes hands), so a busy session costs
    one lookup.
    """

    def __init__(self, session_owner: SessionOwner | None = None) -> None:
        self._session_owner = session_owner
        self._sessions: dict[str, Owner] = {}

    @classmethod
    def of_sessions(cls, sessions: SessionManager) -> StateOwners:
        """Owners whose sessions are looked up in ``sessions``."""
        from promptline.sessions.models import Principal

        # Only to read the owner of a session the state store already holds state of.
        reader = Principal(user_id="state-events", admin=True)

        async def session_owner(session_id: str) -> Owner | None:
            try:
                found = await sessions.get(session_id, reader, history_limit=0)
            except (NotFoundError, InvalidInputError):
                return None
            return Owner(found.tenant_id, found.user_id)

        return cls(session_owner)

    async def __call__(self, scope: Scope, namespace: str, key: str) -> Owner | None:
        """Whom the address belongs to; None when nobody is known."""
        if scope != "session":
            return owner_of_address(scope, namespace, key)
        if self._session_owner is None:
            return None
        owner = self._sessions.get(namespace)
        if owner is None:
            owner = await self._session_owner(namespace)
            if owner is not None:
                if len(self._sessions) >= _CACHED_SESSIONS:
                    del self._sessions[next(iter(self._sessions))]
                self._sessions[namespace] = owner
        return owner
