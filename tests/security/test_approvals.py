"""The approval broker: requests and answers are events, recorded before anyone acts on them;
timeouts, unknown and repeated answers, cancellation, and answers after a restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from security_support import STUCK, next_event, next_request, scope

from promptline.core.clock import ManualClock, SystemClock
from promptline.core.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    ServiceUnavailableError,
)
from promptline.core.events import (
    PermissionDeniedEvent,
    PermissionGrantedEvent,
    PermissionRequestEvent,
)
from promptline.events.bus import BusSubscription, InProcessEventBus
from promptline.events.factory import create_event_store
from promptline.events.protocols import EventFilter, EventStore
from promptline.security.approvals import ApprovalBroker, ApprovalOutcome
from promptline.storage.database import create_engine


@pytest.fixture
async def broker(
    bus: InProcessEventBus, store: EventStore, clock: ManualClock
) -> AsyncIterator[ApprovalBroker]:
    b = ApprovalBroker(bus, store, timeout=60, clock=clock)
    try:
        yield b
    finally:
        await b.close()


def ask(
    broker: ApprovalBroker, tool: str = "file_write", **kw: object
) -> asyncio.Task[ApprovalOutcome]:
    return asyncio.create_task(
        broker.request(tool, {"path": "a.txt"}, scope(), "needs approval", **kw)  # type: ignore[arg-type]
    )


async def test_request_records_the_event_with_the_scope_and_an_expiry(
    broker: ApprovalBroker, requests: BusSubscription, clock: ManualClock
) -> None:
    task = ask(broker, call_id="call_1", destructive=True)

    event = await next_request(requests)

    assert (event.session_id, event.run_id, event.user_id, event.stream) == (
        "s1",
        "run1",
        "alice",
        "s1",
    )
    assert event.data.tool == "file_write"
    assert event.data.arguments == {"path": "a.txt"}
    assert event.data.reason == "needs approval"
    assert event.data.call_id == "call_1"
    assert event.data.destructive is True
    assert event.data.expires_at == clock.now() + timedelta(seconds=60)
    assert event.data.request_id.startswith("perm_")
    assert not task.done()
    await broker.respond(event.data.request_id, approve=False, decided_by="alice")
    await task


async def test_approval_once_is_recorded_before_the_caller_resumes(
    broker: ApprovalBroker,
    requests: BusSubscription,
    decisions: BusSubscription,
    store: EventStore,
) -> None:
    task = ask(broker)
    request_id = (await next_request(requests)).data.request_id

    answer = await broker.respond(request_id, approve=True, decided_by="alice")
    outcome = await asyncio.wait_for(task, STUCK)

    assert outcome == answer
    assert (outcome.approved, outcome.scope, outcome.decided_by) == (True, "once", "alice")
    granted = await next_event(decisions)
    assert isinstance(granted, PermissionGrantedEvent)
    assert (granted.data.request_id, granted.data.scope, granted.data.decided_by) == (
        request_id,
        "once",
        "alice",
    )
    assert granted.session_id == "s1"
    assert granted.causation_id == (await broker.get(request_id)).request.event_id
    assert await store.count(EventFilter(types=frozenset({"permission_granted"}))) == 1


@pytest.mark.parametrize("grant_scope", ["session", "always"])
async def test_a_grant_records_its_scope(
    broker: ApprovalBroker, requests: BusSubscription, grant_scope: str
) -> None:
    task = ask(broker)
    request_id = (await next_request(requests)).data.request_id

    await broker.respond(request_id, approve=True, scope=grant_scope, decided_by="alice")  # type: ignore[arg-type]

    assert (await task).scope == grant_scope


async def test_a_refusal_is_recorded_with_who_and_why(
    broker: ApprovalBroker, requests: BusSubscription, decisions: BusSubscription
) -> None:
    task = ask(broker)
    request_id = (await next_request(requests)).data.request_id

    await broker.respond(request_id, approve=False, decided_by="bob", reason="not today")
    outcome = await task

    assert (outcome.approved, outcome.decided_by, outcome.reason) == (False, "bob", "not today")
    denied = await next_event(decisions)
    assert isinstance(denied, PermissionDeniedEvent)
    assert (denied.data.decided_by, denied.data.reason) == ("bob", "not today")


async def test_only_the_waiting_call_is_suspended(
    broker: ApprovalBroker, requests: BusSubscription
) -> None:
    first, second = ask(broker, "file_write"), ask(broker, "git_commit")
    ids = {(await next_request(requests)).data.tool: None for _ in range(2)}
    pending = {r.tool: r.request_id for r in await broker.pending()}
    assert set(ids) == set(pending) == {"file_write", "git_commit"}

    await broker.respond(pending["git_commit"], approve=True)

    assert (await asyncio.wait_for(second, STUCK)).approved
    assert not first.done()
    await broker.respond(pending["file_write"], approve=True)
    await first


async def test_no_answer_in_time_is_a_refusal_by_timeout(
    broker: ApprovalBroker,
    requests: BusSubscription,
    decisions: BusSubscription,
    clock: ManualClock,
) -> None:
    task = ask(broker)
    request_id = (await next_request(requests)).data.request_id

    assert await broker.expire_due() == []  # not yet
    clock.advance(60)
    [expired] = await broker.expire_due()
    outcome = await task

    assert outcome == expired
    assert (outcome.approved, outcome.decided_by, outcome.timed_out) == (False, "timeout", True)
    denied = await next_event(decisions)
    assert isinstance(denied, PermissionDeniedEvent)
    assert denied.data.request_id == request_id
    assert denied.data.decided_by == "timeout"
    assert await broker.pending() == []


async def test_the_timer_expires_a_request_when_its_time_has_come(
    bus: InProcessEventBus, store: EventStore, requests: BusSubscription
) -> None:
    broker = ApprovalBroker(bus, store, timeout=0.05, clock=SystemClock())
    try:
        outcome = await asyncio.wait_for(
            broker.request("file_write", {}, scope(), "needs approval"), STUCK
        )
    finally:
        await broker.close()

    assert (outcome.approved, outcome.decided_by) == (False, "timeout")
    record = await broker.get(outcome.request_id)
    assert record.status == "denied"


async def test_answering_an_unknown_request_is_not_found(broker: ApprovalBroker) -> None:
    with pytest.raises(NotFoundError, match="no permission request 'perm_nope'"):
        await broker.respond("perm_nope", approve=True)


async def test_answering_twice_is_a_conflict_and_keeps_the_first_answer(
    broker: ApprovalBroker, requests: BusSubscription, store: EventStore
) -> None:
    task = ask(broker)
    request_id = (await next_request(requests)).data.request_id
    await broker.respond(request_id, approve=True, scope="session", decided_by="alice")
    await task

    with pytest.raises(ConflictError, match=r"already granted \(session\) by alice") as err:
        await broker.respond(request_id, approve=False, decided_by="bob")

    assert err.value.details["status"] == "granted"
    assert (await broker.get(request_id)).outcome.approved  # type: ignore[union-attr]
    decisions = EventFilter(types=frozenset({"permission_granted", "permission_denied"}))
    assert await store.count(decisions) == 1


async def test_answering_an_expired_request_is_a_conflict_and_the_expiry_is_recorded(
    broker: ApprovalBroker, requests: BusSubscription, clock: ManualClock
) -> None:
    task = ask(broker)
    request_id = (await next_request(requests)).data.request_id
    clock.advance(61)

    with pytest.raises(ConflictError, match=r"expired at .* without an answer"):
        await broker.respond(request_id, approve=True)

    assert (await task).decided_by == "timeout"
    with pytest.raises(ConflictError, match="expired"):
        await broker.respond(request_id, approve=True)


async def test_a_session_grant_needs_a_request_with_a_session(
    broker: ApprovalBroker, requests: BusSubscription
) -> None:
    task = asyncio.create_task(broker.request("file_write", {}, scope(None), None))
    request_id = (await next_request(requests)).data.request_id

    with pytest.raises(InvalidInputError, match="belongs to no session"):
        await broker.respond(request_id, approve=True, scope="session")

    await broker.respond(request_id, approve=True, scope="always")
    assert (await task).scope == "always"


async def test_an_unknown_grant_scope_is_refused(broker: ApprovalBroker) -> None:
    with pytest.raises(InvalidInputError, match="unknown grant scope"):
        await broker.respond("perm_x", approve=True, scope="forever")  # type: ignore[arg-type]


async def test_pending_lists_undecided_requests_by_session(
    broker: ApprovalBroker, requests: BusSubscription
) -> None:
    one = asyncio.create_task(broker.request("a", {}, scope("s1"), None))
    await next_request(requests)
    two = asyncio.create_task(broker.request("b", {}, scope("s2"), None))
    await next_request(requests)

    assert [r.tool for r in await broker.pending()] == ["a", "b"]
    [only] = await broker.pending("s2")
    assert (only.tool, only.session_id, only.user_id) == ("b", "s2", "alice")
    for request in await broker.pending():
        await broker.respond(request.request_id, approve=True)
    await asyncio.gather(one, two)
    assert await broker.pending() == []


async def test_a_cancelled_call_withdraws_its_request(
    broker: ApprovalBroker, requests: BusSubscription, decisions: BusSubscription
) -> None:
    task = ask(broker)
    request_id = (await next_request(requests)).data.request_id

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    denied = await next_event(decisions)
    assert isinstance(denied, PermissionDeniedEvent)
    assert (denied.data.request_id, denied.data.decided_by) == (request_id, "cancelled")
    assert await broker.pending() == []
    with pytest.raises(ConflictError, match="withdrawn"):
        await broker.respond(request_id, approve=True)


async def test_a_stopping_process_keeps_the_request_of_a_cut_call_pending_for_the_next(
    bus: InProcessEventBus,
    store: EventStore,
    clock: ManualClock,
    requests: BusSubscription,
    decisions: BusSubscription,
) -> None:
    broker = ApprovalBroker(bus, store, timeout=60, clock=clock)
    task = ask(broker)
    request_id = (await next_request(requests)).data.request_id

    assert broker.keep_pending() == ["run1"]  # the runs waiting for an answer now
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await broker.close()

    # The next process: the request is still pending, and the resumed call waits for it.
    later = ApprovalBroker(bus, store, timeout=60, clock=clock)
    assert [r.request_id for r in await later.pending()] == [request_id]
    waiting = asyncio.create_task(later.wait_for(request_id))
    await asyncio.sleep(0)
    await later.respond(request_id, approve=True, decided_by="alice")
    outcome = await waiting
    assert (outcome.approved, outcome.decided_by) == (True, "alice")
    assert isinstance(await next_event(decisions), PermissionGrantedEvent)  # nothing withdrawn
    assert (await later.wait_for(request_id)).approved  # a decided request answers at once
    with pytest.raises(NotFoundError):
        await later.wait_for("perm_nope")
    await later.close()


async def test_closing_the_broker_wakes_waiting_calls_and_leaves_requests_pending(
    bus: InProcessEventBus, store: EventStore, clock: ManualClock, requests: BusSubscription
) -> None:
    broker = ApprovalBroker(bus, store, timeout=60, clock=clock)
    task = ask(broker)
    await next_request(requests)

    await broker.close()

    with pytest.raises(ServiceUnavailableError):
        await task
    later = ApprovalBroker(bus, store, timeout=60, clock=clock)
    assert len(await later.pending()) == 1
    await later.close()


async def test_a_listener_hears_each_decision_before_the_caller_resumes(
    bus: InProcessEventBus, store: EventStore, clock: ManualClock, requests: BusSubscription
) -> None:
    heard: list[ApprovalOutcome] = []

    async def listen(outcome: ApprovalOutcome) -> None:
        heard.append(outcome)

    broker = ApprovalBroker(bus, store, clock=clock, on_decision=listen)
    task = ask(broker)
    request_id = (await next_request(requests)).data.request_id
    await broker.respond(request_id, approve=True, scope="always")

    assert heard == [await task]
    await broker.close()


# -- restarts -------------------------------------------------------------------------------


class Process:
    """One run of the program: its own event store and bus over the shared database."""

    def __init__(self, url: str, clock: ManualClock, timeout: float = 60) -> None:
        self.store = create_event_store(create_engine(url), owns_engine=True)
        self.bus = InProcessEventBus(self.store)
        self.broker = ApprovalBroker(self.bus, self.store, timeout=timeout, clock=clock)

    async def stop(self) -> None:
        await self.broker.close()
        await self.bus.close()
        await self.store.close()


async def _left_pending(url: str, clock: ManualClock) -> str:
    """Asks in a process that then stops before anyone answers; returns the request id."""
    first = Process(url, clock)
    sub = first.bus.subscribe(EventFilter(types=frozenset({"permission_request"})))
    task = asyncio.create_task(
        first.broker.request("file_write", {"path": "a"}, scope(), "needs approval")
    )
    request_id = (await next_request(sub)).data.request_id
    await first.stop()
    with pytest.raises(ServiceUnavailableError):
        await task
    return request_id


async def test_a_binding_is_recorded_with_the_request_and_read_back(
    broker: ApprovalBroker, requests: BusSubscription
) -> None:
    task = ask(broker, "shell_execute", binding="b1")

    event = await next_request(requests)
    [pending] = await broker.pending()

    assert event.data.binding == "b1"
    assert pending.binding == "b1"
    outcome = await broker.respond(event.data.request_id, approve=True, scope="session")
    assert outcome.request.binding == "b1"
    await task


async def test_a_request_outlives_a_restart_and_can_still_be_answered(
    sqlite_url: str, clock: ManualClock
) -> None:
    request_id = await _left_pending(sqlite_url, clock)
    second = Process(sqlite_url, clock)
    try:
        [pending] = await second.broker.pending()
        assert (pending.request_id, pending.tool, pending.arguments) == (
            request_id,
            "file_write",
            {"path": "a"},
        )

        outcome = await second.broker.respond(request_id, approve=True, decided_by="alice")

        assert outcome.approved
        assert await second.broker.pending() == []
        [granted] = await second.store.read_all(
            EventFilter(types=frozenset({"permission_granted"}))
        )
        assert isinstance(granted, PermissionGrantedEvent)
        assert (granted.data.request_id, granted.session_id) == (request_id, "s1")
    finally:
        await second.stop()


async def test_recover_expires_overdue_requests_and_times_the_rest(
    sqlite_url: str, clock: ManualClock
) -> None:
    overdue = await _left_pending(sqlite_url, clock)
    clock.advance(30)
    fresh = await _left_pending(sqlite_url, clock)
    clock.advance(40)  # the first is 70 s old (over 60), the second 40 s
    second = Process(sqlite_url, clock)
    try:
        [expired] = await second.broker.recover()

        assert (expired.request_id, expired.decided_by) == (overdue, "expired")
        assert [r.request_id for r in await second.broker.pending()] == [fresh]
        clock.advance(30)
        [later] = await second.broker.expire_due()
        assert (later.request_id, later.decided_by) == (fresh, "expired")
        denied = await second.store.read_all(EventFilter(types=frozenset({"permission_denied"})))
        assert [e.data.request_id for e in denied if isinstance(e, PermissionDeniedEvent)] == [
            overdue,
            fresh,
        ]
    finally:
        await second.stop()


async def test_a_request_decided_by_another_process_is_known_here(
    sqlite_url: str, clock: ManualClock
) -> None:
    a, b = Process(sqlite_url, clock), Process(sqlite_url, clock)
    try:
        sub = a.bus.subscribe(EventFilter(types=frozenset({"permission_request"})))
        task = asyncio.create_task(a.broker.request("file_write", {}, scope(), None))
        request_id = (await next_request(sub)).data.request_id

        await b.broker.respond(request_id, approve=False, decided_by="bob")
        clock.advance(60)
        assert await a.broker.expire_due() == []  # already decided: nothing to expire

        outcome = await asyncio.wait_for(task, STUCK)
        assert (outcome.approved, outcome.decided_by) == (False, "bob")
    finally:
        await a.stop()
        await b.stop()


async def test_requests_are_in_the_log_before_anyone_can_answer(
    broker: ApprovalBroker, requests: BusSubscription, store: EventStore
) -> None:
    task = ask(broker)
    event = await next_request(requests)

    stored = await store.read_all(EventFilter(types=frozenset({"permission_request"})))

    assert [e.id for e in stored] == [event.id]
    assert isinstance(stored[0], PermissionRequestEvent)
    await broker.respond(event.data.request_id, approve=True)
    await task
