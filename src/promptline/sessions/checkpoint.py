"""The session projection's checkpoint: a log position up to which every session event is applied.

`recover` replays only what lies after it. Writes of one process may be projected out of
position order (two sessions append at once), so the checkpoint is a low watermark: never
past an event this process published but has not projected yet.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from promptline.core.clock import Clock, to_micros
from promptline.storage.schema import projection_checkpoints

CHECKPOINT_NAME = "sessions"
"""The row of `projection_checkpoints` this projection owns."""


class Watermark:
    """Which log positions this process can vouch for.

    Before publishing, a writer takes a *floor*: the highest position known then. Its events
    will land above the floor, so while it is in flight the checkpoint must not pass the
    floor. A writer whose projection failed leaves its floor pinned until `recover` ran.
    """

    def __init__(self) -> None:
        self._known = 0
        self._floors: Counter[int] = Counter()
        self._pinned: Counter[int] = Counter()
        self.paused = False

    def begin(self) -> int:
        """Register a write about to be published; returns its floor (pass it to `end`)."""
        floor = self._known
        self._floors[floor] += 1
        return floor

    def saw(self, position: int) -> None:
        """Record that the log reaches at least ``position`` (after our own publish)."""
        self._known = max(self._known, position)

    def end(self, floor: int, *, projected: bool) -> None:
        """The write is over; if its events were not projected, keep its floor pinned."""
        self._floors[floor] -= 1
        if self._floors[floor] <= 0:
            del self._floors[floor]
        if not projected:
            self._pinned[floor] += 1

    def safe(self, *, own_floor: int | None = None, own_floors: Sequence[int] = ()) -> int | None:
        """The position a projection write may store as checkpoint (None: store nothing).

        ``own_floor`` is the floor of the write asking (``own_floors``: of the writes a
        batch applies), which is projected by the very transaction that stores the result.
        """
        if self.paused:
            return None
        floors = self._floors.copy()
        if own_floor is not None:
            floors[own_floor] -= 1
        for floor in own_floors:
            floors[floor] -= 1
        floors += self._pinned
        candidates = [self._known, *(f for f, n in floors.items() if n > 0)]
        return min(candidates)

    def pinned(self) -> Counter[int]:
        """A copy of the pinned floors (so `recover` can release the ones it covered)."""
        return self._pinned.copy()

    def release(self, covered: Counter[int]) -> None:
        """Unpin floors whose events a recovery has applied."""
        self._pinned -= covered


async def read_checkpoint(conn: AsyncConnection) -> int:
    """The stored checkpoint (0 when the projection never stored one)."""
    t = projection_checkpoints.c
    result = await conn.execute(select(t.position).where(t.name == CHECKPOINT_NAME))
    value = result.scalar_one_or_none()
    return int(value or 0)


async def write_checkpoint(conn: AsyncConnection, position: int, clock: Clock) -> None:
    """Store ``position`` (inside the caller's transaction, with the projection write)."""
    values = {
        "name": CHECKPOINT_NAME,
        "position": position,
        "updated_at": to_micros(clock.now()),
    }
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = insert(projection_checkpoints).values(values)
    statement = statement.on_conflict_do_update(
        index_elements=["name"],
        set_={"position": values["position"], "updated_at": values["updated_at"]},
    )
    await conn.execute(statement)
