"""Quota counters that the gateway processes of a fleet share in their PostgreSQL database:
requests per fixed window, and the runs each process has not ended as leases that lapse."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import case, delete, func, select, text

from promptline.storage.database import translate_error
from promptline.storage.schema import quota_run_leases, quota_windows

if TYPE_CHECKING:
    from sqlalchemy.dialects.postgresql import Insert
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["FleetCounters", "RunSlot"]


@dataclass(frozen=True, slots=True)
class RunSlot:
    """A subject's concurrent-runs quota as one process sees it: its ``limit`` and the runs
    of the subject this process has not ended (``local``, the one being admitted aside);
    ``scope`` names the subject to people (``user:alice``)."""

    subject: str
    limit: int | None
    local: int
    scope: str


class FleetCounters:
    """The counters of the process ``holder`` on the database of ``engine`` (PostgreSQL).

    Times are microseconds since the epoch, given by the caller (its clock), so every
    process of the fleet counts with the window and lease its own clock says.
    """

    def __init__(self, engine: AsyncEngine, holder: str) -> None:
        self._engine = engine
        self.holder = holder

    async def count_request(self, keys: Sequence[str], window_start: int) -> dict[str, int]:
        """Count one request against each of ``keys`` in the window starting at
        ``window_start``; the count of each key in that window, this request included. One
        statement: an insert that adds one to the window's count, or starts a new window. A
        process whose clock is behind counts into the newer window another one started, so
        clocks a little apart never reset a window."""
        if not keys:
            return {}
        # PostgreSQL's dialect costs ~50 ms to import: only a fleet loads it.
        from sqlalchemy.dialects.postgresql import insert

        rows_in = insert(quota_windows).values(
            [{"key": key, "window_start": window_start, "count": 1} for key in keys]
        )
        current = quota_windows.c.window_start >= rows_in.excluded.window_start
        stmt = rows_in.on_conflict_do_update(
            index_elements=[quota_windows.c.key],
            set_={
                "count": case((current, quota_windows.c.count + 1), else_=1),
                "window_start": func.greatest(
                    quota_windows.c.window_start, rows_in.excluded.window_start
                ),
            },
        ).returning(quota_windows.c.key, quota_windows.c.count)
        try:
            async with self._engine.begin() as conn:
                rows = (await conn.execute(stmt)).all()
        except Exception as exc:
            raise translate_error(exc, what="counting a request for the quotas") from exc
        return {str(key): int(count) for key, count in rows}

    async def admit_run(
        self, lock: str, slots: Sequence[RunSlot], *, now: int, expires_at: int
    ) -> tuple[RunSlot, int] | None:
        """Take one run for every subject of ``slots`` (those with a limit), unless one is
        used up: then that slot and the runs it counts (the live leases of the other
        processes and ``local``), and nothing is taken. Admissions holding the same ``lock``
        (the tenant) take turns, so two processes cannot both take the last run."""
        subjects = [slot.subject for slot in slots]
        others = (
            select(quota_run_leases.c.subject, func.sum(quota_run_leases.c.runs))
            .where(
                quota_run_leases.c.subject.in_(subjects),
                quota_run_leases.c.holder != self.holder,
                quota_run_leases.c.expires_at > now,
            )
            .group_by(quota_run_leases.c.subject)
        )
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(lock)}
                )
                held = {str(s): int(n) for s, n in (await conn.execute(others)).all()}
                for slot in slots:
                    used = held.get(slot.subject, 0) + slot.local
                    if slot.limit is not None and used >= slot.limit:
                        return slot, used
                await conn.execute(
                    self._upsert({slot.subject: slot.local + 1 for slot in slots}, expires_at)
                )
        except Exception as exc:
            raise translate_error(exc, what="counting a run for the quotas") from exc
        return None

    async def renew(self, runs: Mapping[str, int], *, now: int, expires_at: int) -> None:
        """Replace this process's leases by ``runs`` (subject -> runs not ended), each
        counted until ``expires_at``; and drop every lease lapsed by ``now`` (of processes
        gone)."""
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    delete(quota_run_leases).where(
                        (quota_run_leases.c.holder == self.holder)
                        | (quota_run_leases.c.expires_at <= now)
                    )
                )
                live = {subject: n for subject, n in runs.items() if n > 0}
                if live:
                    await conn.execute(self._upsert(live, expires_at))
        except Exception as exc:
            raise translate_error(exc, what="renewing the quotas' run leases") from exc

    async def release(self) -> None:
        """Drop this process's leases (it is stopping)."""
        await self.renew({}, now=0, expires_at=0)

    def _upsert(self, runs: Mapping[str, int], expires_at: int) -> Insert:
        from sqlalchemy.dialects.postgresql import insert

        stmt = insert(quota_run_leases).values(
            [
                {"holder": self.holder, "subject": s, "runs": n, "expires_at": expires_at}
                for s, n in runs.items()
            ]
        )
        return stmt.on_conflict_do_update(
            index_elements=[quota_run_leases.c.holder, quota_run_leases.c.subject],
            set_={"runs": stmt.excluded.runs, "expires_at": stmt.excluded.expires_at},
        )


def _lock_key(name: str) -> int:
    digest = hashlib.sha256(f"promptline-quota:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
