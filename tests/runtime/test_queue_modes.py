"""One run at a time per session, and what happens to a message that arrives meanwhile:
``enqueue`` runs it next, ``steer`` hands it to the run in flight (or runs it next when the
run never gets to it), ``interrupt`` cancels the run in flight, ``reject`` refuses it."""

from __future__ import annotations

import asyncio

import pytest
from runtime_support import (
    BlockingModel,
    HarnessFactory,
    add,
    calling,
    echo,
    of_type,
    only,
    open_session,
    types,
)

from promptline.core.errors import SessionBusyError
from promptline.core.messages import Message
from promptline.models.types import ModelRequest
from promptline.runtime import Agent
from promptline.runtime.records import load_run
from promptline.sessions import Principal

ALICE = Principal(user_id="alice")


def run_events(events: list, run_id: str) -> list:  # type: ignore[type-arg]
    return [e for e in events if e.run_id == run_id]


async def test_enqueue_runs_the_second_message_after_the_first_with_its_history(
    make_session_runtime: HarnessFactory,
) -> None:
    model = BlockingModel(echo, blocking=[1])
    h = make_session_runtime(model)
    sid = await open_session(h)
    first = await h.runtime.start_run("one", session_id=sid, principal=ALICE)
    await model.entered.wait()

    second = await h.runtime.start_run("two", session_id=sid, principal=ALICE, queue_mode="enqueue")

    assert second is not first
    assert {r.id for r in h.runtime.active} == {first.id, second.id}
    # Waiting for its outcome does not start it out of turn.
    outcome = asyncio.create_task(second.result())
    await asyncio.sleep(0)
    assert second.task is None
    model.release.set()
    one, two = await first.result(), await outcome

    assert (one.text, two.text) == ("answer to one", "answer to two")
    seen = [(m.role, m.text) for m in model.requests[1].messages[1:]]
    assert seen == [("user", "one"), ("assistant", "answer to one"), ("user", "two")]
    events = await h.events(sid)
    kinds = [(e.type, e.run_id) for e in events if e.type in ("run_started", "run_completed")]
    assert kinds == [
        ("run_started", first.id),
        ("run_completed", first.id),
        ("run_started", second.id),
        ("run_completed", second.id),
    ]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


async def test_steer_adds_the_message_to_the_run_in_flight_at_its_next_model_call(
    make_session_runtime: HarnessFactory,
) -> None:
    def reply(request: ModelRequest) -> Message | str:
        if request.messages[-1].role == "user" and request.messages[-1].text == "add 1 and 2":
            return calling("add", {"a": 1, "b": 2}, call_id="call_add")
        return echo(request)

    model = BlockingModel(reply, blocking=[1])
    h = make_session_runtime(model, [add])
    sid = await open_session(h)
    run = await h.runtime.start_run("add 1 and 2", session_id=sid, principal=ALICE)
    await model.entered.wait()

    joined = await h.runtime.start_run(
        "and say it in words", session_id=sid, principal=ALICE, queue_mode="steer"
    )

    assert joined is run
    model.release.set()
    result = await run.result()

    assert result.ok, result.error
    assert result.text == "answer to and say it in words"
    # The steered message comes after the tool's result: a tool call and its result are
    # never split by another message.
    second = model.requests[1].messages
    assert [(m.role, m.text) for m in second[1:]] == [
        ("user", "add 1 and 2"),
        ("assistant", ""),
        ("tool", "3"),
        ("user", "and say it in words"),
    ]
    events = await h.events(sid)
    assert len(of_type(events, "run_started")) == 1
    first, steered = of_type(events, "message_received")
    assert [first.data.message.text, steered.data.message.text] == [
        "add 1 and 2",
        "and say it in words",
    ]
    # The steered message was queued as a run of its own, which joined the run in flight
    # (and so never started): the log says when and where.
    joined_by = only(events, "run_steered")
    assert joined_by.run_id == steered.run_id != run.id
    assert (joined_by.data.into, joined_by.data.message_id) == (run.id, steered.id)
    assert only(run_events(events, steered.run_id), "run_queued").data.steer_into == run.id
    assert (await load_run(h.store, steered.run_id)).status == "steered"
    # The session's history reads in the order the model saw it.
    history = (await h.sessions.get(sid, ALICE)).history  # type: ignore[union-attr]
    assert [(m.role, m.text) for m in history] == [
        ("user", "add 1 and 2"),
        ("assistant", ""),
        ("tool", "3"),
        ("user", "and say it in words"),
        ("assistant", "answer to and say it in words"),
    ]
    assert h.runtime.active == []


