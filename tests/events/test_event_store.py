"""The EventStore conformance suite: every backend (SQLite, PostgreSQL, memory) passes it all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from promptline.core.errors import ConfigError, ConflictError, InvalidInputError
from promptline.core.events import (
    GLOBAL_STREAM,
    ErrorData,
    ErrorEvent,
    MessageReceived,
    MessageReceivedEvent,
    RunStarted,
    RunStartedEvent,
    StateChange,
    StateChangeEvent,
    UnknownEvent,
    encode_event,
    parse_event,
)
from promptline.core.messages import Message
from promptline.events.factory import create_event_store
from promptline.events.memory import InMemoryEventStore
from promptline.events.postgres import PostgresEventStore
from promptline.events.protocols import EventFilter, EventStore
from promptline.events.sql import SqlEventStore
from promptline.events.sqlite import SqliteEventStore
from promptline.storage.database import create_engine
from promptline.storage.migrate import upgrade

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def err(stream: str = "", *, session: str | None = "s1", n: int = 0, **envelope: Any) -> ErrorEvent:
    return ErrorEvent(
        stream=stream,
        session_id=session,
        data=ErrorData(code="test", message=f"event {n}"),
        **envelope,
    )


@pytest.fixture(
    params=["sqlite", "postgres", "sqlite-memory", "sqlite-portable", "sqlite-open", "memory"]
)
def target(request: pytest.FixtureRequest) -> tuple[str, str]:
    """Each store in turn: SQLite, PostgreSQL, SQLite in memory (written through the engine),
    the base class's portable SQLAlchemy path on SQLite, SQLite opened without an engine
    (`SqliteEventStore.open`), and `InMemoryEventStore`, which has no database (an empty
    URL)."""
    if request.param == "memory":
        return "", ""
    backend, _, variant = request.param.partition("-")
    if variant == "memory":
        return "sqlite+aiosqlite:///:memory:", variant
    return str(request.getfixturevalue(f"{backend}_url")), variant


@pytest.fixture
async def store(target: tuple[str, str]) -> AsyncIterator[EventStore]:
    url, variant = target
    if not url:
        memory = InMemoryEventStore()
        yield memory
        await memory.close()
        return
    if variant == "open":
        opened = SqliteEventStore.open(url.split("///", 1)[1])
        yield opened
        await opened.close()
        return
    engine = create_engine(url)
    if variant == "memory":
        await upgrade(engine)
    store = SqlEventStore(engine) if variant == "portable" else create_event_store(engine)
    try:
        yield store
    finally:
        await store.close()
        await engine.dispose()


async def test_factory_picks_the_dialect_store(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        store = create_event_store(engine)
        expected = SqliteEventStore if db_url.startswith("sqlite") else PostgresEventStore
        assert type(store) is expected
    finally:
        await engine.dispose()


def test_factory_refuses_a_database_it_has_no_store_for() -> None:
    engine: Any = SimpleNamespace(dialect=SimpleNamespace(name="oracle"))
    with pytest.raises(ConfigError, match="oracle") as caught:
        create_event_store(engine)
    assert caught.value.hint


# -- appending --------------------------------------------------------------------------------


async def test_append_assigns_seq_and_position_and_fills_stream_from_session(
    store: EventStore,
) -> None:
    first = await store.append(err(session="s1"))
    second = await store.append(err(session="s1"))
    other = await store.append(err(session="s2"))
    assert (first.stream, first.seq, first.position) == ("s1", 1, 1)
    assert (second.stream, second.seq, second.position) == ("s1", 2, 2)
    assert (other.stream, other.seq, other.position) == ("s2", 1, 3)


async def test_append_without_session_goes_to_the_global_stream(store: EventStore) -> None:
    stored = await store.append(err(session=None))
    assert stored.stream == GLOBAL_STREAM
    assert await store.last_seq(GLOBAL_STREAM) == 1


async def test_append_keeps_an_explicit_stream(store: EventStore) -> None:
    stored = await store.append(err("audit", session="s1"))
    assert stored.stream == "audit"
    assert stored.session_id == "s1"
    assert await store.last_seq("s1") == 0


async def test_appended_event_reads_back_equal_to_what_append_returned(store: EventStore) -> None:
    message = Message(role="user", content="hello")
    event = MessageReceivedEvent(
        session_id="s1",
        run_id="r1",
        user_id="u1",
        tenant_id="t1",
        agent_id="a1",
        causation_id="c1",
        correlation_id="k1",
        data=MessageReceived(message=message, channel="cli"),
    )
    stored = await store.append(event)
    [read] = await store.read_stream("s1")
    assert read == stored
    assert isinstance(read, MessageReceivedEvent)
    assert read.data.message.text == "hello"
    assert stored.id == event.id


async def test_append_accepts_a_dict_and_returns_a_typed_event(store: EventStore) -> None:
    raw = {"type": "run_started", "session_id": "s1", "data": {"agent": "helper"}}
    stored = await store.append(raw)  # type: ignore[arg-type]
    assert isinstance(stored, RunStartedEvent)
    assert stored.data.agent == "helper"
    assert stored.seq == 1


async def test_batch_assigns_consecutive_seqs_per_stream_and_positions_in_order(
    store: EventStore,
) -> None:
    await store.append(err(session="a"))
    batch = [err(session="a"), err(session="b"), err(session="a"), err(session="b")]
    stored = await store.append_batch(batch)
    assert [(e.stream, e.seq) for e in stored] == [("a", 2), ("b", 1), ("a", 3), ("b", 2)]
    assert [e.position for e in stored] == [2, 3, 4, 5]
    assert [e.id for e in stored] == [e.id for e in batch]


async def test_empty_batch_stores_nothing(store: EventStore) -> None:
    assert await store.append_batch([]) == []
    assert await store.last_position() == 0


async def test_batch_with_one_invalid_event_stores_nothing(store: EventStore) -> None:
    bad = {"type": "run_started", "data": {"agent": 42, "model": ["not", "a", "string"]}}
    with pytest.raises(InvalidInputError, match="event #2") as caught:
        await store.append_batch([err(), err(), bad])  # type: ignore[list-item]
    assert caught.value.hint
    assert await store.count() == 0


async def test_batch_failing_in_the_database_stores_nothing(store: EventStore) -> None:
    taken = await store.append(err(session="x"))
    with pytest.raises(ConflictError, match=taken.id):
        await store.append_batch([err(session="s1"), err(session="s1"), taken])
    assert await store.count() == 1
    assert await store.last_seq("s1") == 0
    # The log goes on without a hole after the failed batch.
    after = await store.append(err(session="s1"))
    assert (after.seq, after.position) == (1, 2)


async def test_batch_repeating_an_id_is_refused(store: EventStore) -> None:
    event = err()
    with pytest.raises(InvalidInputError, match=event.id):
        await store.append_batch([event, event])
    assert await store.count() == 0


async def test_reappending_a_stored_event_raises_conflict_and_stores_nothing(
    store: EventStore,
) -> None:
    stored = await store.append(err())
    with pytest.raises(ConflictError, match="already stored") as caught:
        await store.append(stored)
    assert caught.value.details["ids"] == [stored.id]
    assert await store.count() == 1


async def test_expected_seq_that_matches_appends(store: EventStore) -> None:
    await store.append(err(), expected_seq=0)
    second = await store.append(err(), expected_seq=1)
    assert second.seq == 2


async def test_expected_seq_mismatch_raises_conflict_naming_stream_expected_and_actual(
    store: EventStore,
) -> None:
    await store.append(err())
    await store.append(err())
    with pytest.raises(ConflictError, match=r"'s1' is at seq 2, expected 1") as caught:
        await store.append(err(), expected_seq=1)
    assert caught.value.details == {"stream": "s1", "expected": 1, "actual": 2}
    assert caught.value.hint
    assert await store.last_seq("s1") == 2


async def test_expected_seq_zero_means_the_stream_must_not_exist(store: EventStore) -> None:
    await store.append(err())
    with pytest.raises(ConflictError):
        await store.append(err(), expected_seq=0)


async def test_expected_seqs_conflict_in_a_batch_stores_nothing(store: EventStore) -> None:
    await store.append(err(session="a"))
    with pytest.raises(ConflictError, match="'b' is at seq 0, expected 3"):
        await store.append_batch(
            [err(session="a"), err(session="b")], expected_seqs={"a": 1, "b": 3}
        )
    assert await store.count() == 1
    stored = await store.append_batch(
        [err(session="a"), err(session="b")], expected_seqs={"a": 1, "b": 0}
    )
    assert [e.seq for e in stored] == [2, 1]


async def test_concurrent_appends_through_one_store_are_gap_free(store: EventStore) -> None:
    async def writer(n: int) -> None:
        for _ in range(10):
            await store.append(err(n=n))

    await asyncio.gather(*(writer(n) for n in range(8)))
    events = await store.read_stream("s1")
    assert [e.seq for e in events] == list(range(1, 81))
    assert [e.position for e in events] == list(range(1, 81))


# -- refusing bad input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("not an event", "is a str, not an event"),
        (42, "is a int, not an event"),
        ({"type": "run_started", "data": {}}, "data.agent"),
        ({"type": "state_change", "data": {"scope": "galaxy", "key": "k", "version": 1}}, "scope"),
        ({"type": "error"}, "data"),
        ({"no_type": True}, "type"),
    ],
)
async def test_wrong_shape_is_rejected_with_a_hint(
    store: EventStore, bad: Any, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message) as caught:
        await store.append(bad)
    assert caught.value.hint
    assert await store.count() == 0


@pytest.mark.parametrize(
    "envelope",
    [
        {"stream": "s" * 256},
        {"run_id": "r" * 256},
        {"user_id": "u" * 256},
        {"id": "e" * 65},
    ],
)
async def test_over_long_envelope_values_are_rejected_on_every_backend(
    store: EventStore, envelope: dict[str, Any]
) -> None:
    with pytest.raises(InvalidInputError, match="at most"):
        await store.append(err(**envelope))
    assert await store.count() == 0


async def test_append_batch_refuses_a_single_event_instead_of_a_list(store: EventStore) -> None:
    with pytest.raises(InvalidInputError, match="list of events"):
        await store.append_batch(err())  # type: ignore[arg-type]


async def test_negative_expected_seq_is_rejected(store: EventStore) -> None:
    with pytest.raises(InvalidInputError, match="expected seq"):
        await store.append(err(), expected_seq=-1)
    assert await store.count() == 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.read_stream("s1", from_seq=-1), "from_seq"),
        (lambda s: s.read_stream("s1", limit=-5), "limit"),
        (lambda s: s.read_all(from_position=-1), "from_position"),
        (lambda s: s.read_all({"stream": "s1"}), "EventFilter"),
        (lambda s: s.read_stream(""), "stream"),
    ],
)
async def test_bad_read_arguments_are_rejected(store: EventStore, call: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        await call(store)


# -- reading ----------------------------------------------------------------------------------


async def test_read_stream_from_seq_is_exclusive_and_respects_limit(store: EventStore) -> None:
    await store.append_batch([err(n=i) for i in range(10)])
    await store.append(err(session="other"))
    assert [e.seq for e in await store.read_stream("s1", from_seq=7)] == [8, 9, 10]
    assert [e.seq for e in await store.read_stream("s1", from_seq=2, limit=3)] == [3, 4, 5]
    assert await store.read_stream("s1", from_seq=10) == []
    assert await store.read_stream("missing") == []
    assert await store.read_stream("s1", limit=0) == []


async def test_read_all_pages_by_position_without_skipping(store: EventStore) -> None:
    await store.append_batch([err(session=f"s{i % 3}", n=i) for i in range(25)])
    seen: list[int] = []
    cursor = 0
    while page := await store.read_all(from_position=cursor, limit=7):
        seen.extend(e.position for e in page)
        cursor = page[-1].position
    assert seen == list(range(1, 26))


async def test_read_all_descending_gives_newest_first_and_pages_backwards(
    store: EventStore,
) -> None:
    await store.append_batch([err(n=i) for i in range(10)])
    newest = await store.read_all(descending=True, limit=3)
    assert [e.position for e in newest] == [10, 9, 8]
    older = await store.read_all(descending=True, from_position=newest[-1].position, limit=3)
    assert [e.position for e in older] == [7, 6, 5]


async def test_read_all_of_one_stream_pages_by_position_both_ways(store: EventStore) -> None:
    await store.append_batch([err(session=f"s{i % 3}", n=i) for i in range(12)])
    s1 = EventFilter(stream="s1")
    forwards = await store.read_all(s1, from_position=2, limit=2)
    assert [e.position for e in forwards] == [5, 8]
    assert [e.position for e in await store.read_all(s1, from_position=8)] == [11]
    backwards = await store.read_all(s1, from_position=8, descending=True)
    assert [e.position for e in backwards] == [5, 2]
    newest = await store.read_all(s1, descending=True, limit=1)
    assert [e.position for e in newest] == [11]
    assert await store.read_all(EventFilter(stream="none"), from_position=3) == []


def _sample(i: int) -> ErrorEvent:
    return ErrorEvent(
        session_id=f"s{i % 2}",
        run_id=f"r{i % 3}",
        user_id=f"u{i % 4}",
        tenant_id="t1" if i < 6 else "t2",
        ts=T0 + timedelta(minutes=i),
        data=ErrorData(code="test", message=str(i)),
    )


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (EventFilter(session_id="s1"), [1, 3, 5, 7, 9, 11]),
        (EventFilter(stream="s0"), [0, 2, 4, 6, 8, 10]),
        (EventFilter(run_id="r2"), [2, 5, 8, 11]),
        (EventFilter(user_id="u3"), [3, 7, 11]),
        (EventFilter(tenant_id="t2"), [6, 7, 8, 9, 10, 11]),
        (EventFilter(since=T0 + timedelta(minutes=9)), [9, 10, 11]),
        (EventFilter(until=T0 + timedelta(minutes=2)), [0, 1, 12]),
        (
            EventFilter(since=T0 + timedelta(minutes=3), until=T0 + timedelta(minutes=5)),
            [3, 4],
        ),
        (EventFilter(session_id="s0", run_id="r0", tenant_id="t2"), [6]),
        (EventFilter(types=frozenset({"error"})), list(range(12))),
        (EventFilter(types=frozenset({"run_started"})), [12]),
        (EventFilter(types=frozenset()), []),
    ],
)
async def test_read_all_and_count_apply_filters(
    store: EventStore, flt: EventFilter, expected: list[int]
) -> None:
    samples: list[Any] = [_sample(i) for i in range(12)]
    samples.append(RunStartedEvent(stream="runs", ts=T0, data=RunStarted(agent="a")))
    stored = await store.append_batch(samples)
    found = await store.read_all(flt)
    assert [e.id for e in found] == [stored[i].id for i in expected]
    assert all(flt.matches(e) for e in found)
    assert await store.count(flt) == len(expected)


async def test_time_filters_read_a_naive_timestamp_as_utc(store: EventStore) -> None:
    naive = T0.replace(tzinfo=None)
    stored = await store.append_batch([err(ts=naive), err(ts=naive + timedelta(minutes=1))])
    later = EventFilter(since=T0 + timedelta(seconds=30))
    assert [e.id for e in await store.read_all(later)] == [stored[1].id]
    assert await store.count(EventFilter(until=T0 + timedelta(seconds=30))) == 1


async def test_count_last_seq_and_last_position_on_empty_and_filled_log(
    store: EventStore,
) -> None:
    assert await store.count() == 0
    assert await store.last_seq("s1") == 0
    assert await store.last_position() == 0
    await store.append_batch([err(session="s1"), err(session="s2"), err(session="s1")])
    assert await store.count() == 3
    assert await store.last_seq("s1") == 2
    assert await store.last_position() == 3


async def test_unknown_event_type_round_trips_unchanged(store: EventStore) -> None:
    raw = {
        "type": "hologram_projected",
        "session_id": "s1",
        "priority": "high",  # an envelope field from a newer release
        "data": {"beam": {"intensity": 7, "colors": ["red", "blue"]}},
    }
    event = parse_event(raw)
    assert isinstance(event, UnknownEvent)
    stored = await store.append(event)
    [read] = await store.read_stream("s1")
    assert isinstance(read, UnknownEvent)
    assert read == stored
    assert read.type == "hologram_projected"
    assert read.data == raw["data"]
    assert read.model_extra == {"priority": "high"}
    assert encode_event(read) == encode_event(stored)


async def test_typed_payloads_survive_storage(store: EventStore) -> None:
    change = StateChangeEvent(
        session_id="s1",
        data=StateChange(scope="session", key="k", version=3, value={"nested": [1, 2.5, None]}),
    )
    stored = await store.append(change)
    [read] = await store.read_all(EventFilter(types=frozenset({"state_change"})))
    assert isinstance(read, StateChangeEvent)
    assert read.data.value == {"nested": [1, 2.5, None]}
    assert read == stored


# -- text holding U+0000 (NUL) ----------------------------------------------------------------

NUL_TEXT = "before\x00after"


async def test_nul_in_text_and_json_keys_and_values_reads_back_identical(
    store: EventStore,
) -> None:
    message = Message(
        role="user",
        content=[{"type": "text", "text": NUL_TEXT}],
        name="n\x00ame",
        metadata={"k\x00ey": "v\x00alue", "list": ["\x00", {"\x00": "\x00"}]},
    )
    received = MessageReceivedEvent(session_id="s1", data=MessageReceived(message=message))
    change = StateChangeEvent(
        session_id="s1",
        data=StateChange(scope="session", key="k", version=1, value={"a\x00": ["b\x00"]}),
    )
    unknown = parse_event({"type": "x_custom", "session_id": "s1", "data": {"\x00": NUL_TEXT}})

    stored = await store.append_batch([received, change, unknown])
    read = await store.read_stream("s1")

    assert read == stored
    assert [encode_event(e) for e in read] == [encode_event(e) for e in stored]
    first = read[0]
    assert isinstance(first, MessageReceivedEvent)
    assert first.data.message.text == NUL_TEXT
    assert first.data.message.metadata == message.metadata
    assert read[2].data == {"\x00": NUL_TEXT}
    later = await store.append(err(session="s1"))
    assert later.seq == 4


@pytest.mark.parametrize("field", ["stream", "session_id", "run_id", "user_id", "tenant_id"])
async def test_a_name_holding_nul_is_refused_naming_it_and_nothing_is_stored(
    store: EventStore, field: str
) -> None:
    envelope: dict[str, Any] = {"stream": "s1", "session_id": "s1", field: "bad\x00name"}
    event = err(envelope.pop("stream"), session=envelope.pop("session_id"), **envelope)
    with pytest.raises(InvalidInputError, match="NUL") as caught:
        await store.append(event)
    assert caught.value.details["field"] == field
    assert caught.value.hint
    assert await store.count() == 0


async def test_a_filter_or_stream_name_holding_nul_finds_nothing(store: EventStore) -> None:
    await store.append(err(session="s1"))
    for flt in (
        EventFilter(session_id="s1\x00"),
        EventFilter(stream="s1\x00"),
        EventFilter(types=frozenset({"error\x00"})),
        EventFilter(tenant_id="\x00", user_id="\x00", run_id="\x00"),
    ):
        assert await store.read_all(flt) == []
        assert await store.count(flt) == 0
    with pytest.raises(InvalidInputError, match="NUL"):
        await store.read_stream("s1\x00")
    assert await store.count() == 1
