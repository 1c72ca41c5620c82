"""Plan mode: only read-only tools run, the model hands its plan over with ``submit_plan``,
and the run switches to act mode once a person approves it (and not when they deny it)."""

from __future__ import annotations

from typing import Any

from runtime_support import HarnessFactory, RecordingGate, of_type, only, scripted

from promptline.events.protocols import EventBus
from promptline.runtime import Agent
from promptline.runtime.prompt import PLAN_MODE
from promptline.tools.executor import CallScope
from promptline.tools.function import FunctionTool, tool

PLAN = "1. write notes.txt"


class Files:
    """A read-only tool and one that changes things, keeping what was written."""

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

        self.tools: list[FunctionTool] = [read_notes, write_notes]


class Approver:
    """A plan approver that answers as told and keeps what it was asked."""

    def __init__(self, approve: bool, reason: str | None = None) -> None:
        self.approve = approve
        self.reason = reason
        self.asked: list[tuple[str, CallScope]] = []

    async def __call__(
        self, plan: str, scope: CallScope, events: EventBus
    ) -> tuple[bool, str | None]:
        self.asked.append((plan, scope))
        return self.approve, self.reason


def plan_script(after_plan: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"tool_calls": [{"name": "read_notes", "arguments": {}}]},
        {
            "expect": "no notes yet",
            "tool_calls": [{"name": "write_notes", "arguments": {"text": "early"}}],
        },
        {
            "expect": "plan mode",
            "tool_calls": [{"name": "submit_plan", "arguments": {"plan": PLAN}, "id": "call_plan"}],
        },
        *after_plan,
    ]


PLAN_AGENT = Agent(name="assistant", model="script", mode="plan")


async def test_an_approved_plan_switches_the_run_to_act_and_the_change_is_made(
    make_runtime: HarnessFactory,
) -> None:
    files, approver, gate = Files(), Approver(True), RecordingGate()
    model = scripted(
        plan_script(
            [
                {
                    "expect": "approved",
                    "tool_calls": [{"name": "write_notes", "arguments": {"text": "planned"}}],
                },
                {"expect": "written", "reply": "Done."},
            ]
        )
    )
    h = make_runtime(model, files.tools, agents=[PLAN_AGENT], plan_approver=approver, gate=gate)

    run = await h.runtime.start_run("write the notes")
    result = await run.result()

    assert result.ok
    assert result.text == "Done."
    assert run.mode == "act"
    # Only the change made after the approval happened.
    assert files.written == ["planned"]
    assert [plan for plan, _ in approver.asked] == [PLAN]
    assert approver.asked[0][1].mode == "plan"
    assert approver.asked[0][1].run_id == run.id
    assert [s.mode for s in gate.scopes] == ["plan", "act"]  # read_notes, then write_notes

    events = await h.events(run.id)
    assert only(events, "run_started").data.mode == "plan"
    results = [e.data.result for e in of_type(events, "tool_result")]
    assert [(r.name, r.metadata["outcome"]) for r in results] == [
        ("read_notes", "ok"),
        ("write_notes", "denied"),
        ("submit_plan", "ok"),
        ("write_notes", "ok"),
    ]
    refused = results[1]
    assert refused.is_error
    assert "plan mode" in refused.text
    assert "only read-only tools run" in refused.text
    assert "approved" in results[2].text
    assert not results[2].is_error
    # Every tool call is on the record: the plan's too, before the approver was asked.
    commands = [e.data.call.name for e in of_type(events, "tool_command")]
    assert commands == ["read_notes", "write_notes", "submit_plan", "write_notes"]
    plan_command = of_type(events, "tool_command")[2]
    assert plan_command.data.call.arguments == {"plan": PLAN}
    assert of_type(events, "tool_result")[2].causation_id == plan_command.id
    assert [e.seq for e in events] == list(range(1, len(events) + 1))

    calls = [e.data for e in of_type(events, "llm_command")]
    offered = [sorted(t["name"] for t in c.tools) for c in calls]
    assert offered[:3] == [["read_notes", "submit_plan", "write_notes"]] * 3
    assert offered[3:] == [["read_notes", "write_notes"]] * 2
    assert PLAN_MODE in calls[0].messages[0].text
    assert PLAN_MODE not in calls[3].messages[0].text


async def test_a_denied_plan_keeps_the_run_in_plan_mode_and_tells_the_model_why(
    make_runtime: HarnessFactory,
) -> None:
    files, approver = Files(), Approver(False, "too risky")
    model = scripted(plan_script([{"expect": "too risky", "reply": "What should I change?"}]))
    h = make_runtime(model, files.tools, agents=[PLAN_AGENT], plan_approver=approver)

    run = await h.runtime.start_run("write the notes")
    result = await run.result()

    assert result.ok
    assert result.text == "What should I change?"
    assert run.mode == "plan"
    assert files.written == []
    assert len(approver.asked) == 1
    events = await h.events(run.id)
    denied = of_type(events, "tool_result")[2].data.result
    assert denied.name == "submit_plan"
    assert denied.is_error
    assert denied.metadata["outcome"] == "denied"
    assert denied.text == "The plan was not approved (too risky). Ask what to change."
    last = of_type(events, "llm_command")[-1].data
    assert "submit_plan" in [t["name"] for t in last.tools]


async def test_a_plan_with_no_one_to_approve_it_is_refused(make_runtime: HarnessFactory) -> None:
    files = Files()
    model = scripted(plan_script([{"expect": "no one can approve", "reply": PLAN}]))
    h = make_runtime(model, files.tools, agents=[PLAN_AGENT])

    result = await h.runtime.run("write the notes")

    assert result.ok
    assert result.text == PLAN
    assert files.written == []
    events = await h.events(result.run_id)
    assert of_type(events, "tool_result")[2].data.result.metadata["outcome"] == "denied"


async def test_a_run_can_be_started_in_plan_mode_for_an_act_agent(
    make_runtime: HarnessFactory,
) -> None:
    files = Files()
    model = scripted(
        [
            {"tool_calls": [{"name": "write_notes", "arguments": {"text": "x"}}]},
            {"expect": "plan mode", "reply": "I will plan first."},
        ]
    )
    h = make_runtime(model, files.tools)

    result = await h.runtime.run("write the notes", mode="plan")

    assert result.text == "I will plan first."
    assert files.written == []
