"""The `StateStore` contract every backend (file, SQLite, PostgreSQL, Redis) keeps.

Keys live in a scope and a namespace: ``global`` has the single namespace ``""``;
``session`` needs the session id as namespace; ``local`` takes any owner id (a run, an
agent) and is the only scope whose entries may have a time to live.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

Scope = Literal["global", "session", "local"]
SCOPES: tuple[Scope, ...] = ("global", "session", "local")


@dataclass(frozen=True, slots=True)
class StateEntry:
    """One stored value. ``version`` starts at 1 and grows by one on every write."""

    scope: Scope
    namespace: str
    key: str
    value: Any
    version: int
    updated_at: datetime
    expires_at: datetime | None = None


class StateStore(Protocol):
    """Versioned key/value store with compare-and-set, prefix listing and TTL on ``local``."""

    async def get(self, scope: Scope, key: str, *, namespace: str = "") -> StateEntry | None:
        """The live entry, or None (also when it has expired)."""
        ...

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
        """Write ``value`` (must be JSON-serialisable) and return the new entry.

        ``expected_version`` makes it a compare-and-set: the write happens only if the
        current version equals it (0: the key must not exist), else `ConflictError`.
        ``ttl`` (seconds) is allowed on the ``local`` scope only.
        """
        ...

    async def delete(
        self, scope: Scope, key: str, *, namespace: str = "", expected_version: int | None = None
    ) -> bool:
        """Remove the key; True if it existed. ``expected_version`` as in `set`."""
        ...

    async def list(
        self, scope: Scope, *, namespace: str = "", prefix: str = "", limit: int | None = None
    ) -> list[StateEntry]:
        """Live entries whose key starts with ``prefix``, sorted by key."""
        ...

    async def close(self) -> None:
        """Release connections and files."""
        ...
