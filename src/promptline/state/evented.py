"""A `StateStore` wrapper that publishes every successful change as a ``state_change`` event,
with the tenant and user the change belongs to in the event's envelope."""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

from promptline.core.clock import Clock, SystemClock
from promptline.core.events import GLOBAL_STREAM, StateChange, StateChangeEvent
from promptline.events.protocols import EventBus
from promptline.state.protocols import Scope, StateEntry, StateStore

__all__ = ["EventedStateStore", "Owner", "OwnerLookup", "Redaction", "acting_for"]

Redaction = bool | Callable[[Scope, str], bool]
"""``True`` hides every value, a callable ``(scope, key) -> bool`` picks which."""


@dataclass(frozen=True, slots=True)
class Owner:
    """Whom a state change belongs to: the ``tenant_id`` and ``user_id`` of its event."""

    tenant_id: str | None = None
    user_id: str | None = None


OwnerLookup = Callable[[Scope, str, str], Awaitable[Owner | None]]
"""``(scope, namespace, key) -> Owner``: whom a stored address belongs to, None if unknown
(see `promptline.state.owners.StateOwners`)."""

_ACTING: ContextVar[Owner | None] = ContextVar("promptline_state_acting", default=None)


@contextlib.contextmanager
def acting_for(tenant_id: str | None, user_id: str | None) -> Iterator[Owner]:
    """State changes made in the ``with`` block (in this task) are made by this tenant's user.

    An `EventedStateStore` puts them in the envelope of a ``global`` change, and of any
    other change whose owner its lookup does not know.
    """
    owner = Owner(tenant_id, user_id)
    token = _ACTING.set(owner)
    try:
        yield owner
    finally:
        _ACTING.reset(token)


class EventedStateStore:
    """Wraps any backend; after each successful `set` or `delete` publishes a `StateChange`.

    Session-scope changes go to the session's stream (the namespace is the session id),
    all others to ``global``. A redacted key's events carry ``value=None, redacted=True``.
    A delete's event has ``version=0``: the version a key has once it no longer exists, as
    in ``expected_version=0``. Nothing is published when the write does not happen (a
    failed compare-and-set, deleting an absent key). The event follows the write: if
    publishing fails the write stands and the bus's error is raised. Concurrent writers
    of one key may publish out of version order; ``version`` orders their events.

    The event's ``tenant_id`` and ``user_id`` say whom the change belongs to, so that reads
    of the log bounded to a tenant or a user find it. For the ``session`` and ``local``
    scopes that is the owner ``owners`` finds for the address (the session's, the
    namespace's), else the caller named by `acting_for`; for ``global`` that caller, else
    what ``owners`` makes of the key. The owner is looked up before the write, so a lookup
    that fails refuses the write instead of leaving it unrecorded.
    """

    def __init__(
        self,
        inner: StateStore,
        bus: EventBus,
        *,
        redact: Redaction = False,
        clock: Clock = SystemClock(),
        owners: OwnerLookup | None = None,
    ) -> None:
        """``clock`` stamps delete events; set events carry the entry's ``updated_at``.
        ``owners`` finds whom an address belongs to (None: only `acting_for` says)."""
        self._inner = inner
        self._bus = bus
        self._redact = redact
        self._clock = clock
        self._owners = owners

    @property
    def inner(self) -> StateStore:
        """The wrapped backend."""
        return self._inner

    async def get(self, scope: Scope, key: str, *, namespace: str = "") -> StateEntry | None:
        """As the wrapped store's `get`."""
        return await self._inner.get(scope, key, namespace=namespace)

    async def set(
        self,
        scope: Scope,
        key: str,
        value: Any,
        *,
        namespace: str = "",
        ttl: float | None = None,
        expected_version: int | None = None,
    ) -> StateEntry:
        """Write through the wrapped store, then publish ``op="set"``."""
        owner = await self._owner(scope, namespace, key)
        entry = await self._inner.set(
            scope, key, value, namespace=namespace, ttl=ttl, expected_version=expected_version
        )
        await self._publish(owner, scope, namespace, key, "set", entry.version, entry.value, entry)
        return entry

    async def delete(
        self, scope: Scope, key: str, *, namespace: str = "", expected_version: int | None = None
    ) -> bool:
        """Delete through the wrapped store; publish ``op="delete"`` if the key existed."""
        owner = await self._owner(scope, namespace, key)
        existed = await self._inner.delete(
            scope, key, namespace=namespace, expected_version=expected_version
        )
        if existed:
            await self._publish(owner, scope, namespace, key, "delete", 0, None, None)
        return existed

    async def list(
        self, scope: Scope, *, namespace: str = "", prefix: str = "", limit: int | None = None
    ) -> builtins.list[StateEntry]:
        """As the wrapped store's `list`."""
        return await self._inner.list(scope, namespace=namespace, prefix=prefix, limit=limit)

    async def close(self) -> None:
        """Close the wrapped store (the bus belongs to whoever made it)."""
        await self._inner.close()

    async def _owner(self, scope: Scope, namespace: str, key: str) -> Owner | None:
        acting = _ACTING.get()
        if scope == "global" and acting is not None:
            return acting
        found = None if self._owners is None else await self._owners(scope, namespace, key)
        return found or acting

    def _redacted(self, scope: Scope, key: str) -> bool:
        if callable(self._redact):
            return bool(self._redact(scope, key))
        return bool(self._redact)

    async def _publish(
        self,
        owner: Owner | None,
        scope: Scope,
        namespace: str,
        key: str,
        op: Literal["set", "delete"],
        version: int,
        value: Any,
        entry: StateEntry | None,
    ) -> None:
        redacted = self._redacted(scope, key)
        session_id = namespace if scope == "session" else None
        event = StateChangeEvent(
            stream=session_id or GLOBAL_STREAM,
            session_id=session_id,
            tenant_id=owner.tenant_id if owner is not None else None,
            user_id=owner.user_id if owner is not None else None,
            ts=entry.updated_at if entry is not None else self._clock.now(),
            data=StateChange(
                scope=scope,
                namespace=namespace,
                key=key,
                op=op,
                version=version,
                value=None if redacted else value,
                redacted=redacted,
            ),
        )
        await self._bus.publish(event)
