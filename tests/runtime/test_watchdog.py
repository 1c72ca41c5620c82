"""The watchdog: a run without progress for ``watchdog_secs`` is cancelled; one that does not
end when cancelled is recorded as wedged and its session is given to the next run."""

from __future__ import annotations

import asyncio
import time

import pytest
from runtime_support import (
    BlockingModel,
    Gate,
    HarnessFactory,
    moved_to,
    of_type,
    only,
    scripted,
    states,
)

from promptline.core.errors import NotFoundError
from promptline.models.types import ModelRequest
from promptline.runtime.records import load_run
from promptline.sessions import Principal

ALICE = Principal(user_id="alice")
WATCHDOG = {"watchdog_secs": 60.0}


def echo(request: ModelRequest) -> str:
    return f"answer to {request.messages[-1].text}"


async def test_a_run_without_progress_is_cancelled_by_the_watchdog(
    make_runtime: HarnessFactory,
) -> None:
    model = BlockingModel(echo)
    h = make_runtime(model, runtime_options=WATCHDOG)
    run = await h.runtime.start_run("hello")
    await model.entered.wait()

    assert await h.runtime.check_watchdog() == []  # it has only just started
    acted = await h.runtime.check_watchdog(now=time.monotonic() + 61)
    result = await run.result()

    assert acted == [run.id]
    assert result.status == "cancelled"
    events = await h.events(run.id)
    cancelled = only(events, "run_cancelled").data
    assert cancelled.cancelled_by == "watchdog"
    assert cancelled.reason.startswith("watchdog: no progress for ")
    assert states(events)[-2:] == ["stopping", "stopped"]
    assert of_type(events, "llm_result") == []


async def test_a_paused_run_is_left_alone_by_the_watchdog(make_runtime: HarnessFactory) -> None:
    gate = Gate()
    model = scripted(
        [{"tool_calls": [{"name": "wait_here", "arguments": {}}]}, {"reply": "finished"}]
    )
    h = make_runtime(model, [gate.tool], runtime_options=WATCHDOG)
    run = await h.runtime.start_run("wait")
    await gate.entered.wait()
    run.pause()
    gate.open.set()
    await h.wait_for(moved_to("paused", run.id))

    assert await h.runtime.check_watchdog(now=time.monotonic() + 3600) == []

    run.resume()
    assert (await run.result()).text == "finished"


async def test_a_run_that_ignores_cancellation_is_recorded_wedged_and_its_session_freed(
    make_session_runtime: HarnessFactory,
) -> None:
    model = BlockingModel(echo, blocking=[1], swallow_cancel=True)
    h = make_session_runtime(model, runtime_options=WATCHDOG)
    assert h.sessions is not None
    sid = (await h.sessions.create(ALICE, channel="cli")).id
    wedged = await h.runtime.start_run("one", session_id=sid, principal=ALICE)
    await model.entered.wait()
    waiting = await h.runtime.start_run("two", session_id=sid, principal=ALICE)
    start = time.monotonic()

    # First look: the run is cancelled, and the model call swallows the cancellation.
    assert await h.runtime.check_watchdog(now=start + 61) == [wedged.id]
    await model.swallowed.wait()
    assert not wedged.done
    assert h.runtime.busy(sid)
    # Second look, still no progress: the run is given up on.
    assert await h.runtime.check_watchdog(now=start + 61 + 61) == [wedged.id]

    second = await waiting.result()

    assert second.ok
    assert second.text == "answer to two"
    assert not wedged.done  # it is still stuck; only its session was taken from it
    with pytest.raises(NotFoundError):
        h.runtime.get(wedged.id)
    events = await h.events(sid)
    failed = only([e for e in events if e.run_id == wedged.id], "run_failed")
    assert failed.data.error.code == "run_wedged"
    assert "did not end when cancelled" in failed.data.error.message
    assert failed.session_id == sid
    order = [(e.type, e.run_id) for e in events if e.type.startswith("run_")]
    assert order == [
        ("run_queued", wedged.id),
        ("run_started", wedged.id),
        ("run_queued", waiting.id),
        ("run_failed", wedged.id),
        ("run_started", waiting.id),
        ("run_completed", waiting.id),
    ]

    model.release.set()  # let the stuck call end, so the test leaves no task behind
    assert wedged.task is not None
    await asyncio.wait([wedged.task], timeout=5)
    events = [e for e in await h.events(sid) if e.run_id == wedged.id]
    assert [e.type for e in events if e.type.startswith("run_")] == [
        "run_queued",
        "run_started",
        "run_failed",
    ]
    assert states(events)[-1] == "error"
    record = await load_run(h.store, wedged.id)
    assert record.status == "failed"


async def test_a_run_stuck_in_a_model_call_with_a_pause_requested_is_still_watched(
    make_runtime: HarnessFactory,
) -> None:
    model = BlockingModel(echo)
    h = make_runtime(model, runtime_options=WATCHDOG)
    run = await h.runtime.start_run("hello")
    await model.entered.wait()
    run.pause()  # asked for, but the run never reaches a safe point

    acted = await h.runtime.check_watchdog(now=time.monotonic() + 61)
    result = await run.result()

    assert acted == [run.id]
    assert result.status == "cancelled"
