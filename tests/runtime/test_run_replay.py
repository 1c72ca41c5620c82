"""Replay of a recorded run: the recorded model answers are fed back, nothing is sent to a
model, and every difference from the record is reported."""

from __future__ import annotations

from typing import Any

import pytest
from runtime_support import (
    DEFAULT,
    BlockingModel,
    FakeModel,
    Gate,
    Harness,
    HarnessFactory,
    Stuck,
    add,
    calling,
    calls_then_answers,
    scripted,
)

from promptline.core.errors import ProviderRequestRejected
from promptline.core.events import (
    LlmCommand,
    LlmCommandEvent,
    LlmResult,
    LlmResultEvent,
    ToolCommandEvent,
    ToolResultEvent,
)
from promptline.core.messages import Message
from promptline.events.memory import InMemoryEventStore
from promptline.events.protocols import EventBus, EventFilter
from promptline.models.types import ModelRequest
from promptline.runtime import Agent
from promptline.runtime.replay import ReplayReport, replay_run
from promptline.sessions import Principal
from promptline.tools import tool
from promptline.tools.executor import CallScope
from promptline.tools.skills.prompt import SKILLS_HEADER

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


# -- a replay is given what the run was given -------------------------------------------------


async def _replay(h: Harness, run_id: str, **options: Any) -> ReplayReport:
    """Replay ``run_id`` as `promptline runs replay` does: the current agents and tools, and
    the settings of the runtime that recorded it."""
    options.setdefault("like", h.services)
    return await replay_run(
        h.store,
        run_id,
        agents=h.runtime.agents,
        registry=h.services.executor.registry,
        **options,
    )


@tool(name="multiply", read_only=True, inline=True)
def multiply(a: int, b: int) -> int:
    """Multiply two whole numbers."""
    return a * b


async def test_an_act_run_offered_tools_it_never_called_replays_without_divergence(
    make_runtime: HarnessFactory,
) -> None:
    h = make_runtime(FakeModel(lambda request: "no tool needed"), [add, multiply])
    recorded = await h.runtime.run("hello")
    [command] = [e for e in await h.events(recorded.run_id) if isinstance(e, LlmCommandEvent)]
    assert "Use the tools" in command.data.messages[0].text  # the prompt says tools are there

    report = await _replay(h, recorded.run_id)

    assert report.divergences == []
    assert (report.recorded_status, report.replayed_status) == ("completed", "completed")
    assert report.tool_calls == []


async def test_an_act_run_that_called_one_of_its_tools_replays_offering_all_of_them(
    make_runtime: HarnessFactory,
) -> None:
    h = make_runtime(scripted(ADDING), [add, multiply], agents=[DEFAULT.evolve(mode="act")])
    recorded = await h.runtime.run("What is 2+3?")

    report = await _replay(h, recorded.run_id, like=None)

    assert report.divergences == []
    assert report.tool_calls == ["add"]


async def test_a_model_call_offered_other_tools_than_recorded_is_reported(
    make_runtime: HarnessFactory,
) -> None:
    h = make_runtime(scripted(ADDING), [add])
    recorded = await h.runtime.run("What is 2+3?")
    # The record of the second call says a tool was offered that the replay does not offer
    # (the first call's record says which tools the run had).
    events = await h.events(recorded.run_id)
    second = [e for e in events if isinstance(e, LlmCommandEvent)][1]
    second.data.tools.append({"name": "gone", "description": "", "parameters": {}})
    log = InMemoryEventStore()
    await log.append_batch(events)

    report = await replay_run(log, recorded.run_id, agents=h.runtime.agents)

    assert [str(d) for d in report.divergences] == [
        "model call 2, tools offered: recorded add, gone, replayed add"
    ]


async def test_a_model_call_a_tool_made_for_someone_else_is_not_one_the_replay_answers(
    make_runtime: HarnessFactory,
) -> None:
    h = make_runtime(scripted(ADDING), [add])
    recorded = await h.runtime.run("What is 2+3?")
    # An MCP server's sampling request during the tool call: a model call inside the run,
    # with a task, that the loop did not make.
    events = await h.events(recorded.run_id)
    at = next(i for i, e in enumerate(events) if isinstance(e, ToolCommandEvent))
    envelope = {"stream": events[0].stream_name, "run_id": recorded.run_id}
    asked = LlmCommandEvent(
        **envelope, data=LlmCommand(model="script", params={"task": "sampling"})
    )
    answered = LlmResultEvent(**envelope, causation_id=asked.id, data=LlmResult(model="script"))
    log = InMemoryEventStore()
    await log.append_batch([*events[: at + 1], asked, answered, *events[at + 1 :]])

    report = await replay_run(log, recorded.run_id, agents=h.runtime.agents)

    assert report.divergences == []
    assert (report.recorded_model_calls, report.model_calls) == (2, 2)


