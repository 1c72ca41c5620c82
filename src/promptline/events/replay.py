"""Rebuild a projection (a read model) from the event log alone, reading it page by page."""

from __future__ import annotations

import dataclasses
from typing import Protocol

from promptline.core.errors import InvalidInputError
from promptline.core.events import Event
from promptline.events.protocols import EventFilter, EventStore


class Projection(Protocol):
    """A read model built by folding events, oldest first."""

    def apply(self, event: Event) -> None:
        """Take one event into account."""
        ...


async def replay(
    store: EventStore,
    projection: Projection,
    *,
    stream: str | None = None,
    filter: EventFilter | None = None,
    from_position: int = 0,
    batch: int = 1000,
) -> int:
    """Apply every stored event matching ``stream``/``filter`` after ``from_position``, in order.

    Reads ``batch`` events per query, so memory stays bounded however long the log is.
    Returns the position of the last event read (``from_position`` if there was none): store
    it as a checkpoint and pass it back as ``from_position`` to apply only what came since.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InvalidInputError(
            f"batch must be a positive integer, not {batch!r}", hint="try batch=1000"
        )
    if stream is not None:
        if filter is not None and filter.stream not in (None, stream):
            raise InvalidInputError(
                f"stream {stream!r} contradicts the filter's stream {filter.stream!r}",
                hint="give the stream once, as `stream=` or in the filter",
            )
        filter = dataclasses.replace(filter or EventFilter(), stream=stream)
    position = from_position
    while True:
        page = await store.read_all(filter, from_position=position, limit=batch)
        for event in page:
            projection.apply(event)
        if page:
            position = page[-1].position
        if len(page) < batch:
            return position
