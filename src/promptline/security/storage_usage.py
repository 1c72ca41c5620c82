"""What the sessions of a user or a tenant take up in the event log (the ``storage_mb``
quota): the bytes of the events of their sessions that are not deleted, kept as running
totals brought up to date from the log's positions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import LargeBinary, cast, func, select

from promptline.sessions.projection import DELETED_REASON
from promptline.storage.schema import events

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["StorageUsage"]

_MAX_SUBJECTS = 10_000


@dataclass(slots=True)
class _Tally:
    position: int = 0
    sessions: dict[str, int] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)

    @property
    def bytes(self) -> int:
        return sum(self.sessions.values())


class StorageUsage:
    """The bytes the log holds of a subject's sessions that are not deleted.

    A subject's total is read from the log at its first use, then brought up to date at
    each use by reading only the events after the last position counted: two aggregate
    queries on the log's positions, never a scan of what was counted before. A session's
    bytes stop counting once its deletion (``session_expired`` with reason ``deleted``) is
    in the log. The log is the source, so processes sharing a database agree.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._tallies: dict[tuple[str, str | None], _Tally] = {}
        if engine.dialect.name == "postgresql":
            self._size: Any = func.octet_length(events.c.body)
        else:
            self._size = func.length(cast(events.c.body, LargeBinary))

    async def bytes_of(self, tenant_id: str, user_id: str | None = None) -> int:
        """The bytes of the sessions of ``user_id`` of ``tenant_id`` (of the whole tenant
        when ``user_id`` is None) that are not deleted."""
        key = (tenant_id, user_id)
        tally = self._tallies.get(key)
        if tally is None:
            if len(self._tallies) >= _MAX_SUBJECTS:
                self._tallies.clear()
            tally = self._tallies[key] = _Tally()
        subject = [events.c.tenant_id == tenant_id, events.c.session_id.is_not(None)]
        if user_id is not None:
            subject.append(events.c.user_id == user_id)
        async with self._engine.connect() as conn:
            sizes = await conn.execute(
                select(events.c.session_id, func.sum(self._size), func.max(events.c.position))
                .where(events.c.position > tally.position, *subject)
                .group_by(events.c.session_id)
            )
            rows = sizes.all()
            if not rows:
                return tally.bytes
            upto = max(int(row[2]) for row in rows)
            endings = await conn.execute(
                select(events.c.session_id, events.c.body).where(
                    events.c.position > tally.position,
                    events.c.position <= upto,
                    events.c.type == "session_expired",
                    *subject,
                )
            )
            for session_id, body in endings.all():
                if orjson.loads(body).get("data", {}).get("reason") == DELETED_REASON:
                    tally.deleted.add(session_id)
        for session_id, size, _ in rows:
            if session_id not in tally.deleted:
                tally.sessions[session_id] = tally.sessions.get(session_id, 0) + int(size)
        for session_id in tally.deleted:
            tally.sessions.pop(session_id, None)
        tally.position = upto
        return tally.bytes
