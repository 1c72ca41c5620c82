"""The event log in the process's memory: for tests, benchmarks and runs that need not last.

Nothing is written anywhere; the log ends with the store object.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection, Mapping, Sequence
from itertools import islice
from operator import attrgetter
from typing import Any

from promptline.core.clock import to_micros
from promptline.core.events import Event, decode_event, encode_event, stamped
from promptline.events.checks import (
    already_stored,
    check_cursor,
    check_expected,
    check_filter,
    check_limit,
    check_name,
    checked_batch,
    checked_event,
    stream_moved,
)
from promptline.events.content import PromptIndex, tenant_key
from promptline.events.protocols import EventFilter

_ENVELOPE_FILTERS = ("stream", "session_id", "run_id", "user_id", "tenant_id")
_position = attrgetter("position")


class InMemoryEventStore:
    """`EventStore` held in lists: the whole log, and each stream's events in seq order.

    It keeps every promise of the SQL stores (gap-free seqs, positions in append order,
    all-or-nothing batches, expected seqs, one event per id, the same errors), and passes
    their conformance suite. No method awaits anything, so on one event loop each call runs
    whole before another starts: that is the write lock. It is not for use from several
    threads.

    Each event is kept as its JSON form with the envelope fields that queries filter on,
    as the SQL stores keep it: a fifth of the memory of the model objects, and readers get
    fresh objects, so nothing a reader does changes the log. `append` returns the stored
    event as a model (what the bus delivers) without decoding it again. `close` does nothing
    and the log stays readable; it lives as long as the store object does.
    """

    def __init__(self) -> None:
        self._log: list[_Stored] = []  # position p is self._log[p - 1]
        self._streams: dict[str, list[_Stored]] = {}  # seq s of a stream is its list[s - 1]
        self._ids: set[str] = set()
        self._prompts = PromptIndex()
        self._content: dict[tuple[str, str], str] = {}

    # -- writing ----------------------------------------------------------------------------

    async def append(
        self, event: Event | Mapping[str, Any], *, expected_seq: int | None = None
    ) -> Event:
        """Store one event; returns it with ``stream``, ``seq`` and ``position`` filled in.

        ``expected_seq``: fail with `ConflictError` unless the stream's last seq is exactly
        this (0 for a stream that must not exist yet). An event whose ``id`` is already in
        the log is refused with `ConflictError`.
        """
        checked = checked_event(event, 0)
        stream = checked.stream_name
        if expected_seq is not None:
            self._check_heads({stream: expected_seq})
        if checked.id in self._ids:
            raise already_stored([checked.id])
        events = self._streams.get(stream)
        if events is None:
            events = self._streams[stream] = []
        staging = self._prompts.begin()
        stored = staging.apply([stamped(checked, stream, len(events) + 1, len(self._log) + 1)])[0]
        record = _Stored(stored)
        events.append(record)
        self._log.append(record)
        self._ids.add(stored.id)
        self._keep(staging.rows)
        staging.commit()
        return stored

    async def append_batch(
        self,
        events: Sequence[Event | Mapping[str, Any]],
        *,
        expected_seqs: Mapping[str, int] | None = None,
    ) -> list[Event]:
        """Store several events (of one or many streams) at once: all or none.

        ``expected_seqs`` maps a stream to the last seq it must have before the batch.
        """
        batch = checked_batch(events)
        if not batch:
            return []
        ids = [e.id for e in batch]
        if expected_seqs:
            self._check_heads(dict(expected_seqs))
        taken = [i for i in ids if i in self._ids]
        if taken:
            raise already_stored(taken)
        # Every check has passed: number the whole batch, then store it in one go.
        position = len(self._log)
        last: dict[str, int] = {}
        stored: list[Event] = []
        for event in batch:
            stream = event.stream_name
            seq = last.get(stream)
            if seq is None:
                seq = len(self._streams.get(stream, ()))
            last[stream] = seq = seq + 1
            position += 1
            stored.append(stamped(event, stream, seq, position))
        staging = self._prompts.begin()
        stored = staging.apply(stored)
        records = [_Stored(event) for event in stored]
        for record in records:
            self._streams.setdefault(record.stream, []).append(record)
        self._log.extend(records)
        self._ids.update(ids)
        self._keep(staging.rows)
        staging.commit()
        return stored

    def _keep(self, rows: Sequence[tuple[str, str, str, str]]) -> None:
        """Keep content parts, the first copy of each (as the SQL stores' insert-or-ignore)."""
        for tenant, key, _kind, body in rows:
            self._content.setdefault((tenant, key), body)

    async def read_content(self, tenant_id: str | None, hashes: Collection[str]) -> dict[str, str]:
        """The bodies of ``tenant_id``'s content parts with these hashes (see
        `promptline.events.content`)."""
        tenant = tenant_key(tenant_id)
        found = ((key, self._content.get((tenant, key))) for key in hashes)
        return {key: body for key, body in found if body is not None}

    def _check_heads(self, expected: dict[str, int]) -> None:
        """`ConflictError` unless each stream's last seq is the expected one."""
        check_expected(expected)
        for stream, want in expected.items():
            actual = len(self._streams.get(stream, ()))
            if actual != want:
                raise stream_moved(stream, want, actual)

    # -- reading ----------------------------------------------------------------------------

    async def read_stream(
        self, stream: str, *, from_seq: int = 0, limit: int | None = None
    ) -> list[Event]:
        """Events of ``stream`` with seq > ``from_seq``, in seq order (at most ``limit``)."""
        check_name(stream, "stream")
        check_cursor(from_seq, "from_seq")
        check_limit(limit)
        events = self._streams.get(stream, [])
        picked = events[from_seq:] if limit is None else events[from_seq : from_seq + limit]
        return [record.event() for record in picked]

    async def read_all(
        self,
        filter: EventFilter | None = None,
        *,
        from_position: int = 0,
        limit: int | None = None,
        descending: bool = False,
    ) -> list[Event]:
        """Events matching ``filter`` with position > ``from_position``, in position order.

        With ``descending`` the newest come first, and a non-zero ``from_position`` means
        position < ``from_position`` (pass the last position seen to page backwards).
        """
        check_cursor(from_position, "from_position")
        check_limit(limit)
        matches = _matcher(filter)
        # A stream's own list holds the same events in the same order, and fewer of them.
        events = self._log
        if filter is not None and filter.stream is not None:
            events = self._streams.get(filter.stream, [])

        if descending:
            end = len(events)
            if from_position:
                end = bisect_left(events, from_position, key=_position)
            indices = range(end - 1, -1, -1)
        else:
            indices = range(bisect_right(events, from_position, key=_position), len(events))
        picked = (events[i] for i in indices)
        if matches is not None:
            picked = (record for record in picked if matches(record))
        return [record.event() for record in islice(picked, limit)]

    async def count(self, filter: EventFilter | None = None) -> int:
        """How many stored events match ``filter``."""
        matches = _matcher(filter)
        if filter is None or matches is None:
            return len(self._log)
        events = self._log if filter.stream is None else self._streams.get(filter.stream, [])
        return sum(1 for event in events if matches(event))

    async def last_seq(self, stream: str) -> int:
        """The seq of the newest event of ``stream`` (0 when it has none)."""
        check_name(stream, "stream")
        return len(self._streams.get(stream, ()))

    async def last_position(self) -> int:
        """The position of the newest event in the log (0 when it is empty)."""
        return len(self._log)

    async def close(self) -> None:
        """Nothing to release; the log stays readable for as long as the store exists."""


class _Stored:
    """One event of the log: its JSON form and the envelope fields queries filter on."""

    __slots__ = (
        "micros",
        "position",
        "raw",
        "run_id",
        "seq",
        "session_id",
        "stream",
        "tenant_id",
        "type",
        "user_id",
    )

    def __init__(self, event: Event) -> None:
        self.raw = encode_event(event)
        self.type = event.type
        self.stream = event.stream
        self.seq = event.seq
        self.position = event.position
        self.micros = to_micros(event.ts)
        self.session_id = event.session_id
        self.run_id = event.run_id
        self.user_id = event.user_id
        self.tenant_id = event.tenant_id

    def event(self) -> Event:
        """A fresh model of the stored event (lenient: a newer writer's payload is kept)."""
        return decode_event(self.raw, lenient=True)


def _matcher(filter: EventFilter | None) -> Callable[[_Stored], bool] | None:
    """A test for ``filter``, or None when it lets every event through.

    Times compare as the SQL stores compare them, in microseconds since the epoch, which
    reads a naive datetime as UTC (`EventFilter.matches` would refuse to compare one with
    an aware datetime).
    """
    check_filter(filter)
    if filter is None:
        return None
    types = filter.types
    fields = [(name, getattr(filter, name)) for name in _ENVELOPE_FILTERS]
    equal = [(name, value) for name, value in fields if value is not None]
    since = None if filter.since is None else to_micros(filter.since)
    until = None if filter.until is None else to_micros(filter.until)
    if types is None and not equal and since is None and until is None:
        return None

    def matches(record: _Stored) -> bool:
        if types is not None and record.type not in types:
            return False
        for name, value in equal:
            if getattr(record, name) != value:
                return False
        if since is None and until is None:
            return True
        micros = record.micros
        return (since is None or micros >= since) and (until is None or micros < until)

    return matches
