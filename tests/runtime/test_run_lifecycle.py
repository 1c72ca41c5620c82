"""The lifecycle state machine on its own (every legal move, every illegal one refused), and
the moves a real run records when it is paused, resumed, stopped or cancelled."""

from __future__ import annotations

from typing import Any

import pytest
from runtime_support import (
    BlockingModel,
    FakeModel,
    Gate,
    HarnessFactory,
    calling,
    moved_to,
    of_type,
    only,
    scripted,
    states,
    types,
)

from promptline.core.errors import ConflictError
from promptline.core.events import LifecycleState
from promptline.runtime.lifecycle import FINAL_STATES, LIFECYCLE_STATES, Lifecycle, is_legal

LEGAL: dict[str, set[str]] = {
    "created": {"initializing", "stopping", "error"},
    "initializing": {"ready", "stopping", "error"},
    "ready": {"running", "stopping", "error"},
    "running": {"paused", "stopping", "error"},
    "paused": {"running", "stopping", "error"},
    "stopping": {"stopped", "error"},
    "stopped": set(),
    "error": set(),
}
"""The state machine as the lifecycle documents it."""

PATH_TO: dict[str, list[LifecycleState]] = {
    "created": [],
    "initializing": ["initializing"],
    "ready": ["initializing", "ready"],
    "running": ["initializing", "ready", "running"],
    "paused": ["initializing", "ready", "running", "paused"],
    "stopping": ["stopping"],
    "stopped": ["stopping", "stopped"],
    "error": ["error"],
}

Change = tuple[LifecycleState | None, LifecycleState, str | None]


def lifecycle_at(state: str) -> tuple[Lifecycle, list[Change]]:
    changes: list[Change] = []
    lifecycle = Lifecycle(lambda a, b, reason: changes.append((a, b, reason)))
    for step in PATH_TO[state]:
        lifecycle.move(step)
    assert lifecycle.state == state
    return lifecycle, changes


def test_the_lifecycle_knows_eight_states() -> None:
    assert set(LIFECYCLE_STATES) == set(LEGAL)
    assert {"stopped", "error"} == FINAL_STATES


def test_a_new_lifecycle_is_created_and_says_so() -> None:
    lifecycle, changes = lifecycle_at("created")
    assert changes == [(None, "created", None)]
    assert not lifecycle.final


@pytest.mark.parametrize(
    ("from_state", "to_state"),
    [(a, b) for a, targets in LEGAL.items() for b in sorted(targets)],
)
def test_every_legal_move_is_made_and_reported(from_state: str, to_state: Any) -> None:
    lifecycle, changes = lifecycle_at(from_state)

    lifecycle.move(to_state, "why")

    assert lifecycle.state == to_state
    assert changes[-1] == (from_state, to_state, "why")
    assert lifecycle.final == (to_state in ("stopped", "error"))
    assert is_legal(from_state, to_state)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("from_state", "to_state"),
    [(a, b) for a in LEGAL for b in LEGAL if b not in LEGAL[a]],
)
def test_every_illegal_move_is_refused_and_changes_nothing(from_state: str, to_state: Any) -> None:
    lifecycle, changes = lifecycle_at(from_state)
    before = list(changes)

    with pytest.raises(ConflictError) as caught:
        lifecycle.move(to_state)

    assert lifecycle.state == from_state
    assert changes == before
    assert caught.value.details["from_state"] == from_state
    assert caught.value.details["to_state"] == to_state
    assert not is_legal(from_state, to_state)  # type: ignore[arg-type]


def test_a_refused_move_says_where_the_run_may_go() -> None:
    lifecycle, _ = lifecycle_at("running")
    with pytest.raises(ConflictError) as caught:
        lifecycle.move("ready")
    assert "cannot go from running to ready" in caught.value.message
    assert caught.value.hint == "from running it may go to: error, paused, stopping"
    final, _ = lifecycle_at("stopped")
    with pytest.raises(ConflictError) as caught:
        final.move("running")
    assert caught.value.hint is not None
    assert "none (final state)" in caught.value.hint


# -- in a real run ------------------------------------------------------------------------------


WAIT_THEN_ANSWER: list[dict[str, Any]] = [
    {"tool_calls": [{"name": "wait_here", "arguments": {}}]},
    {"expect": "done", "reply": "finished"},
]