class Notes:
    """A read-only tool and one that changes things, counting what was written."""

    def __init__(self) -> None:
        self.written: list[str] = []

        @tool(name="read_notes", read_only=True, inline=True)
        def read_notes() -> str:
            """Read the notes."""
            return "no notes yet"

        @tool(name="write_notes", inline=True)
        def write_notes(text: str) -> str:
            """Write the notes."""
            self.written.append(text)
            return "written"

        self.tools = [read_notes, write_notes]


PLAN_AGENT = Agent(name="assistant", model="script", mode="plan")
PLANNING = [
    {"tool_calls": [{"name": "read_notes", "arguments": {}}]},
    {"tool_calls": [{"name": "write_notes", "arguments": {"text": "early"}}]},
    {"tool_calls": [{"name": "submit_plan", "arguments": {"plan": "1. write"}}]},
]


def approving(answer: bool, reason: str | None = None) -> Any:
    async def approve(plan: str, scope: CallScope, events: EventBus) -> tuple[bool, str | None]:
        return answer, reason

    return approve


async def test_a_plan_run_switched_to_act_by_an_approval_replays_without_divergence(
    make_runtime: HarnessFactory,
) -> None:
    notes = Notes()
    turns = [
        *PLANNING,
        {"tool_calls": [{"name": "write_notes", "arguments": {"text": "planned"}}]},
        {"reply": "Done."},
    ]
    h = make_runtime(
        scripted(turns), notes.tools, agents=[PLAN_AGENT], plan_approver=approving(True)
    )
    recorded = await h.runtime.run("write the notes")
    assert recorded.text == "Done."

    report = await _replay(h, recorded.run_id)

    assert report.divergences == []
    assert report.result is not None
    assert report.result.text == "Done."
    assert report.tool_calls == ["read_notes", "write_notes", "submit_plan", "write_notes"]
    assert notes.written == ["planned"]  # the replay ran nothing


@pytest.mark.parametrize(
    ("approver", "said"),
    [(approving(False, "too risky"), "too risky"), (None, "no one can approve")],
    ids=["refused", "no-approver"],
)
async def test_a_plan_run_whose_plan_was_refused_replays_without_divergence(
    make_runtime: HarnessFactory, approver: Any, said: str
) -> None:
    notes = Notes()
    h = make_runtime(
        scripted([*PLANNING, {"reply": "What should I change?"}]),
        notes.tools,
        agents=[PLAN_AGENT],
        plan_approver=approver,
    )
    recorded = await h.runtime.run("write the notes")
    events = await h.events(recorded.run_id)
    assert said in [e for e in events if isinstance(e, ToolResultEvent)][-1].data.result.text

    report = await _replay(h, recorded.run_id)

    assert report.divergences == []
    assert report.replayed_status == "completed"


async def test_a_run_with_another_model_than_its_agents_replays_with_that_model(
    make_runtime: HarnessFactory,
) -> None:
    h = make_runtime(FakeModel())
    recorded = await h.runtime.run("hi", model="other/model")

    report = await _replay(h, recorded.run_id)

    assert report.divergences == []
    assert report.result is not None
    [command] = [e for e in await h.events(recorded.run_id) if isinstance(e, LlmCommandEvent)]
    assert command.data.model == "other/model"


async def test_a_runs_temperature_and_max_tokens_overrides_replay_without_divergence(
    make_runtime: HarnessFactory,
) -> None:
    h = make_runtime(FakeModel())
    recorded = await h.runtime.run("hi", agent=DEFAULT.evolve(temperature=0.2, max_tokens=64))
    [command] = [e for e in await h.events(recorded.run_id) if isinstance(e, LlmCommandEvent)]
    assert (command.data.params["temperature"], command.data.params["max_tokens"]) == (0.2, 64)

    report = await _replay(h, recorded.run_id)

    assert report.divergences == []


