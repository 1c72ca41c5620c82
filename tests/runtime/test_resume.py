"""Runs in flight when the process died, resumed by the next one from their last recorded step:
which tool calls run again, what the model is told of the others, what queued messages meant
to do to them, and when a run is given up. The crash is what SIGKILL leaves (`Harness.crash`:
nothing more of the runs is written); the next process is a new runtime over the same log."""

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
    Stuck,
    calling,
    calls_then_answers,
    of_type,
    only,
)

from promptline.core.events import Event
from promptline.core.messages import Message
from promptline.models.types import ModelRequest
from promptline.runtime import Agent
from promptline.runtime.records import load_run
from promptline.sessions import Principal
from promptline.tools.function import tool

ALICE = Principal(user_id="alice")


def echo(request: ModelRequest) -> str:
    users = [m.text for m in request.messages if m.role == "user"]
    return f"answer to {' + '.join(users[-2:]) if len(users) > 1 else users[-1]}"


async def test_an_idempotent_call_cut_short_by_a_crash_runs_again(
    make_runtime: HarnessFactory,
) -> None:
    stuck = Stuck()
    h = make_runtime(calls_then_answers("lookup"), stuck.tools)
    run = await h.runtime.start_run("look it up")
    await stuck.entered.wait()
    h.crash()

    again = h.restarted(calls_then_answers("lookup"), stuck.tools)
    assert (await again.runtime.recover())["resumed"] == [run.id]
    stuck.open.set()
    record = await again.runtime.wait(run.id)

    assert (record.status, record.output) == ("completed", "after lookup: lookup done")
    assert stuck.calls["lookup"] == 2
    assert [
        e.data.result.metadata["outcome"] for e in of_type(await h.events(run.id), "tool_result")
    ] == ["ok"]


async def test_a_call_that_may_have_taken_effect_is_not_repeated_and_the_model_is_told(
    make_runtime: HarnessFactory,
) -> None:
    stuck = Stuck()
    h = make_runtime(calls_then_answers("charge"), stuck.tools)
    run = await h.runtime.start_run("charge it")
    await stuck.entered.wait()
    h.crash()

    model = calls_then_answers("charge")
    again = h.restarted(model, stuck.tools)
    await again.runtime.recover()
    record = await again.runtime.wait(run.id)

    assert stuck.calls["charge"] == 1
    assert record.status == "completed"
    assert "interrupted by a restart" in record.output
    assert "whether it took effect is unknown" in record.output
    events = await h.events(run.id)
    [result] = of_type(events, "tool_result")
    assert result.data.result.metadata["outcome"] == "interrupted"
    assert only(events, "run_resumed").data.attempt == 1


async def test_an_agent_with_on_crash_interrupt_is_not_resumed_and_its_calls_are_answered(
    make_session_runtime: HarnessFactory,
) -> None:
    stuck = Stuck()
    agent = Agent(name="assistant", model="script", on_crash="interrupt")
    h = make_session_runtime(calls_then_answers("charge"), stuck.tools, agents=[agent])
    assert h.sessions is not None
    sid = (await h.sessions.create(ALICE, channel="cli")).id
    run = await h.runtime.start_run("charge it", session_id=sid, principal=ALICE)
    await stuck.entered.wait()
    h.crash()

    again = h.restarted(FakeModel(echo), stuck.tools, agents=[agent])
    done = await again.runtime.recover()

    assert done["interrupted"] == [run.id]
    record = await load_run(h.store, run.id)
    assert (record.status, record.cancelled_by) == ("interrupted", "recovery")
    assert stuck.calls["charge"] == 1
    # The next run's conversation has an answer for the open call (FakeModel refuses one
    # without, as providers do).
    after = await again.runtime.run("and now?", session_id=sid, principal=ALICE)
    assert after.ok, after.error


async def test_a_run_resumed_three_times_without_progress_is_given_up(
    make_runtime: HarnessFactory,
) -> None:
    model = BlockingModel()  # every call hangs: no resumption gets further
    h = make_runtime(model)
    run = await h.runtime.start_run("hello")
    await model.entered.wait()
    current: Harness = h
    for attempt in (1, 2, 3):
        current.crash()
        model.entered.clear()
        current = h.restarted(model)
        assert (await current.runtime.recover())["resumed"] == [run.id]
        await model.entered.wait()
        events = await h.events(run.id)
        assert [e.data.attempt for e in of_type(events, "run_resumed")][-1] == attempt
    current.crash()

    last = h.restarted(model)
    done = await last.runtime.recover()

    assert done["failed"] == [run.id]
    record = await load_run(h.store, run.id)
    assert record.status == "failed"
    assert record.error is not None
    assert record.error["code"] == "run_abandoned"
    assert "resumed 3 times" in record.error["message"]


