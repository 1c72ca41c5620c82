"""Budgets and the context window, checked before every model call: a call that would go
over a token or dollar ceiling, or a turn too big for the window, is never sent."""

from __future__ import annotations

from typing import Any

import pytest
from runtime_support import FakeModel, Harness, HarnessFactory, add, calling, of_type, only, states

from promptline.core.events import LlmResult, LlmResultEvent
from promptline.core.messages import Message, Usage
from promptline.models.capabilities import ModelCapabilities
from promptline.models.types import ModelRequest
from promptline.runtime.budget import Budget
from promptline.sessions import Principal

ALICE = Principal(user_id="alice")


async def spend(h: Harness, tokens: int, cost: float, **envelope: Any) -> None:
    """Record a model call made earlier (by another run) that used ``tokens`` and ``cost``."""
    stream = envelope.get("session_id") or "earlier-run"
    await h.bus.publish(
        LlmResultEvent(
            stream=stream,
            **envelope,
            data=LlmResult(
                model="script",
                usage=Usage(input_tokens=tokens - tokens // 2, output_tokens=tokens // 2),
                cost_usd=cost,
            ),
        )
    )


@pytest.mark.parametrize(
    ("budget", "unit"),
    [(Budget(session_tokens=1000), "tokens"), (Budget(session_cost_usd=0.5), "dollars")],
)
async def test_a_session_whose_budget_is_used_up_gets_no_model_call(
    make_session_runtime: HarnessFactory, budget: Budget, unit: str
) -> None:
    model = FakeModel()
    h = make_session_runtime(model, budget=budget)
    assert h.sessions is not None
    session = await h.sessions.create(ALICE, channel="cli")
    await spend(h, 600, 0.25, session_id=session.id, user_id="alice", tenant_id="default")
    await spend(h, 400, 0.25, session_id=session.id, user_id="alice", tenant_id="default")

    run = await h.runtime.start_run("hello", session_id=session.id, principal=ALICE)
    result = await run.result()

    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "budget_exceeded"
    limit = budget.session_tokens or budget.session_cost_usd
    assert f"the session budget of {limit:g} {unit} is used up" in result.error.message
    assert "was not sent" in result.error.message
    assert result.error.details["unit"] == unit
    assert model.requests == []
    mine = [e for e in await h.events(session.id) if e.run_id == run.id]
    assert of_type(mine, "llm_command") == []
    assert only(mine, "run_failed").data.error.code == "budget_exceeded"
    assert states(mine)[-1] == "error"


async def test_a_session_budget_used_up_during_a_run_stops_it_before_the_next_call(
    make_session_runtime: HarnessFactory,
) -> None:
    answers = iter([calling("add", {"a": 1, "b": 2}), Message(role="assistant", content="3")])
    model = FakeModel(lambda _: next(answers))
    h = make_session_runtime(model, [add], budget=Budget(session_tokens=10))
    assert h.sessions is not None
    session = await h.sessions.create(ALICE, channel="cli")

    result = await h.runtime.run("add 1 and 2", session_id=session.id, principal=ALICE)

    # The first call (12 tokens) was allowed; the tool ran; the second call was not sent.
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "budget_exceeded"
    assert result.usage == Usage(input_tokens=10, output_tokens=2)
    assert len(model.requests) == 1
    events = await h.events(session.id)
    assert len(of_type(events, "llm_command")) == 1
    assert len(of_type(events, "tool_result")) == 1
    assert only(events, "run_failed").data.usage.total_tokens == 12


async def test_a_user_over_the_daily_budget_gets_no_model_call(
    make_runtime: HarnessFactory,
) -> None:
    model = FakeModel()
    h = make_runtime(model, budget=Budget(user_cost_usd=1.0))
    await spend(h, 10, 0.6, user_id="alice", tenant_id="default")
    await spend(h, 10, 0.5, user_id="alice", tenant_id="default")
    await spend(h, 10, 5.0, user_id="bob", tenant_id="default")  # someone else's: no count
    # The same user id in another tenant is another user, with a budget of its own.
    await spend(h, 10, 5.0, user_id="carol", tenant_id="globex")

    refused = await h.runtime.run("hello", principal=ALICE)
    allowed = await h.runtime.run("hello", principal=Principal(user_id="carol"))

    assert refused.status == "failed"
    assert refused.error is not None
    assert refused.error.code == "budget_exceeded"
    assert refused.error.details["scope"] == "user (today)"
    assert allowed.ok
    assert len(model.requests) == 1
    assert of_type(await h.events(refused.run_id), "llm_command") == []


def small_window(context_window: int, max_tokens: int = 100) -> Any:
    caps = ModelCapabilities(context_window=context_window, max_tokens=max_tokens)
    return lambda _model: caps


async def test_a_turn_too_big_for_the_context_window_fails_the_run_before_the_call(
    make_runtime: HarnessFactory,
) -> None:
    model = FakeModel()
    h = make_runtime(model, capabilities=small_window(300))

    result = await h.runtime.run("x" * 2000)

    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "budget_exceeded"
    assert "context window" in result.error.message
    assert result.error.details["limit"] == 200  # the window less the answer's reserve
    assert model.requests == []
    events = await h.events(result.run_id)
    assert of_type(events, "llm_command") == []
    assert states(events)[-1] == "error"


# -- fitting the context ------------------------------------------------------------------------


def long_history(turns: int) -> list[Message]:
    history = []
    for i in range(turns):
        history.append(Message(role="user", content=f"question {i}: " + "q" * 400))
        history.append(Message(role="assistant", content=f"answer {i}: " + "a" * 400))
    return history


async def test_a_long_history_loses_its_oldest_whole_turns_with_a_note(
    make_runtime: HarnessFactory,
) -> None:
    model = FakeModel()
    h = make_runtime(model, capabilities=small_window(1100))
    history = long_history(6)

    result = await h.runtime.run("and now?", history=history)

    assert result.ok
    sent = model.requests[0].messages
    system, note, *rest = sent
    assert system.role == "system"
    assert note.role == "system"
    dropped = len(history) + 1 - len(rest)
    assert 0 < dropped < len(history)
    assert dropped % 2 == 0  # whole turns: a question with its answer
    assert note.text == (
        f"[{dropped} earlier messages of this conversation were left out to fit the "
        "model's context window.]"
    )
    # What is kept is the newest part of the conversation, every message whole.
    assert [m.id for m in rest] == [m.id for m in [*history, rest[-1]]][dropped:]
    assert [m.text for m in rest[:-1]] == [m.text for m in history[dropped:]]
    assert rest[0].role == "user"
    assert rest[-1].text == "and now?"
    # The record shows the same as the model got.
    command = only(await h.events(result.run_id), "llm_command").data
    assert [m.id for m in command.messages] == [m.id for m in sent]


async def test_a_conversation_that_fits_is_sent_whole(make_runtime: HarnessFactory) -> None:
    model = FakeModel()
    h = make_runtime(model, capabilities=small_window(100_000))
    history = long_history(6)

    await h.runtime.run("and now?", history=history)

    sent = model.requests[0].messages
    assert [m.id for m in sent[1:-1]] == [m.id for m in history]


async def test_the_summarize_strategy_puts_a_summary_in_place_of_the_oldest_turns(
    make_runtime: HarnessFactory,
) -> None:
    def reply(request: ModelRequest) -> str:
        if request.messages[0].text.startswith("Summarise this conversation"):
            return "They discussed q and a."
        return "ok"

    model = FakeModel(reply)
    h = make_runtime(model, capabilities=small_window(1100), context_strategy="summarize")
    history = long_history(6)

    result = await h.runtime.run("and now?", history=history)

    assert result.ok
    summary_request, answer_request = model.requests
    transcript = summary_request.messages[1].text
    assert "question 0" in transcript
    assert "answer 0" in transcript
    _system, note, *rest = answer_request.messages
    dropped = len(history) + 1 - len(rest)
    assert dropped > 0
    assert note.role == "system"
    assert note.text == (
        f"Summary of the earlier conversation ({dropped} messages): They discussed q and a."
    )
    assert "question 5" not in transcript  # the kept turns are not summarised
    assert [m.text for m in rest[:-1]] == [m.text for m in history[dropped:]]
    # The summary call is on the record too, as a model call of this run.
    commands = of_type(await h.events(result.run_id), "llm_command")
    assert len(commands) == 2
    assert commands[0].data.messages[0].text.startswith("Summarise")