async def test_a_temperature_changed_in_the_agents_definition_is_reported(
    make_runtime: HarnessFactory,
) -> None:
    h = make_runtime(FakeModel())
    recorded = await h.runtime.run("hi")

    report = await replay_run(
        h.store, recorded.run_id, agents={"assistant": DEFAULT.evolve(temperature=0.9)}
    )

    assert [str(d) for d in report.divergences] == [
        "model call 1, temperature: recorded None, replayed 0.9"
    ]


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "not-streamed"])
async def test_a_streamed_or_unstreamed_run_replays_without_divergence(
    make_runtime: HarnessFactory, stream: bool
) -> None:
    h = make_runtime(scripted(ADDING), [add], agents=[DEFAULT.evolve(stream=not stream)])
    recorded = await h.runtime.run("What is 2+3?", agent=DEFAULT.evolve(stream=stream, mode="act"))
    commands = [e for e in await h.events(recorded.run_id) if isinstance(e, LlmCommandEvent)]
    assert {c.data.stream for c in commands} == {stream}

    report = await _replay(h, recorded.run_id)

    assert report.divergences == []
    assert report.result is not None
    assert report.result.text == "2 + 3 = 5"


async def test_a_chain_of_thought_run_replays_with_the_reasoning_taken_out(
    make_runtime: HarnessFactory,
) -> None:
    thinker = DEFAULT.evolve(use_chain_of_thought=True)
    h = make_runtime(
        FakeModel(lambda request: "<thinking>it is a number</thinking>Forty-two."),
        agents=[thinker],
    )
    recorded = await h.runtime.run("the answer?")

    report = await _replay(h, recorded.run_id)

    assert report.divergences == []
    assert report.result is not None
    assert report.result.text == "Forty-two."


async def test_the_skills_section_of_the_prompt_is_replayed_from_the_record(
    make_runtime: HarnessFactory,
) -> None:
    section = f"{SKILLS_HEADER}\n- release: How to cut a release."
    h = make_runtime(FakeModel(), [add], skills=lambda names: section)
    recorded = await h.runtime.run("hi")
    [command] = [e for e in await h.events(recorded.run_id) if isinstance(e, LlmCommandEvent)]
    assert command.data.messages[0].text.endswith(section)

    # Without the recording runtime's services: the section is in the record.
    report = await _replay(h, recorded.run_id, like=None)

    assert report.divergences == []


async def test_a_session_run_replays_with_the_sessions_context_and_channel(
    make_session_runtime: HarnessFactory,
) -> None:
    agent = DEFAULT.evolve(system_prompt="You answer on {{ session.channel }} for {{ user }}.")
    h = make_session_runtime(FakeModel(), agents=[agent])
    assert h.sessions is not None
    sid = (await h.sessions.create(ALICE, channel="web", context={"project": "apollo"})).id
    recorded = await h.runtime.run("hi", session_id=sid, principal=ALICE)
    [command] = [e for e in await h.events(sid) if isinstance(e, LlmCommandEvent)]
    assert command.data.messages[0].text == "You answer on web for alice."
    default = make_session_runtime(FakeModel())
    assert default.sessions is not None
    other = (await default.sessions.create(ALICE, channel="web", context={"project": "x"})).id
    with_context = await default.runtime.run("hi", session_id=other, principal=ALICE)
    [shown] = [e for e in await default.events(other) if isinstance(e, LlmCommandEvent)]
    assert "- project: x" in shown.data.messages[0].text

    assert (await _replay(h, recorded.run_id)).divergences == []
    assert (await _replay(default, with_context.run_id)).divergences == []


async def test_a_prompt_that_shows_the_time_replays_without_divergence(
    make_runtime: HarnessFactory,
) -> None:
    timed = DEFAULT.evolve(system_prompt="It is {{ now }}. Today is {{ now[:10] }}.")
    h = make_runtime(FakeModel(), agents=[timed])
    recorded = await h.runtime.run("what time is it?")

    report = await _replay(h, recorded.run_id)

    assert report.divergences == []


async def test_a_run_without_a_session_replays_with_the_history_its_request_gave(
    make_runtime: HarnessFactory,
) -> None:
    h = make_runtime(FakeModel(lambda request: f"{len(request.messages)} messages"))
    history = [
        Message(role="user", content="my name is Ada"),
        Message(role="assistant", content="Hello Ada"),
    ]
    recorded = await h.runtime.run("what is my name?", history=history)

    report = await _replay(h, recorded.run_id)

    assert report.divergences == []
    assert report.result is not None
    assert report.result.text == recorded.text


