"""A `StateStore` wrapper that publishes every successful change as a ``state_change`` event."""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any, Literal

from promptline.core.clock import Clock, SystemClock
from promptline.core.events import GLOBAL_STREAM, StateChange, StateChangeEvent
from promptline.events.protocols import EventBus
from promptline.state.protocols import Scope, StateEntry, StateStore

Redaction = bool | Callable[[Scope, str], bool]
"""``True`` hides every value, a callable ``(scope, key) -> bool`` picks which."""


class EventedStateStore:
    """Wraps any backend; after each successful `set` or `delete` publishes a `StateChange`.

    Session-scope changes go to the session's stream (the namespace is the session id),
    all others to ``global``. A redacted key's events carry ``value=None, redacted=True``. A
    delete's event has ``version=0``: the version a key has once it no longer exists, as
    in ``expected_version=0``. Nothing is published when the write does not happen (a
    failed compare-and-set, deleting an absent key). The event follows the write: if
    publishing fails the write stands and the bus's error is raised. Concurrent writers
    of one key may publish out of version order; ``version`` orders their events.
    """

    def __init__(
        self,
        inner: StateStore,
        bus: EventBus,
        *,
        redact: Redaction = False,
        clock: Clock = SystemClock(),
    ) -> None:
        """``clock`` stamps delete events; set events carry the entry's ``updated_at``."""
        self._inner = inner
        self._bus = bus
        self._redact = redact
        self._clock = clock

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
        entry = await self._inner.set(
            scope, key, value, namespace=namespace, ttl=ttl, expected_version=expected_version
        )
        await self._publish(scope, namespace, key, "set", entry.version, entry.value, entry)
        return entry

    async def delete(
        self, scope: Scope, key: str, *, namespace: str = "", expected_version: int | None = None
    ) -> bool:
        """Delete through the wrapped store; publish ``op="delete"`` if the key existed."""
        existed = await self._inner.delete(
            scope, key, namespace=namespace, expected_version=expected_version
        )
        if existed:
            await self._publish(scope, namespace, key, "delete", 0, None, None)
        return existed

    async def list(
        self, scope: Scope, *, namespace: str = "", prefix: str = "", limit: int | None = None
    ) -> builtins.list[StateEntry]:
        """As the wrapped store's `list`."""
        return await self._inner.list(scope, namespace=namespace, prefix=prefix, limit=limit)

    async def close(self) -> None:
        """Close the wrapped store (the bus belongs to whoever made it)."""
        await self._inner.close()

    def _redacted(self, scope: Scope, key: str) -> bool:
        if callable(self._redact):
            return bool(self._redact(scope, key))
        return bool(self._redact)

    async def _publish(
        self,
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