async def test_a_paused_run_holds_at_its_next_safe_point_and_goes_on_when_resumed(
    make_runtime: HarnessFactory,
) -> None:
    gate = Gate()
    h = make_runtime(scripted(WAIT_THEN_ANSWER), [gate.tool])
    run = await h.runtime.start_run("wait, then answer")
    await gate.entered.wait()

    run.pause()
    assert run.paused
    assert run.lifecycle.state == "running"
    gate.open.set()
    await h.wait_for(moved_to("paused", run.id))

    # The pause is on the record while the run waits, and no model call was made since.
    held = await h.events(run.id)
    assert states(held)[-2:] == ["running", "paused"]
    assert len(of_type(held, "llm_command")) == 1
    assert types(held)[-3:] == ["tool_result", "message_sent", "agent_lifecycle"]

    run.resume()
    result = await run.result()

    assert result.ok
    assert result.text == "finished"
    events = await h.events(run.id)
    assert states(events) == [
        "created",
        "initializing",
        "ready",
        "running",
        "paused",
        "running",
        "stopping",
        "stopped",
    ]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


async def test_a_run_stopped_while_paused_ends_cancelled_without_another_model_call(
    make_runtime: HarnessFactory,
) -> None:
    gate = Gate()
    h = make_runtime(scripted(WAIT_THEN_ANSWER), [gate.tool])
    run = await h.runtime.start_run("wait")
    await gate.entered.wait()
    run.pause()
    gate.open.set()
    await h.wait_for(moved_to("paused", run.id))

    run.stop("enough", by="operator")
    result = await run.result()

    assert result.status == "cancelled"
    events = await h.events(run.id)
    cancelled = only(events, "run_cancelled").data
    assert (cancelled.reason, cancelled.cancelled_by) == ("enough", "operator")
    assert states(events)[-4:] == ["running", "paused", "stopping", "stopped"]
    assert len(of_type(events, "llm_command")) == 1


async def test_a_stopped_run_finishes_its_tool_call_then_ends_at_the_safe_point(
    make_runtime: HarnessFactory,
) -> None:
    gate = Gate()
    h = make_runtime(scripted(WAIT_THEN_ANSWER), [gate.tool])
    run = await h.runtime.start_run("wait")
    await gate.entered.wait()

    run.stop()
    gate.open.set()
    result = await run.result()

    assert result.status == "cancelled"
    events = await h.events(run.id)
    assert only(events, "tool_result").data.result.metadata["outcome"] == "ok"
    assert len(of_type(events, "llm_command")) == 1
    assert only(events, "run_cancelled").data.cancelled_by == "user"
    assert states(events)[-2:] == ["stopping", "stopped"]


async def test_a_run_stopped_while_the_model_answers_runs_none_of_its_tool_calls(
    make_runtime: HarnessFactory,
) -> None:
    gate = Gate()
    model = BlockingModel(lambda _: calling("wait_here", call_id="call_wait"))
    h = make_runtime(model, [gate.tool])
    run = await h.runtime.start_run("wait")
    await model.entered.wait()

    run.stop("enough")
    model.release.set()
    result = await run.result()

    assert result.status == "cancelled"
    assert gate.calls == 0
    events = await h.events(run.id)
    assert of_type(events, "tool_command") == []
    call, answer = (e.data.message for e in of_type(events, "message_sent"))
    assert call.tool_calls[0].id == "call_wait"
    assert (answer.role, answer.tool_call_id) == ("tool", "call_wait")
    assert answer.text == "wait_here did not finish: the run was cancelled."
    assert only(events, "run_cancelled").data.reason == "enough"


async def test_a_cancelled_paused_run_stops_at_once(make_runtime: HarnessFactory) -> None:
    gate = Gate()
    h = make_runtime(scripted(WAIT_THEN_ANSWER), [gate.tool])
    run = await h.runtime.start_run("wait")
    await gate.entered.wait()
    run.pause()
    gate.open.set()
    await h.wait_for(moved_to("paused", run.id))

    assert run.cancel("no longer needed")
    result = await run.result()

    assert result.status == "cancelled"
    events = await h.events(run.id)
    assert only(events, "run_cancelled").data.reason == "no longer needed"
    assert states(events)[-3:] == ["paused", "stopping", "stopped"]
    assert not run.cancel()  # a finished run has nothing to cancel


async def test_a_failed_run_ends_in_the_error_state(make_runtime: HarnessFactory) -> None:
    async def boom(_: Any) -> str:
        raise RuntimeError("the model fell over")

    h = make_runtime(FakeModel(boom))

    result = await h.runtime.run("hello")

    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "internal_error"
    assert "the model fell over" in result.error.message
    events = await h.events(result.run_id)
    assert states(events) == ["created", "initializing", "ready", "running", "error"]
    assert only(events, "run_failed").data.error.code == "internal_error"
    assert only(events, "error").data.source == "models"