async def test_a_message_steered_into_a_run_joins_its_replay_where_it_joined_the_run(
    make_session_runtime: HarnessFactory,
) -> None:
    def reply(request: ModelRequest) -> Message | str:
        if request.messages[-1].text == "add 1 and 2":
            return calling("add", {"a": 1, "b": 2})
        return f"answer to {request.messages[-1].text}"

    model = BlockingModel(reply, blocking=[1])
    h = make_session_runtime(model, [add])
    assert h.sessions is not None
    sid = (await h.sessions.create(ALICE, channel="cli")).id
    run = await h.runtime.start_run("add 1 and 2", session_id=sid, principal=ALICE)
    await model.entered.wait()
    await h.runtime.submit("in words", session_id=sid, principal=ALICE, queue_mode="steer")
    model.release.set()
    recorded = await run.result()
    assert recorded.text == "answer to in words"

    report = await _replay(h, recorded.run_id)

    assert report.divergences == []
    assert report.result is not None
    assert report.result.text == "answer to in words"


async def test_a_model_call_that_failed_fails_the_replay_the_same_way(
    make_runtime: HarnessFactory,
) -> None:
    def refuse(request: ModelRequest) -> str:
        raise ProviderRequestRejected("no", provider="fake", status=400)

    h = make_runtime(FakeModel(refuse))
    recorded = await h.runtime.run("hi")
    assert recorded.status == "failed"

    report = await _replay(h, recorded.run_id)

    assert report.divergences == []
    assert report.replayed_status == "failed"
    assert report.result is not None
    assert report.result.error is not None
    assert recorded.error is not None
    assert report.result.error.code == recorded.error.code


# -- runs resumed after a restart ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "outcome"), [("lookup", "ok"), ("charge", "interrupted")], ids=["again", "interrupted"]
)
async def test_a_run_resumed_after_a_crash_in_a_tool_call_replays_as_one_run(
    make_runtime: HarnessFactory, name: str, outcome: str
) -> None:
    stuck = Stuck()
    h = make_runtime(calls_then_answers(name), stuck.tools)
    run = await h.runtime.start_run("do it")
    await stuck.entered.wait()
    h.crash()
    again = h.restarted(calls_then_answers(name), stuck.tools)
    assert (await again.runtime.recover())["resumed"] == [run.id]
    stuck.open.set()
    assert (await again.runtime.wait(run.id)).status == "completed"
    events = await h.events(run.id)
    [result] = [e.data.result for e in events if isinstance(e, ToolResultEvent)]
    assert result.metadata["outcome"] == outcome
    calls = stuck.calls[name]

    report = await _replay(again, run.id)

    assert report.divergences == []
    assert (report.resumed, report.tool_calls) == (1, [name])
    assert report.result is not None
    assert report.result.text == f"after {name}: {result.text}"
    assert stuck.calls[name] == calls  # nothing ran


async def test_a_model_call_cut_short_by_a_crash_is_not_one_the_replay_needs_an_answer_for(
    make_runtime: HarnessFactory,
) -> None:
    model = BlockingModel(blocking=[1])
    h = make_runtime(model, [add])
    run = await h.runtime.start_run("hello")
    await model.entered.wait()
    h.crash()
    again = h.restarted(FakeModel(lambda request: "hello to you"), [add])
    await again.runtime.recover()
    assert (await again.runtime.wait(run.id)).output == "hello to you"
    commands = [e for e in await h.events(run.id) if isinstance(e, LlmCommandEvent)]
    assert len(commands) == 2

    report = await _replay(again, run.id)

    assert report.divergences == []
    assert (report.recorded_model_calls, report.model_calls) == (1, 1)


async def test_a_run_stopped_after_a_tool_call_and_resumed_replays_with_the_recorded_result(
    make_runtime: HarnessFactory,
) -> None:
    gate = Gate()
    model = scripted([{"tool_calls": [{"name": "wait_here", "arguments": {}}]}, {"reply": "late"}])
    h = make_runtime(model, [gate.tool])
    run = await h.runtime.start_run("wait")
    await gate.entered.wait()
    gate.open.set()  # the call ends once the shutdown below has asked the run to stop
    assert await h.runtime.shutdown(grace=30) == [run.id]
    again = h.restarted(model, [gate.tool])
    await again.runtime.recover()
    assert (await again.runtime.wait(run.id)).output == "late"
    assert gate.calls == 1

    report = await _replay(again, run.id)

    assert report.divergences == []
    assert (report.resumed, report.tool_calls) == (1, ["wait_here"])
    assert gate.calls == 1