async def test_progress_between_crashes_resets_the_count(make_runtime: HarnessFactory) -> None:
    @tool(name="lookup", read_only=True, inline=True)
    def lookup() -> str:
        """Look something up."""
        return "found"

    hang_at = 1
    hanging = asyncio.Event()

    async def reply(request: ModelRequest) -> Message | str:
        results = sum(1 for m in request.messages if m.role == "tool")
        if results >= 5:
            return "finished"
        if results >= hang_at:  # the process dies in this call
            hanging.set()
            await asyncio.Event().wait()
        return calling("lookup", call_id=f"call_{results}")

    h = make_runtime(FakeModel(reply), [lookup])
    run = await h.runtime.start_run("go")
    current: Harness = h
    for _ in range(4):  # each time, a model answer and a tool result before the crash...
        await hanging.wait()
        hanging.clear()
        current.crash()
        hang_at += 1
        current = h.restarted(FakeModel(reply), [lookup])
        assert (await current.runtime.recover())["resumed"] == [run.id]

    record = await current.runtime.wait(run.id)
    assert (record.status, record.output) == ("completed", "finished")  # ...so never given up
    assert record.resumed == 4
    attempts = [e.data.attempt for e in of_type(await h.events(run.id), "run_resumed")]
    assert attempts == [1, 1, 1, 1]


async def test_a_message_steered_into_a_run_at_a_crash_joins_it_when_it_resumes(
    make_session_runtime: HarnessFactory,
) -> None:
    model = BlockingModel(echo, blocking=[1])
    h = make_session_runtime(model)
    assert h.sessions is not None
    sid = (await h.sessions.create(ALICE, channel="cli")).id
    run = await h.runtime.start_run("one", session_id=sid, principal=ALICE)
    await model.entered.wait()
    steered = await h.runtime.submit("P.S.", session_id=sid, principal=ALICE, queue_mode="steer")
    h.crash()

    again = h.restarted(FakeModel(echo))
    done = await again.runtime.recover()
    record = await again.runtime.wait(run.id)

    assert (done["resumed"], done["queued"]) == ([run.id], [steered.run_id])
    assert record.output == "answer to one + P.S."
    assert (await load_run(h.store, steered.run_id)).status == "steered"


async def test_an_interrupt_queued_at_a_crash_cancels_the_run_it_meant_to_interrupt(
    make_session_runtime: HarnessFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = BlockingModel(echo, blocking=[1])
    h = make_session_runtime(model)
    assert h.sessions is not None
    sid = (await h.sessions.create(ALICE, channel="cli")).id
    run = await h.runtime.start_run("one", session_id=sid, principal=ALICE)
    await model.entered.wait()
    # The process dies the moment the interrupting message is on the record, before the
    # cancel it asks for is.
    original = h.bus.publish_batch

    async def then_die(events: Sequence[Event], **options: Any) -> list[Event]:
        stored = await original(events, **options)
        if any(e.type == "run_queued" for e in events):
            h.crash()
        return stored

    monkeypatch.setattr(h.bus, "publish_batch", then_die)
    second = await h.runtime.submit(
        "never mind", session_id=sid, principal=ALICE, queue_mode="interrupt"
    )
    monkeypatch.undo()
    assert of_type(await h.events(sid), "run_cancelled") == []

    again = h.restarted(FakeModel(echo))
    done = await again.runtime.recover()
    answer = await again.runtime.wait(second.run_id)

    assert (done["interrupted"], done["queued"]) == ([run.id], [second.run_id])
    cancelled = await load_run(h.store, run.id)
    assert (cancelled.status, cancelled.cancelled_by) == ("cancelled", "queue")
    assert answer.output == "answer to one + never mind"


async def test_a_run_without_a_session_resumes_with_the_history_its_request_gave(
    make_runtime: HarnessFactory,
) -> None:
    model = BlockingModel(blocking=[1])
    h = make_runtime(model)
    history = [
        Message(role="user", content="my name is Ada"),
        Message(role="assistant", content="Hello Ada"),
    ]
    run = await h.runtime.start_run("what is my name?", history=history)
    await model.entered.wait()
    h.crash()

    seen: list[list[str]] = []

    def reply(request: ModelRequest) -> str:
        seen.append([m.text for m in request.messages if m.role != "system"])
        return "Ada"

    again = h.restarted(FakeModel(reply))
    await again.runtime.recover()
    record = await again.runtime.wait(run.id)

    assert record.output == "Ada"
    assert seen == [["my name is Ada", "Hello Ada", "what is my name?"]]
