"""The ReAct loop: a run with a tool call and its record, the iteration and loop limits, tool
calls the model gets wrong, chain of thought, and streaming."""

from __future__ import annotations

import itertools
from typing import Any

from runtime_support import (
    FakeModel,
    HarnessFactory,
    add,
    calling,
    of_type,
    only,
    scripted,
    states,
    types,
)

from promptline.core.events import Event
from promptline.core.messages import Usage
from promptline.models.scripted import DEMO_SCRIPT, ScriptedProvider
from promptline.models.types import ModelRequest
from promptline.runtime import Agent
from promptline.runtime.prompt import CHAIN_OF_THOUGHT

ADD_THEN_ANSWER: list[dict[str, Any]] = [
    {
        "expect": "add 2 and 3",
        "tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}, "id": "call_add"}],
        "usage": {"input_tokens": 10, "output_tokens": 5},
    },
    {"expect": "5", "reply": "It is 5.", "usage": {"input_tokens": 20, "output_tokens": 3}},
]


async def test_a_run_with_one_tool_call_answers_and_records_every_step_on_one_stream(
    make_runtime: HarnessFactory,
) -> None:
    h = make_runtime(scripted(ADD_THEN_ANSWER), [add])

    run = await h.runtime.start_run("add 2 and 3")
    result = await run.result()

    assert result.ok
    assert result.status == "completed"
    assert result.text == "It is 5."
    assert result.usage == Usage(input_tokens=30, output_tokens=8)
    assert (result.iterations, result.tool_calls) == (2, 1)
    assert result.session_id is None
    assert result.error is None

    events = await h.events(run.id)
    # An agent built in code streams by default, as a configured one does; its deltas go to
    # live subscribers only (see the streaming test below), so the log holds none.
    assert "llm_delta" not in types(events)
    assert types(events) == [
        "message_received",  # on the record before start_run returns...
        "run_queued",  # ...with the run that answers it, in one transaction
        "agent_lifecycle",  # created
        "agent_lifecycle",  # initializing
        "agent_lifecycle",  # ready
        "run_started",  # names the message it answers, which joins the conversation
        "agent_lifecycle",  # running
        "llm_command",
        "llm_result",
        "message_sent",  # the call to add
        "tool_command",
        "tool_result",
        "message_sent",  # add's result
        "llm_command",
        "llm_result",
        "message_sent",  # the answer
        "run_completed",
        "agent_lifecycle",  # stopping
        "agent_lifecycle",  # stopped
    ]
    assert states(events) == ["created", "initializing", "ready", "running", "stopping", "stopped"]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert await h.store.count() == len(events)  # nothing went to another stream
    for event in events:
        assert (event.run_id, event.correlation_id, event.agent_id) == (run.id, run.id, "assistant")

    received = only(events, "message_received").data.message
    assert received.role == "user"
    assert received.text == "add 2 and 3"
    call, result_message, answer = (e.data.message for e in of_type(events, "message_sent"))
    assert [c.name for c in call.tool_calls] == ["add"]
    assert (result_message.role, result_message.text, result_message.tool_call_id) == (
        "tool",
        "5",
        "call_add",
    )
    assert answer.text == "It is 5."
    tool_result = only(events, "tool_result").data.result
    assert tool_result.metadata["outcome"] == "ok"
    assert not tool_result.is_error
    assert only(events, "tool_command").data.call.arguments == {"a": 2, "b": 3}
    completed = only(events, "run_completed").data
    assert completed.output.text == "It is 5."
    assert (completed.iterations, completed.usage) == (2, result.usage)
    started = only(events, "run_started").data
    assert (started.agent, started.model, started.mode) == ("assistant", "script", "act")
    # The second model call sees the whole turn: question, call, result.
    second = of_type(events, "llm_command")[1].data.messages
    assert [m.role for m in second] == ["system", "user", "assistant", "tool"]


