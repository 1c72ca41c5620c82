"""`EventedStateStore` publishes each successful change as ``state_change``, and only those."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from promptline.core.clock import ManualClock
from promptline.core.errors import ConflictError, InvalidInputError, ServiceUnavailableError
from promptline.core.events import Event, StateChangeEvent
from promptline.events.bus import InProcessEventBus
from promptline.events.factory import create_event_store
from promptline.events.protocols import EventFilter, EventStore
from promptline.state.evented import EventedStateStore, Owner, OwnerLookup, acting_for
from promptline.state.owners import StateOwners, local_namespace, tenant_key
from promptline.state.protocols import Scope
from promptline.state.sql import SqlStateStore
from promptline.storage.database import create_engine


@dataclass
class World:
    events: EventStore
    bus: InProcessEventBus
    inner: SqlStateStore
    clock: ManualClock

    def evented(
        self, redact: bool | object = False, owners: OwnerLookup | None = None
    ) -> EventedStateStore:
        return EventedStateStore(
            self.inner,
            self.bus,
            redact=redact,  # type: ignore[arg-type]
            clock=self.clock,
            owners=owners,
        )

    async def changes(self) -> list[StateChangeEvent]:
        stored = await self.events.read_all(EventFilter(types=frozenset({"state_change"})))
        assert all(isinstance(e, StateChangeEvent) for e in stored)
        return stored  # type: ignore[return-value]


@pytest.fixture
async def world(sqlite_url: str) -> AsyncIterator[World]:
    engine = create_engine(sqlite_url)
    events = create_event_store(engine)
    bus = InProcessEventBus(events)
    clock = ManualClock()
    yield World(events, bus, SqlStateStore(engine, clock=clock), clock)
    await bus.close()
    await engine.dispose()


async def test_set_publishes_a_state_change_with_the_new_version_and_value(world: World) -> None:
    store = world.evented()
    entry = await store.set("global", "model", {"name": "m1"})
    await store.set("global", "model", {"name": "m2"})
    first, second = await world.changes()
    assert first.stream == "global"
    assert first.session_id is None
    assert first.ts == entry.updated_at
    data = first.data
    assert (data.scope, data.namespace, data.key, data.op) == ("global", "", "model", "set")
    assert (data.version, data.value, data.redacted) == (1, {"name": "m1"}, False)
    assert (second.data.version, second.data.value, second.seq) == (2, {"name": "m2"}, 2)


async def test_session_changes_go_to_the_session_stream_and_local_ones_to_global(
    world: World,
) -> None:
    store = world.evented()
    await store.set("session", "topic", "cats", namespace="ses_1")
    await store.set("local", "scratch", 1, namespace="run_9")
    session_events = await world.events.read_stream("ses_1")
    assert [(e.type, e.session_id) for e in session_events] == [("state_change", "ses_1")]
    global_events = await world.events.read_stream("global")
    assert len(global_events) == 1
    local = global_events[0]
    assert isinstance(local, StateChangeEvent)
    assert (local.data.scope, local.data.namespace, local.session_id) == ("local", "run_9", None)


async def test_delete_publishes_version_0_and_deleting_nothing_publishes_nothing(
    world: World,
) -> None:
    store = world.evented()
    await store.set("session", "k", "v", namespace="ses_1")
    world.clock.advance(3)
    assert await store.delete("session", "k", namespace="ses_1") is True
    assert await store.delete("session", "k", namespace="ses_1") is False
    _, deleted = await world.changes()
    assert (deleted.data.op, deleted.data.version, deleted.data.value) == ("delete", 0, None)
    assert deleted.stream == "ses_1"
    assert deleted.ts == world.clock.now()


async def test_failed_compare_and_set_publishes_nothing(world: World) -> None:
    store = world.evented()
    await store.set("global", "k", 1)
    with pytest.raises(ConflictError):
        await store.set("global", "k", 2, expected_version=0)
    with pytest.raises(ConflictError):
        await store.set("global", "k", 2, expected_version=7)
    with pytest.raises(ConflictError):
        await store.delete("global", "k", expected_version=5)
    with pytest.raises(InvalidInputError):
        await store.set("global", "k", {1, 2})
    assert [e.data.version for e in await world.changes()] == [1]


async def test_redact_true_hides_every_value(world: World) -> None:
    store = world.evented(redact=True)
    entry = await store.set("global", "api_key", "sk-secret")
    assert entry.value == "sk-secret"  # the caller still gets its value
    await store.delete("global", "api_key")
    for event in await world.changes():
        assert event.data.value is None
        assert event.data.redacted is True
    assert "sk-secret" not in str([e.model_dump() for e in await world.changes()])


async def test_a_redaction_policy_hides_only_the_keys_it_picks(world: World) -> None:
    def secret(scope: Scope, key: str) -> bool:
        return scope == "session" and key.startswith("secret.")

    store = world.evented(redact=secret)
    await store.set("session", "secret.token", "t0k3n", namespace="ses_1")
    await store.set("session", "topic", "cats", namespace="ses_1")
    await store.set("global", "secret.token", "public here")
    hidden, shown, other_scope = await world.changes()
    assert (hidden.data.value, hidden.data.redacted) == (None, True)
    assert (shown.data.value, shown.data.redacted) == ("cats", False)
    assert (other_scope.data.value, other_scope.data.redacted) == ("public here", False)


async def test_a_live_subscriber_receives_the_change(world: World) -> None:
    store = world.evented()
    async with world.bus.subscribe(EventFilter(stream="ses_1")) as sub:
        await store.set("session", "k", "v", namespace="ses_1")
        await store.set("global", "elsewhere", 1)
        event: Event = await asyncio.wait_for(anext(sub), timeout=5)
    assert isinstance(event, StateChangeEvent)
    assert (event.data.key, event.data.value, event.seq) == ("k", "v", 1)


async def test_reads_pass_through_to_the_inner_store_unpublished(world: World) -> None:
    store = world.evented()
    await store.set("local", "b", 2, namespace="run")
    await store.set("local", "a", 1, namespace="run")
    got = await store.get("local", "a", namespace="run")
    assert got is not None
    assert got.value == 1
    assert [e.key for e in await store.list("local", namespace="run", limit=1)] == ["a"]
    assert store.inner is world.inner
    assert len(await world.changes()) == 2


# -- whom a change belongs to -----------------------------------------------------------------


async def _alices_session(session_id: str) -> Owner | None:
    return Owner("acme", "alice") if session_id == "ses_1" else None


async def test_a_session_change_carries_the_sessions_tenant_and_user(world: World) -> None:
    store = world.evented(owners=StateOwners(_alices_session))

    # Whoever writes (here acme's admin), the change belongs to the session's owner.
    with acting_for("acme", "ops"):
        await store.set("session", "plan", [1], namespace="ses_1")
        await store.delete("session", "plan", namespace="ses_1")

    for change in await world.changes():
        assert (change.session_id, change.tenant_id, change.user_id) == ("ses_1", "acme", "alice")


async def test_a_local_change_carries_its_owners_tenant_and_user(world: World) -> None:
    store = world.evented(owners=StateOwners(_alices_session))

    await store.set("local", "draft", 1, namespace=local_namespace("t1:x", "y"))
    await store.set("local", "draft", 1, namespace=local_namespace("t1", "x:y"))

    first, second = await world.changes()
    assert (first.tenant_id, first.user_id, first.session_id) == ("t1:x", "y", None)
    assert (second.tenant_id, second.user_id, second.session_id) == ("t1", "x:y", None)


async def test_a_global_change_carries_the_caller_who_made_it(world: World) -> None:
    store = world.evented(owners=StateOwners(_alices_session))

    with acting_for("acme", "alice"):
        await store.set("global", tenant_key("acme", "plan"), "team")
    await store.set("global", tenant_key("globex", "plan"), "solo")  # no caller named
    await store.set("global", "installation/setting", 1)  # nobody's

    by_alice, of_globex, nobodys = await world.changes()
    assert (by_alice.tenant_id, by_alice.user_id) == ("acme", "alice")
    assert (of_globex.tenant_id, of_globex.user_id) == ("globex", None)
    assert (nobodys.tenant_id, nobodys.user_id) == (None, None)


async def test_the_caller_named_stands_in_where_the_address_names_nobody(world: World) -> None:
    store = world.evented(owners=StateOwners(_alices_session))

    with acting_for("acme", "bob"):
        await store.set("local", "scratch", 1, namespace="run_9")
        await store.set("session", "k", 1, namespace="ses_unknown")
    await store.set("local", "scratch", 2, namespace="run_9")

    run_local, unknown_session, unnamed = await world.changes()
    assert (run_local.tenant_id, run_local.user_id) == ("acme", "bob")
    assert (unknown_session.tenant_id, unknown_session.user_id) == ("acme", "bob")
    assert (unnamed.tenant_id, unnamed.user_id) == (None, None)


async def test_a_failing_owner_lookup_refuses_the_write_and_stores_nothing(world: World) -> None:
    async def unreachable(scope: Scope, namespace: str, key: str) -> Owner | None:
        raise ServiceUnavailableError("the session database does not answer")

    store = world.evented(owners=unreachable)

    with pytest.raises(ServiceUnavailableError):
        await store.set("session", "k", 1, namespace="ses_1")

    assert await world.inner.get("session", "k", namespace="ses_1") is None
    assert await world.changes() == []
