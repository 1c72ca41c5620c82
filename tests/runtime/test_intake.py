"""Durable intake: a message is acknowledged once it and the run answering it are in the log;
the hand-over from one run of a session to the next is one step, whatever the interleaving;
a retry with an idempotency key gets the first answer back and creates nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from runtime_support import (
    BlockingModel,
    FakeModel,
    Harness,
    HarnessFactory,
    echo,
    of_type,
    open_session,
)

from promptline.core.errors import ConflictError, InvalidInputError
from promptline.core.events import Event
from promptline.runtime.ingress import IdempotencyKeyReusedError
from promptline.runtime.records import load_run
from promptline.sessions import Principal

ALICE = Principal(user_id="alice")
BOB = Principal(user_id="bob")


class HeldIntake:
    """Holds the next write of a message (its ``run_queued``) at the event bus until
    released: the point between the intake's look at the session's lane and its write."""

    def __init__(self, h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        original = h.bus.publish_batch

        async def publish_batch(events: Sequence[Event], **options: Any) -> list[Event]:
            if not self.held.is_set() and any(e.type == "run_queued" for e in events):
                self.held.set()
                await self.release.wait()
            return await original(events, **options)

        monkeypatch.setattr(h.bus, "publish_batch", publish_batch)


async def test_the_message_is_on_the_record_with_its_run_when_it_is_acknowledged(
    make_session_runtime: HarnessFactory,
) -> None:
    model = BlockingModel(echo, blocking=[1])
    h = make_session_runtime(model)
    sid = await open_session(h)
    first = await h.runtime.submit("one", session_id=sid, principal=ALICE)
    await model.entered.wait()

    second = await h.runtime.submit("two", session_id=sid, principal=ALICE)

    # Nothing of the second run has happened yet, but both are in the log.
    assert (first.position, second.position) == (0, 1)
    events = await h.events(sid)
    received = [e for e in of_type(events, "message_received") if e.run_id == second.run_id]
    [queued] = [e for e in of_type(events, "run_queued") if e.run_id == second.run_id]
    assert [e.data.message.text for e in received] == ["two"]
    assert received[0].seq == second.seq
    assert queued.seq == second.seq + 1
    assert queued.data.message_id == received[0].id
    assert (await load_run(h.store, second.run_id)).status == "queued"
    assert h.runtime.queued(sid) == [first.run_id, second.run_id]
    model.release.set()
    assert (await h.runtime.wait(second.run_id)).output == "answer to two"


async def test_a_message_taken_while_the_run_before_it_ends_still_runs(
    make_session_runtime: HarnessFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = BlockingModel(echo, blocking=[1])
    h = make_session_runtime(model)
    sid = await open_session(h)
    first = await h.runtime.start_run("one", session_id=sid, principal=ALICE)
    await model.entered.wait()
    intake = HeldIntake(h, monkeypatch)

    sending = asyncio.create_task(h.runtime.start_run("two", session_id=sid, principal=ALICE))
    await intake.held.wait()  # the intake saw the session busy, and is writing
    model.release.set()
    assert (await first.result()).ok  # the first run ends meanwhile...
    assert h.runtime.queued(sid) == []  # ...and its session has nothing in flight
    intake.release.set()
    second = await sending

    result = await asyncio.wait_for(second.result(), timeout=10)
    assert (result.status, result.text) == ("completed", "answer to two")
    assert h.runtime.queued(sid) == []


async def test_messages_sent_the_moment_each_run_completes_all_run_in_order(
    make_session_runtime: HarnessFactory,
) -> None:
    h = make_session_runtime(FakeModel(echo))
    sid = await open_session(h)
    ended = h.bus.subscribe()
    await h.runtime.submit("message 0", session_id=sid, principal=ALICE)
    sent = [f"message {i}" for i in range(1, 20)]
    for text in sent:
        async for event in ended:  # the client sees run_completed and sends at once
            if event.type == "run_completed":
                break
        await h.runtime.submit(text, session_id=sid, principal=ALICE)
    last = await h.runtime.submit("the end", session_id=sid, principal=ALICE)
    sent.append("the end")
    await h.runtime.wait(last.run_id)
    await ended.close()

    assert h.sessions is not None
    history = (await h.sessions.get(sid, ALICE)).history
    assert [m.text for m in history if m.role == "user"] == ["message 0", *sent]
    assert [m.text for m in history if m.role == "assistant"] == [
        f"answer to {text}" for text in ["message 0", *sent]
    ]


async def test_a_retry_with_the_same_key_gets_the_first_answer_and_creates_nothing(
    make_session_runtime: HarnessFactory,
) -> None:
    h = make_session_runtime(FakeModel(echo))
    sid = await open_session(h)

    first = await h.runtime.submit("hello", session_id=sid, principal=ALICE, idempotency_key="k1")
    await h.runtime.wait(first.run_id)
    before = await h.events(sid)
    again = await h.runtime.submit("hello", session_id=sid, principal=ALICE, idempotency_key="k1")

    assert again.replayed
    assert not first.replayed
    assert (again.run_id, again.seq, again.position) == (first.run_id, first.seq, first.position)
    assert await h.events(sid) == before  # nothing new in the log
    # Another user's key of the same name is another message.
    other = await open_session(h, BOB)
    bobs = await h.runtime.submit("hello", session_id=other, principal=BOB, idempotency_key="k1")
    assert bobs.run_id != first.run_id
    assert not bobs.replayed


async def test_a_key_reused_for_another_message_is_refused_and_nothing_is_stored(
    make_session_runtime: HarnessFactory,
) -> None:
    h = make_session_runtime(FakeModel(echo))
    sid = await open_session(h)
    first = await h.runtime.submit("hello", session_id=sid, principal=ALICE, idempotency_key="k")
    await h.runtime.wait(first.run_id)
    before = await h.events(sid)

    with pytest.raises(IdempotencyKeyReusedError) as refused:
        await h.runtime.submit("goodbye", session_id=sid, principal=ALICE, idempotency_key="k")

    assert refused.value.code == "idempotency_key_reused"
    assert refused.value.details["run_id"] == first.run_id
    assert await h.events(sid) == before


async def test_two_concurrent_sends_with_one_key_make_one_run(
    make_session_runtime: HarnessFactory,
) -> None:
    h = make_session_runtime(FakeModel(echo))
    sid = await open_session(h)

    answers = await asyncio.gather(
        *(
            h.runtime.submit("once", session_id=sid, principal=ALICE, idempotency_key="same")
            for _ in range(5)
        )
    )

    assert len({a.run_id for a in answers}) == 1
    assert sum(not a.replayed for a in answers) == 1
    await h.runtime.wait(answers[0].run_id)
    events = await h.events(sid)
    assert len(of_type(events, "run_queued")) == 1
    assert len(of_type(events, "run_completed")) == 1


async def test_the_same_key_from_another_process_is_caught_by_the_log(
    make_session_runtime: HarnessFactory,
) -> None:
    model = FakeModel(echo)
    h = make_session_runtime(model)
    sid = await open_session(h)
    other = h.restarted(model)  # a second process on the same database

    first = await h.runtime.submit("hi", session_id=sid, principal=ALICE, idempotency_key="x")
    again = await other.runtime.submit("hi", session_id=sid, principal=ALICE, idempotency_key="x")

    assert again.replayed
    assert again.run_id == first.run_id
    assert again.run is None  # it runs in the first process
    assert (await other.runtime.wait(first.run_id)).status == "completed"


@pytest.mark.parametrize("key", ["", "x" * 256, "a\x00b", 42])
async def test_an_unusable_idempotency_key_is_refused(
    make_session_runtime: HarnessFactory, key: Any
) -> None:
    h = make_session_runtime(FakeModel(echo))
    sid = await open_session(h)
    with pytest.raises(InvalidInputError, match="idempotency key"):
        await h.runtime.submit("hi", session_id=sid, principal=ALICE, idempotency_key=key)
    assert of_type(await h.events(sid), "run_queued") == []


async def test_an_expired_session_takes_no_message(
    make_session_runtime: HarnessFactory,
) -> None:
    from datetime import UTC, datetime, timedelta

    h = make_session_runtime(FakeModel(echo))
    sid = await open_session(h)
    assert h.sessions is not None
    # Its expiry time is past, but no sweep has recorded it as expired yet.
    await h.sessions.update(sid, ALICE, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert (await h.sessions.get(sid, ALICE)).status == "expired"
    assert of_type(await h.events(sid), "session_expired") == []

    with pytest.raises(ConflictError, match="expired"):
        await h.runtime.submit("hi", session_id=sid, principal=ALICE)
    assert of_type(await h.events(sid), "run_queued") == []
