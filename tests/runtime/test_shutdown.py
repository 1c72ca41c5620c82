"""Graceful shutdown: runs in flight stop at a safe point (or where they are when the grace runs
out) and are left unfinished in the log, exactly as a crash would leave them, with what they
completed written; queued runs stay queued. The next start resumes them all, in order, and
no new message is taken meanwhile."""

from __future__ import annotations

import asyncio

import pytest
from runtime_support import BlockingModel, FakeModel, Gate, HarnessFactory, of_type, scripted

from promptline.core.errors import ServiceUnavailableError
from promptline.runtime.records import load_run
from promptline.sessions import Principal

ALICE = Principal(user_id="alice")

ENDINGS = ("run_completed", "run_failed", "run_cancelled")


async def test_a_run_blocked_in_a_model_call_is_left_and_calls_the_model_again_after_the_restart(
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
    assert result.error is not None
    assert result.error.code == "run_interrupted"
    events = await h.events(run.id)
    assert [e for e in events if e.type in ENDINGS] == []  # left, not ended
    assert (await load_run(h.store, run.id)).status == "running"
    with pytest.raises(ServiceUnavailableError, match="shutting down"):
        await h.runtime.start_run("anyone there?")
    assert h.runtime.active == []

    again = h.restarted(FakeModel(lambda request: "hello to you"))
    assert (await again.runtime.recover())["resumed"] == [run.id]
    record = await again.runtime.wait(run.id)

    assert (record.status, record.output, record.resumed) == ("completed", "hello to you", 1)
    events = await h.events(run.id)
    assert len(of_type(events, "llm_command")) == 2  # the cut-short call, then the answer
    assert len(of_type(events, "llm_result")) == 1
    assert len(of_type(events, "run_completed")) == 1


async def test_a_run_reaching_a_safe_point_within_the_grace_keeps_its_tool_result(
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
    [tool_result] = of_type(events, "tool_result")
    assert tool_result.data.result.metadata["outcome"] == "ok"
    assert len(of_type(events, "llm_command")) == 1
    assert [e for e in events if e.type in ENDINGS] == []

    again = h.restarted(model, [gate.tool])
    await again.runtime.recover()
    record = await again.runtime.wait(run.id)

    assert (record.status, record.output) == ("completed", "late")
    assert gate.calls == 1  # the recorded result was used, the tool did not run again


async def test_runs_waiting_their_turn_at_shutdown_stay_queued_and_run_in_order_after_it(
    make_session_runtime: HarnessFactory,
) -> None:
    model = BlockingModel(blocking=[1])
    h = make_session_runtime(model)
    assert h.sessions is not None
    sid = (await h.sessions.create(ALICE, channel="cli")).id
    first = await h.runtime.start_run("one", session_id=sid, principal=ALICE)
    await model.entered.wait()
    second = await h.runtime.start_run("two", session_id=sid, principal=ALICE)
    third = await h.runtime.start_run("three", session_id=sid, principal=ALICE)

    stopped = await h.runtime.shutdown(grace=0)

    assert set(stopped) == {first.id, second.id, third.id}
    for run in (first, second, third):
        assert (await run.result()).status == "interrupted"
    assert model.calls == 1
    events = await h.events(sid)
    assert [e for e in events if e.type in ENDINGS] == []
    assert [e.run_id for e in of_type(events, "run_started")] == [first.id]
    assert (await load_run(h.store, second.id)).status == "queued"

    def echo(request: object) -> str:
        users = [m.text for m in request.messages if m.role == "user"]  # type: ignore[attr-defined]
        return f"answer to {users[-1]}"

    again = h.restarted(FakeModel(echo))
    done = await again.runtime.recover()
    assert (done["resumed"], done["queued"]) == ([first.id], [second.id, third.id])
    for run in (first, second, third):
        await again.runtime.wait(run.id)

    events = await h.events(sid)
    assert [(e.type, e.run_id) for e in events if e.type in ("run_started", *ENDINGS)] == [
        ("run_started", first.id),
        ("run_completed", first.id),
        ("run_started", second.id),
        ("run_completed", second.id),
        ("run_started", third.id),
        ("run_completed", third.id),
    ]
    history = (await h.sessions.get(sid, ALICE)).history
    assert [(m.role, m.text) for m in history] == [
        ("user", "one"),
        ("assistant", "answer to one"),
        ("user", "two"),
        ("assistant", "answer to two"),
        ("user", "three"),
        ("assistant", "answer to three"),
    ]
