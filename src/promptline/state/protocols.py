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
    """Versioned key/value store with compare-and-set, prefix listing and TTL on ``local``.

    Rules every backend keeps (the conformance suite in ``tests/state`` checks them all):

    - Addresses. ``scope`` is ``global``, ``session`` or ``local``. ``global`` has the one
      namespace ``""``; ``session`` needs a non-empty namespace (the session id); ``local``
      takes any namespace. A namespace is at most 255 characters, a key a non-empty string
      of at most 512; neither may contain NUL or unpaired surrogates. Scopes and
      namespaces are isolated: the same key in two of them is two entries.
    - Values. Anything JSON can say: ``dict`` with ``str`` keys, ``list``/``tuple``,
      ``str``, ``int`` (64-bit), finite ``float``, ``bool``, ``None``. Anything else
      (a ``set``, ``NaN``, a ``datetime``…) is refused with `InvalidInputError` naming the
      key, the type and where in the value it sits, and nothing is stored. Values come
      back as JSON gives them (a tuple returns as a list).
    - Versions. The first write of a key gives version 1, each later write the next
      integer. ``expected_version`` turns a write or delete into a compare-and-set: it
      happens only if the live version equals it (``0``: the key must not exist), else
      `ConflictError` with ``expected`` and ``actual`` in its details; a refused write
      changes nothing.
    - TTL. ``ttl`` (seconds, > 0) is accepted on ``local`` only (elsewhere:
      `InvalidInputError`). Each `set` decides the expiry anew: ``ttl=None`` makes the
      entry permanent again. Expiry is judged against the store's injected clock. An
      expired entry is absent for every operation: `get` returns None, `list` skips it,
      `delete` returns False, ``expected_version=0`` succeeds, and the next `set` starts
      again at version 1 (so a version number is only unique within one lifetime of a
      key).
    - Listing. `list` returns live entries whose key starts with ``prefix``, sorted by
      key in Unicode code point order, at most ``limit`` of them.
    """

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