async def test_a_run_that_reaches_max_iterations_fails_with_run_limit(
    make_runtime: HarnessFactory,
) -> None:
    numbers = itertools.count()
    model = FakeModel(lambda _: calling("add", {"a": next(numbers), "b": 1}))
    h = make_runtime(model, [add], agents=[Agent(name="assistant", model="m", max_iterations=2)])

    run = await h.runtime.start_run("keep adding")
    result = await run.result()

    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "run_limit"
    assert "max_iterations (2)" in result.error.message
    assert result.iterations == 2
    assert len(model.requests) == 2
    events = await h.events(run.id)
    assert len(of_type(events, "tool_result")) == 2
    failed = only(events, "run_failed").data
    assert failed.error.code == "run_limit"
    assert failed.iterations == 2
    assert failed.error.details["limit"] == 2
    assert states(events)[-1] == "error"
    assert "run_completed" not in types(events)


async def test_the_same_tool_call_repeated_max_repeated_calls_times_fails_the_run(
    make_runtime: HarnessFactory,
) -> None:
    model = FakeModel(lambda _: calling("add", {"a": 1, "b": 1}))
    h = make_runtime(model, [add], max_repeated_calls=3)

    run = await h.runtime.start_run("loop")
    result = await run.result()

    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "run_limit"
    assert (result.error.details["tool"], result.error.details["repeats"]) == ("add", 3)
    events = await h.events(run.id)
    # The third identical call is refused before it runs.
    assert len(of_type(events, "llm_command")) == 3
    assert len(of_type(events, "tool_command")) == 2
    assert only(events, "run_failed").data.error.code == "run_limit"
    assert states(events)[-1] == "error"
    # The refused call still gets a result, so the conversation stays well-formed.
    last = of_type(events, "message_sent")[-1].data.message
    assert last.role == "tool"
    assert last.text == "add did not finish: the run was failed."


async def test_a_call_to_an_unknown_tool_gets_an_error_result_and_the_run_goes_on(
    make_runtime: HarnessFactory,
) -> None:
    model = scripted(
        [
            {"tool_calls": [{"name": "multiply", "arguments": {"a": 2}}]},
            {"expect": "unknown tool 'multiply'", "reply": "I cannot multiply."},
        ]
    )
    h = make_runtime(model, [add])

    run = await h.runtime.start_run("multiply 2 by 3")
    result = await run.result()

    assert result.ok
    assert result.text == "I cannot multiply."
    events = await h.events(run.id)
    tool_result = only(events, "tool_result").data.result
    assert tool_result.is_error
    assert tool_result.metadata["outcome"] == "unknown_tool"
    assert "the tools available are: add" in tool_result.text
    told = of_type(events, "message_sent")[1].data.message
    assert told.role == "tool"
    assert told.metadata == {"is_error": True}
    assert types(events)[-3:] == ["run_completed", "agent_lifecycle", "agent_lifecycle"]


async def test_invalid_tool_arguments_get_an_error_result_and_the_run_goes_on(
    make_runtime: HarnessFactory,
) -> None:
    model = scripted(
        [
            {"tool_calls": [{"name": "add", "arguments": {"a": "two", "b": 3}}]},
            {
                "expect": "Fix the arguments",
                "tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}],
            },
            {"expect": "5", "reply": "5"},
        ]
    )
    h = make_runtime(model, [add])

    result = await h.runtime.run("add two and 3")

    assert result.ok
    assert result.text == "5"
    assert result.tool_calls == 2
    events = await h.events(result.run_id)
    outcomes = [e.data.result.metadata["outcome"] for e in of_type(events, "tool_result")]
    assert outcomes == ["invalid_arguments", "ok"]
    first = of_type(events, "tool_result")[0].data.result
    assert first.is_error
    assert "invalid arguments for add" in first.text


