"""Graceful shutdown: runs in flight stop at a safe point, or are cancelled when the grace
runs out; either way they are recorded as interrupted by the shutdown, and no new run is
taken."""

from __future__ import annotations

import asyncio

import pytest
from runtime_support import BlockingModel, Gate, HarnessFactory, of_type, only, scripted, states

from promptline.core.errors import SessionBusyError
from promptline.sessions import Principal

ALICE = Principal(user_id="alice")


async def test_a_run_blocked_in_a_model_call_is_interrupted_when_the_grace_runs_out(
    make_runtime: HarnessFactory,
) -> None:
    model = BlockingModel()  # never released
    h = make_runtime(model)
    run = await h.runtime.start_run("hello")
    await model.entered.wait()

    stopped = await h.runtime.shutdown(grace=0)
    result = await run.result()

    assert stopped == [run.id]
    assert result.status == "interrupted"
    events = await h.events(run.id)
    cancelled = only(events, "run_cancelled").data
    assert cancelled.cancelled_by == "shutdown"
    assert cancelled.reason == "interrupted: shutdown timeout"
    assert states(events)[-2:] == ["stopping", "stopped"]
    assert of_type(events, "llm_result") == []
    with pytest.raises(SessionBusyError, match="shutting down"):
        await h.runtime.start_run("anyone there?")
    assert h.runtime.active == []


async def test_a_run_reaching_a_safe_point_within_the_grace_stops_there(
    make_runtime: HarnessFactory,
) -> None:
    gate = Gate()
    model = scripted([{"tool_calls": [{"name": "wait_here", "arguments": {}}]}, {"reply": "late"}])
    h = make_runtime(model, [gate.tool])
    run = await h.runtime.start_run("wait")
    await gate.entered.wait()

    shutdown = asyncio.create_task(h.runtime.shutdown(grace=30))
    await asyncio.sleep(0)  # let it ask the run to stop
    gate.open.set()
    stopped = await shutdown
    result = await run.result()

    assert stopped == [run.id]
    assert result.status == "interrupted"
    events = await h.events(run.id)
    # The tool call finished and is on the record; no model call followed it.
    assert only(events, "tool_result").data.result.metadata["outcome"] == "ok"
    assert len(of_type(events, "llm_command")) == 1
    cancelled = only(events, "run_cancelled").data
    assert cancelled.cancelled_by == "shutdown"
    assert cancelled.reason == "interrupted: the process is shutting down"
    assert states(events)[-2:] == ["stopping", "stopped"]


async def test_a_run_waiting_its_turn_at_shutdown_is_recorded_without_a_model_call(
    make_session_runtime: HarnessFactory,
) -> None:
    model = BlockingModel(blocking=[1])
    h = make_session_runtime(model)
    assert h.sessions is not None
    sid = (await h.sessions.create(ALICE, channel="cli")).id
    first = await h.runtime.start_run("one", session_id=sid, principal=ALICE)
    await model.entered.wait()
    waiting = await h.runtime.start_run("two", session_id=sid, principal=ALICE)

    stopped = await h.runtime.shutdown(grace=0)

    assert set(stopped) == {first.id, waiting.id}
    assert (await first.result()).status == "interrupted"
    assert (await waiting.result()).status == "interrupted"
    assert model.calls == 1
    events = await h.events(sid)
    for run in (first, waiting):
        mine = [e for e in events if e.run_id == run.id]
        assert only(mine, "run_cancelled").data.cancelled_by == "shutdown"
        assert states(mine)[-1] == "stopped"
    # The waiting message is on the record, so it is not lost.
    assert [e.data.message.text for e in of_type(events, "message_received")] == ["one", "two"]