async def test_a_steered_message_the_run_never_reached_runs_next(
    make_session_runtime: HarnessFactory,
) -> None:
    model = BlockingModel(echo, blocking=[1])
    h = make_session_runtime(model)
    sid = await open_session(h)
    run = await h.runtime.start_run("one", session_id=sid, principal=ALICE)
    await model.entered.wait()

    joined = await h.runtime.start_run("P.S.", session_id=sid, principal=ALICE, queue_mode="steer")
    model.release.set()
    result = await run.result()

    assert joined is run
    assert result.text == "answer to one"  # the answer was on its way: no safe point left
    follow = await h.wait_for(lambda e: e.type == "run_completed" and e.run_id != run.id)
    assert follow.data.output.text == "answer to P.S."
    events = await h.events(sid)
    started = only(run_events(events, follow.run_id), "run_started")
    assert started.data.input.text == "P.S."
    received = [e.data.message.text for e in of_type(events, "message_received")]
    assert received == ["one", "P.S."]  # recorded once, never dropped
    seen = [(m.role, m.text) for m in model.requests[1].messages[1:]]
    assert seen == [("user", "one"), ("assistant", "answer to one"), ("user", "P.S.")]


async def test_interrupt_cancels_the_run_in_flight_and_runs_the_new_message(
    make_session_runtime: HarnessFactory,
) -> None:
    model = BlockingModel(echo, blocking=[1])
    h = make_session_runtime(model)
    sid = await open_session(h)
    first = await h.runtime.start_run("one", session_id=sid, principal=ALICE)
    await model.entered.wait()

    second = await h.runtime.start_run(
        "never mind, two", session_id=sid, principal=ALICE, queue_mode="interrupt"
    )
    one, two = await first.result(), await second.result()

    assert one.status == "cancelled"
    assert two.ok
    assert two.text == "answer to never mind, two"
    events = await h.events(sid)
    cancelled = only(run_events(events, first.id), "run_cancelled").data
    assert cancelled.reason == "interrupted by a new message"
    assert cancelled.cancelled_by == "queue"
    ends = [(e.type, e.run_id) for e in events if e.type.startswith("run_")]
    assert ends == [
        ("run_queued", first.id),
        ("run_started", first.id),
        ("run_queued", second.id),
        ("run_cancelled", first.id),
        ("run_started", second.id),
        ("run_completed", second.id),
    ]
    assert only(run_events(events, second.id), "run_queued").data.interrupts == first.id
    # The interrupted question stays in the history the new run sees.
    seen = [(m.role, m.text) for m in model.requests[-1].messages[1:]]
    assert seen == [("user", "one"), ("user", "never mind, two")]


async def test_reject_refuses_a_message_for_a_busy_session_and_records_nothing(
    make_session_runtime: HarnessFactory,
) -> None:
    model = BlockingModel(echo, blocking=[1])
    h = make_session_runtime(model, agents=[Agent(name="assistant", queue_mode="reject")])
    sid = await open_session(h)
    first = await h.runtime.start_run("one", session_id=sid, principal=ALICE)
    await model.entered.wait()
    before = await h.events(sid)

    with pytest.raises(SessionBusyError) as refused:
        await h.runtime.start_run("two", session_id=sid, principal=ALICE)

    assert refused.value.details == {"session_id": sid, "run_id": first.id}
    assert refused.value.code == "session_busy"
    assert [r.id for r in h.runtime.active] == [first.id]
    model.release.set()
    assert (await first.result()).text == "answer to one"
    events = await h.events(sid)
    assert types(events[: len(before)]) == types(before)
    assert [e.data.message.text for e in of_type(events, "message_received")] == ["one"]
    assert len(of_type(events, "run_started")) == 1
    # Once the session is free, the same message is taken.
    again = await h.runtime.run("two", session_id=sid, principal=ALICE)
    assert again.text == "answer to two"


async def test_a_queued_run_cancelled_before_its_turn_ends_without_a_model_call(
    make_session_runtime: HarnessFactory,
) -> None:
    model = BlockingModel(echo, blocking=[1])
    h = make_session_runtime(model)
    sid = await open_session(h)
    first = await h.runtime.start_run("one", session_id=sid, principal=ALICE)
    await model.entered.wait()
    queued = await h.runtime.start_run("two", session_id=sid, principal=ALICE)

    assert queued.cancel("not needed any more")
    model.release.set()
    one, two = await first.result(), await queued.result()

    assert one.ok
    assert two.status == "cancelled"
    events = run_events(await h.events(sid), queued.id)
    assert only(events, "run_cancelled").data.reason == "not needed any more"
    assert of_type(events, "llm_command") == []
    assert len(model.requests) == 1