async def test_chain_of_thought_is_taken_out_of_the_answer_and_kept_in_its_metadata(
    make_runtime: HarnessFactory,
) -> None:
    model = scripted([{"reply": "<thinking>2 and 2 make 4</thinking>\nThe answer is 4."}])
    agent = Agent(name="assistant", model="script", use_chain_of_thought=True)
    h = make_runtime(model, agents=[agent])

    result = await h.runtime.run("what is 2 + 2?")

    assert result.text == "The answer is 4."
    assert result.output is not None
    assert result.output.metadata["reasoning"] == "2 and 2 make 4"
    events = await h.events(result.run_id)
    sent = only(events, "message_sent").data.message
    assert sent.text == "The answer is 4."
    assert sent.metadata["reasoning"] == "2 and 2 make 4"
    assert only(events, "run_completed").data.output.text == "The answer is 4."
    # The model was told to think that way; what it said is on the record as it said it.
    system = only(events, "llm_command").data.messages[0]
    assert system.role == "system"
    assert CHAIN_OF_THOUGHT in system.text
    assert "<thinking>" in only(events, "llm_result").data.message.text


async def test_an_answer_without_thinking_is_left_as_it_is(make_runtime: HarnessFactory) -> None:
    agent = Agent(name="assistant", model="script", use_chain_of_thought=True)
    h = make_runtime(scripted([{"reply": "Just 4."}]), agents=[agent])

    result = await h.runtime.run("what is 2 + 2?")

    assert result.text == "Just 4."
    assert result.output is not None
    assert "reasoning" not in result.output.metadata


async def test_a_streaming_agent_publishes_the_deltas_between_command_and_result(
    make_runtime: HarnessFactory,
) -> None:
    model = scripted(
        [{"reply": "Hello there, friend.", "stream_chunks": ["Hello", " there,", " friend."]}]
    )
    h = make_runtime(model, agents=[Agent(name="assistant", model="script", stream=True)])

    async with h.bus.subscribe() as live:  # everything published from now on
        result = await h.runtime.run("hi")
        seen: list[Event] = []
        async for event in live:
            seen.append(event)
            if event.type == "run_completed":
                break

    assert result.text == "Hello there, friend."
    command = only(seen, "llm_command")
    assert command.data.stream is True
    deltas = of_type(seen, "llm_delta")
    assert [d.data.text for d in deltas] == ["Hello", " there,", " friend."]
    assert [d.data.index for d in deltas] == [0, 1, 2]
    assert all(d.causation_id == command.id and d.run_id == result.run_id for d in deltas)
    kinds = types(seen)
    first, last = kinds.index("llm_delta"), len(kinds) - kinds[::-1].index("llm_delta") - 1
    assert kinds.index("llm_command") < first
    assert last < kinds.index("llm_result")
    # Transient: on the run's stream, but never stored, so they take no seq.
    assert all(d.seq == 0 and d.stream == command.stream for d in deltas)
    stored = await h.events(result.run_id)
    assert "llm_delta" not in types(stored)
    kept = [e.id for e in seen if e.type != "llm_delta"]
    assert [e.id for e in stored][: len(kept)] == kept  # then the lifecycle's last moves
    assert [e.seq for e in stored] == list(range(1, len(stored) + 1))


async def test_the_offline_demo_model_uses_the_add_tool(make_runtime: HarnessFactory) -> None:
    provider = ScriptedProvider(scripts={"demo": DEMO_SCRIPT})
    h = make_runtime(provider, [add], agents=[Agent(name="assistant", model="demo")])

    result = await h.runtime.run("what is 20 + 22?")

    assert result.text == "The result is 42."
    assert result.tool_calls == 1
    events = await h.events(result.run_id)
    assert only(events, "tool_command").data.call.arguments == {"a": 20, "b": 22}


async def test_a_run_without_tools_offers_none_and_answers_in_one_call(
    make_runtime: HarnessFactory,
) -> None:
    model = FakeModel(lambda request: f"{len(request.tools)} tools")
    h = make_runtime(model)

    result = await h.runtime.run("hello")

    assert result.text == "0 tools"
    assert result.iterations == 1
    assert result.tool_calls == 0
    sent: ModelRequest = model.requests[0]
    assert [m.role for m in sent.messages] == ["system", "user"]
