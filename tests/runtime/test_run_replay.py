"""Replay of a recorded run: the recorded model answers are fed back, nothing is sent to a
model, and every difference from the record is reported."""

from __future__ import annotations

from typing import Any

from runtime_support import DEFAULT, FakeModel, HarnessFactory, add, calling, scripted

from promptline.core.events import LlmCommandEvent
from promptline.events.protocols import EventFilter
from promptline.models.types import ModelRequest
from promptline.runtime import Agent
from promptline.runtime.replay import replay_run
from promptline.sessions import Principal
from promptline.tools import tool

ALICE = Principal(user_id="alice")
ADDING = [
    {"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]},
    {"reply": "2 + 3 = 5"},
]


async def test_a_replay_of_an_unchanged_run_reports_no_divergence(
    make_runtime: HarnessFactory,
) -> None:
    h = make_runtime(scripted(ADDING), [add])
    recorded = await h.runtime.run("What is 2+3?")
    commands_before = await h.store.count(EventFilter(types=frozenset({"llm_command"})))

    report = await replay_run(
        h.store, recorded.run_id, agents=h.runtime.agents, registry=h.services.executor.registry
    )

    assert report.divergences == []
    assert report.replayed_status == report.recorded_status == "completed"
    assert report.model_calls == 2
    assert report.tool_calls == ["add"]
    assert report.result is not None
    assert report.result.text == "2 + 3 = 5"
    # The replay writes to a log of its own; the real one is untouched.
    assert await h.store.count(EventFilter(types=frozenset({"llm_command"}))) == commands_before


async def test_a_changed_system_prompt_is_reported_at_each_model_call(
    make_runtime: HarnessFactory,
) -> None:
    h = make_runtime(scripted(ADDING), [add])
    recorded = await h.runtime.run("What is 2+3?")
    changed = {"assistant": DEFAULT.evolve(system_prompt="You are terse.")}

    report = await replay_run(
        h.store, recorded.run_id, agents=changed, registry=h.services.executor.registry
    )

    assert [d.step for d in report.divergences] == [
        "model call 1, prompt message 1",
        "model call 2, prompt message 1",
    ]
    assert "You are terse." in report.divergences[0].replayed
    assert report.replayed_status == "completed"


async def test_live_tools_that_answer_differently_are_reported(
    make_runtime: HarnessFactory,
) -> None:
    answers = iter([5, 6])

    @tool(name="add", read_only=True, inline=True)
    def flaky_add(a: int, b: int) -> int:
        """Adds, differently each time."""
        return next(answers)

    h = make_runtime(scripted(ADDING), [flaky_add])
    recorded = await h.runtime.run("What is 2+3?")

    report = await replay_run(
        h.store,
        recorded.run_id,
        agents=h.runtime.agents,
        registry=h.services.executor.registry,
        live_tools=True,
    )

    steps = [d.step for d in report.divergences]
    assert "tool call 1 (add) result" in steps
    result = next(d for d in report.divergences if d.step == "tool call 1 (add) result")
    assert result.recorded == "ok: 5"
    assert result.replayed == "ok: 6"


async def test_a_replay_needing_more_model_calls_than_recorded_is_reported(
    make_runtime: HarnessFactory,
) -> None:
    # The recorded run failed at its limit after one model call; a replay under a
    # definition with a higher limit wants a second answer the record does not have.
    model = FakeModel(lambda request: calling("add", {"a": 1, "b": 1}))
    tight = Agent(name="assistant", model="script", max_iterations=1)
    h = make_runtime(model, [add], agents=[tight])
    recorded = await h.runtime.run("loop")
    assert recorded.status == "failed"

    report = await replay_run(
        h.store,
        recorded.run_id,
        agents={"assistant": tight.evolve(max_iterations=5)},
        registry=h.services.executor.registry,
    )

    steps = [d.step for d in report.divergences]
    assert "model call 2" in steps


async def test_a_session_run_replays_with_the_history_it_had(
    make_session_runtime: HarnessFactory,
) -> None:
    def reply(request: ModelRequest) -> str:
        return f"seen {sum(1 for m in request.messages if m.role == 'user')} user messages"

    h = make_session_runtime(FakeModel(reply))
    assert h.sessions is not None
    sid = (await h.sessions.create(ALICE, channel="cli")).id
    await h.runtime.run("first", session_id=sid, principal=ALICE)
    second = await h.runtime.run("second", session_id=sid, principal=ALICE)
    await h.runtime.run("third", session_id=sid, principal=ALICE)

    report = await replay_run(h.store, second.run_id, agents=h.runtime.agents)

    assert report.divergences == []
    assert report.result is not None
    assert report.result.text == "seen 2 user messages"


async def test_a_routing_tag_as_the_model_asks_the_router_by_tag(
    make_runtime: HarnessFactory,
) -> None:
    seen: list[tuple[str, list[str]]] = []

    def reply(request: ModelRequest) -> str:
        seen.append((request.model, list(request.tags)))
        return "ok"

    h = make_runtime(FakeModel(reply), agents=[Agent(name="coder", model="tag:coding")])
    result = await h.runtime.run("hi", agent="coder")

    assert result.ok
    assert seen == [("", ["coding"])]
    [command] = [e for e in await h.events(result.run_id) if isinstance(e, LlmCommandEvent)]
    params: dict[str, Any] = command.data.params
    assert params["tags"] == ["coding"]
