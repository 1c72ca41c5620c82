"""The executor: every call ends in a recorded `ToolResult` (validation, refusals, failures,
time-outs, cancellation), progress is streamed before the result, calls of a turn run
concurrently, and huge outputs are cut."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from promptline.core.errors import InvalidInputError, NotFoundError
from promptline.core.events import Event, ToolProgressEvent, ToolResultEvent
from promptline.core.messages import TextPart, ToolCall
from promptline.core.output_capture import OutputCapture
from promptline.events.bus import InProcessEventBus
from promptline.events.memory import InMemoryEventStore
from promptline.events.protocols import EventFilter
from promptline.tools import Progress, Tool, ToolContext, ToolError, ToolOutput, tool
from promptline.tools.executor import (
    MAX_STOPPED_OUTPUT_CHARS,
    Authorization,
    CallScope,
    ToolExecutor,
    truncate,
)
from promptline.tools.registry import ToolRegistry
from tools.support import STUCK, recorded, types


def scope(workspace: Path, **fields: Any) -> CallScope:
    return CallScope(workspace=workspace, session_id="s1", run_id="r1", **fields)


@tool(inline=True)
def add(a: int, b: int = 1) -> int:
    """Add two numbers."""
    return a + b


@tool(read_only=True, inline=True)
def peek() -> str:
    """Look without touching."""
    return "seen"


def executor_for(bus: InProcessEventBus, *tools: Tool, **options: Any) -> ToolExecutor:
    return ToolExecutor(ToolRegistry([add, peek, *tools]), bus, **options)


async def test_a_call_is_recorded_as_command_then_result(
    bus: InProcessEventBus, workspace: Path
) -> None:
    call = ToolCall(name="add", arguments={"a": 2, "b": 3})

    result = await executor_for(bus).execute(call, scope(workspace))

    assert (result.text, result.is_error, result.metadata["outcome"]) == ("5", False, "ok")
    events = await recorded(bus)
    assert types(events) == ["tool_command", "tool_result"]
    assert events[0].data.call == call  # type: ignore[union-attr]
    assert isinstance(events[1], ToolResultEvent)
    assert events[1].data.result == result
    assert events[1].causation_id == events[0].id
    assert events[1].run_id == "r1"


async def test_invalid_arguments_are_an_error_result_sent_back_not_raised(
    bus: InProcessEventBus, workspace: Path
) -> None:
    call = ToolCall(name="add", arguments={"a": "not a number"})

    result = await executor_for(bus).execute(call, scope(workspace))

    assert result.is_error
    assert result.metadata["outcome"] == "invalid_arguments"
    assert "a:" in result.text
    assert "Fix the arguments" in result.text
    assert types(await recorded(bus)) == ["tool_command", "tool_result"]


async def test_unknown_arguments_are_refused(bus: InProcessEventBus, workspace: Path) -> None:
    call = ToolCall(name="add", arguments={"a": 1, "c": 2})

    result = await executor_for(bus).execute(call, scope(workspace))

    assert result.metadata["outcome"] == "invalid_arguments"
    assert "c:" in result.text


async def test_an_unknown_tool_is_an_error_result_listing_the_known_ones(
    bus: InProcessEventBus, workspace: Path
) -> None:
    result = await executor_for(bus).execute(ToolCall(name="nope"), scope(workspace))

    assert result.is_error
    assert result.metadata["outcome"] == "unknown_tool"
    assert "add" in result.text
    assert "peek" in result.text


async def test_a_tool_that_raises_becomes_an_error_result(
    bus: InProcessEventBus, workspace: Path
) -> None:
    @tool
    async def broken() -> str:
        """Fails."""
        raise ValueError("the disk is made of cheese")

    result = await executor_for(bus, broken).execute(ToolCall(name="broken"), scope(workspace))

    assert result.is_error
    assert result.metadata["outcome"] == "error"
    assert result.text == "broken raised ValueError: the disk is made of cheese"
    assert types(await recorded(bus)) == ["tool_command", "tool_result"]


async def test_a_tool_error_shows_its_message_and_hint(
    bus: InProcessEventBus, workspace: Path
) -> None:
    @tool(inline=True)
    def picky() -> str:
        """Refuses."""
        raise ToolError("no such branch 'mian'", hint="did you mean 'main'?")

    result = await executor_for(bus, picky).execute(ToolCall(name="picky"), scope(workspace))

    assert result.metadata["outcome"] == "error"
    assert result.text == "no such branch 'mian' (hint: did you mean 'main'?)"


async def test_a_tool_output_marked_as_error_keeps_its_metadata(
    bus: InProcessEventBus, workspace: Path
) -> None:
    @tool(inline=True)
    def failing() -> ToolOutput:
        """Returns a failure."""
        return ToolOutput("exit code 2", is_error=True, metadata={"exit_code": 2})

    result = await executor_for(bus, failing).execute(ToolCall(name="failing"), scope(workspace))

    assert result.is_error
    assert result.metadata == {"outcome": "error", "exit_code": 2}


@dataclass
class Change:
    type: str
    path: str


async def test_json_like_values_are_sent_as_json(bus: InProcessEventBus, workspace: Path) -> None:
    @tool(inline=True)
    def data() -> dict[str, Any]:
        """Data."""
        return {"files": ["a.py"], "count": 1}

    @tool(inline=True)
    def nothing_found() -> list[str]:
        """An empty list is still an answer."""
        return []

    @tool(inline=True)
    def records() -> list[Change]:
        """Objects with a `type` field are data, not content parts."""
        return [Change(type="added", path="a.py")]

    executor = executor_for(bus, data, nothing_found, records)
    result = await executor.execute(ToolCall(name="data"), scope(workspace))
    empty = await executor.execute(ToolCall(name="nothing_found"), scope(workspace))
    typed = await executor.execute(ToolCall(name="records"), scope(workspace))

    assert result.text == '{"files":["a.py"],"count":1}'
    assert empty.text == "[]"
    assert typed.text == '[{"type":"added","path":"a.py"}]'


async def test_content_parts_are_passed_through(bus: InProcessEventBus, workspace: Path) -> None:
    @tool(inline=True)
    def parts() -> list[TextPart]:
        """Parts."""
        return [TextPart(text="one"), TextPart(text="two")]

    result = await executor_for(bus, parts).execute(ToolCall(name="parts"), scope(workspace))

    assert [p.text for p in result.content] == ["one", "two"]  # type: ignore[union-attr]


async def test_a_tool_that_hangs_ends_with_the_timeout_outcome(
    bus: InProcessEventBus, workspace: Path
) -> None:
    stopped = asyncio.Event()

    @tool(timeout=0.05)
    async def hang() -> str:
        """Never answers."""
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()
        return "unreachable"

    result = await executor_for(bus, hang).execute(ToolCall(name="hang"), scope(workspace))

    assert result.is_error
    assert result.metadata["outcome"] == "timeout"
    assert result.text == "hang timed out after 0.05 s"
    assert stopped.is_set()  # the tool was stopped, not left running
    assert types(await recorded(bus)) == ["tool_command", "tool_result"]


async def test_the_tools_own_timeout_is_capped_by_the_executors_ceiling(
    bus: InProcessEventBus, workspace: Path
) -> None:
    @tool(timeout=3600)
    async def slow(context: ToolContext) -> str:
        """Slow."""
        await asyncio.Event().wait()
        return f"{context.timeout}"

    executor = executor_for(bus, slow, max_timeout=0.05)

    result = await executor.execute(ToolCall(name="slow"), scope(workspace))

    assert result.metadata["outcome"] == "timeout"
    assert "0.05 s" in result.text


async def test_a_sync_tool_that_hangs_times_out_and_sees_the_cancellation(
    bus: InProcessEventBus, workspace: Path
) -> None:
    saw_cancel = threading.Event()

    @tool(timeout=0.05)
    def spin(context: ToolContext) -> str:
        """Polls its cancellation flag, as long sync loops should."""
        while not context.cancelled:
            saw_cancel.wait(0.005)
        saw_cancel.set()
        context.check_cancelled()
        return "unreachable"

    result = await executor_for(bus, spin).execute(ToolCall(name="spin"), scope(workspace))

    assert result.metadata["outcome"] == "timeout"
    assert await asyncio.to_thread(saw_cancel.wait, STUCK)


async def test_cancelling_a_running_call_records_a_cancelled_result_and_propagates(
    bus: InProcessEventBus, workspace: Path
) -> None:
    started = asyncio.Event()
    tool_saw_cancel = asyncio.Event()

    @tool
    async def wait_forever() -> str:
        """Waits."""
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            tool_saw_cancel.set()
            raise
        return "unreachable"

    executor = executor_for(bus, wait_forever)
    task = asyncio.create_task(executor.execute(ToolCall(name="wait_forever"), scope(workspace)))
    await asyncio.wait_for(started.wait(), STUCK)

    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert tool_saw_cancel.is_set()
    events = await recorded(bus)
    assert types(events) == ["tool_command", "tool_result"]
    assert isinstance(events[1], ToolResultEvent)
    assert events[1].data.result.metadata["outcome"] == "cancelled"
    assert events[1].data.result.is_error


async def test_cancelling_a_sync_tool_sets_its_cancelled_flag(
    bus: InProcessEventBus, workspace: Path
) -> None:
    started = threading.Event()
    finished = threading.Event()

    @tool
    def loop(context: ToolContext) -> str:
        """Loops until cancelled."""
        started.set()
        while not context.cancelled:
            finished.wait(0.005)
        finished.set()
        return "stopped"

    executor = executor_for(bus, loop)
    task = asyncio.create_task(executor.execute(ToolCall(name="loop"), scope(workspace)))
    assert await asyncio.to_thread(started.wait, STUCK)

    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(finished.wait, STUCK)


async def test_a_tool_raising_tool_cancelled_ends_with_the_cancelled_outcome(
    bus: InProcessEventBus, workspace: Path
) -> None:
    @tool(inline=True)
    def gives_up(context: ToolContext) -> str:
        """Cancelled from inside."""
        context.cancel()
        context.check_cancelled()
        return "unreachable"

    result = await executor_for(bus, gives_up).execute(ToolCall(name="gives_up"), scope(workspace))

    assert result.metadata["outcome"] == "cancelled"


async def test_progress_events_are_published_in_order_before_the_result(
    bus: InProcessEventBus, workspace: Path
) -> None:
    @tool
    async def steps(progress: Progress) -> str:
        """Reports three steps."""
        for n, part in enumerate("abc", 1):
            progress(percent=n * 33, message=f"step {n}", output=part)
            await asyncio.sleep(0)  # let the executor publish (or coalesce) meanwhile
        return "done"

    result = await executor_for(bus, steps).execute(ToolCall(name="steps"), scope(workspace))

    events = await recorded(bus)
    assert result.text == "done"
    assert types(events)[0] == "tool_command"
    assert types(events)[-1] == "tool_result"
    progress = [e for e in events[1:-1] if isinstance(e, ToolProgressEvent)]
    assert len(progress) == len(events) - 2 >= 1
    assert "".join(e.data.output or "" for e in progress) == "abc"
    percents = [e.data.percent or 0.0 for e in progress]
    assert percents == sorted(percents)
    assert percents[-1] == 99
    assert progress[-1].data.message == "step 3"
    assert all(e.data.call_id == events[0].data.call.id for e in progress)  # type: ignore[union-attr]


async def test_progress_from_a_sync_tool_thread_arrives_before_the_result(
    bus: InProcessEventBus, workspace: Path
) -> None:
    @tool
    def report_last(context: ToolContext) -> str:
        """Reports just before returning, from its worker thread."""
        for n in range(5):
            context.report_progress(output=f"{n};")
        return "done"

    await executor_for(bus, report_last).execute(ToolCall(name="report_last"), scope(workspace))

    events = await recorded(bus)
    assert types(events)[-1] == "tool_result"
    outputs = [e.data.output for e in events if isinstance(e, ToolProgressEvent)]
    assert "".join(o or "" for o in outputs) == "0;1;2;3;4;"


async def test_progress_output_in_one_event_is_cut_to_a_bounded_size(
    bus: InProcessEventBus, workspace: Path
) -> None:
    @tool(inline=True)
    def chatty(progress: Progress) -> str:
        """Reports a lot at once."""
        progress(output="y" * 1_000_000)
        return "ok"

    await executor_for(bus, chatty).execute(ToolCall(name="chatty"), scope(workspace))

    [event] = [e for e in await recorded(bus) if isinstance(e, ToolProgressEvent)]
    assert event.data.output is not None
    assert len(event.data.output) < 10_000
    assert "characters omitted" in event.data.output


async def test_the_calls_of_one_turn_run_concurrently(
    bus: InProcessEventBus, workspace: Path
) -> None:
    # Each call waits for the other: run one after the other, they would both time out.
    barrier = asyncio.Barrier(2)

    @tool(timeout=STUCK)
    async def meet(name: str) -> str:
        """Waits for the other call."""
        await barrier.wait()
        return name

    calls = [ToolCall(name="meet", arguments={"name": n}) for n in ("first", "second")]

    results = await executor_for(bus, meet).execute_many(calls, scope(workspace))

    assert [r.text for r in results] == ["first", "second"]
    assert [r.call_id for r in results] == [c.id for c in calls]
    assert all(r.metadata["outcome"] == "ok" for r in results)


async def test_sync_calls_of_one_turn_run_in_parallel_threads(
    bus: InProcessEventBus, workspace: Path
) -> None:
    barrier = threading.Barrier(2, timeout=STUCK)

    @tool
    def meet_in_thread(name: str) -> str:
        """Waits for the other call in another thread."""
        barrier.wait()
        return name

    calls = [ToolCall(name="meet_in_thread", arguments={"name": n}) for n in "ab"]

    results = await executor_for(bus, meet_in_thread).execute_many(calls, scope(workspace))

    assert [r.text for r in results] == ["a", "b"]


async def test_one_failing_call_does_not_stop_the_others_of_its_turn(
    bus: InProcessEventBus, workspace: Path
) -> None:
    calls = [ToolCall(name="add", arguments={"a": 1}), ToolCall(name="missing")]

    results = await executor_for(bus).execute_many(calls, scope(workspace))

    assert [r.metadata["outcome"] for r in results] == ["ok", "unknown_tool"]


async def test_cancelling_a_turn_cancels_and_records_every_running_call(
    bus: InProcessEventBus, workspace: Path
) -> None:
    started = asyncio.Semaphore(0)

    @tool
    async def block() -> str:
        """Blocks."""
        started.release()
        await asyncio.Event().wait()
        return "unreachable"

    executor = executor_for(bus, block)
    turn = asyncio.create_task(
        executor.execute_many([ToolCall(name="block"), ToolCall(name="block")], scope(workspace))
    )
    for _ in range(2):
        await asyncio.wait_for(started.acquire(), STUCK)

    turn.cancel()

    with pytest.raises(asyncio.CancelledError):
        await turn
    results = [e for e in await recorded(bus) if isinstance(e, ToolResultEvent)]
    assert [e.data.result.metadata["outcome"] for e in results] == ["cancelled", "cancelled"]


async def test_a_tool_printing_100_mb_is_truncated_with_a_marker(
    bus: InProcessEventBus, workspace: Path
) -> None:
    @tool(inline=True)
    def flood() -> str:
        """Prints a lot."""
        return "HEAD" + "x" * 100_000_000 + "TAIL"

    executor = executor_for(bus, flood, max_output_chars=10_000)

    result = await executor.execute(ToolCall(name="flood"), scope(workspace))

    assert result.text.startswith("HEAD")
    assert result.text.endswith("TAIL")
    assert len(result.text) < 10_100
    assert f"[... {100_000_008 - 10_000} characters omitted ...]" in result.text
    assert result.metadata["truncated_chars"] == 100_000_008 - 10_000
    [event] = [e for e in await recorded(bus) if isinstance(e, ToolResultEvent)]
    assert event.data.result.text == result.text  # the log holds the cut text too


def test_truncate_keeps_head_and_tail_around_a_marker() -> None:
    text = "a" * 50 + "b" * 50

    cut = truncate(text, 20)

    assert cut == "a" * 15 + "\n[... 80 characters omitted ...]\n" + "b" * 5
    assert truncate("short", 20) == "short"


async def test_plan_mode_refuses_tools_that_change_things(
    bus: InProcessEventBus, workspace: Path
) -> None:
    ran: list[str] = []

    @tool(inline=True)
    def write() -> str:
        """Writes."""
        ran.append("write")
        return "written"

    executor = executor_for(bus, write)
    plan = scope(workspace, mode="plan")

    refused = await executor.execute(ToolCall(name="write"), plan)
    allowed = await executor.execute(ToolCall(name="peek"), plan)

    assert refused.metadata["outcome"] == "denied"
    assert "plan mode" in refused.text
    assert ran == []
    assert allowed.metadata["outcome"] == "ok"


class Gate:
    """A permission gate that answers from a table and remembers what it was asked."""

    def __init__(self, allow: bool, reason: str | None = None) -> None:
        self.allow = allow
        self.reason = reason
        self.asked: list[tuple[str, str, str | None]] = []

    async def authorize(self, tool: Tool, call: ToolCall, scope: CallScope) -> Authorization:
        self.asked.append((tool.name, call.id, scope.session_id))
        return Authorization(self.allow, self.reason, decided_by="test")


async def test_a_gate_that_denies_stops_the_call_with_its_reason(
    bus: InProcessEventBus, workspace: Path
) -> None:
    ran: list[int] = []

    @tool(inline=True)
    def guarded() -> str:
        """Guarded."""
        ran.append(1)
        return "ran"

    gate = Gate(allow=False, reason="shell access is off for this user")
    call = ToolCall(name="guarded")

    result = await executor_for(bus, guarded, gate=gate).execute(call, scope(workspace))

    assert result.metadata["outcome"] == "denied"
    assert result.text == "permission denied for guarded: shell access is off for this user"
    assert gate.asked == [("guarded", call.id, "s1")]
    assert ran == []


async def test_a_gate_that_allows_lets_the_call_run(
    bus: InProcessEventBus, workspace: Path
) -> None:
    gate = Gate(allow=True)

    result = await executor_for(bus, gate=gate).execute(
        ToolCall(name="add", arguments={"a": 1}), scope(workspace)
    )

    assert result.text == "2"
    assert len(gate.asked) == 1


async def test_invalid_arguments_are_reported_before_the_gate_is_asked(
    bus: InProcessEventBus, workspace: Path
) -> None:
    gate = Gate(allow=True)

    result = await executor_for(bus, gate=gate).execute(ToolCall(name="add"), scope(workspace))

    assert result.metadata["outcome"] == "invalid_arguments"
    assert gate.asked == []


async def test_the_context_carries_the_scope_limits_and_time_limit(
    bus: InProcessEventBus, workspace: Path
) -> None:
    seen: list[ToolContext] = []

    @tool(inline=True, timeout=7)
    def inspect_context(context: ToolContext) -> str:
        """Keeps its context."""
        seen.append(context)
        return "ok"

    limits = {"memory_mb": 256, "cpu_percent": 50, "timeout_secs": 30}
    executor = executor_for(bus, inspect_context, limits=limits, max_timeout=30)
    call = ToolCall(name="inspect_context")

    await executor.execute(call, scope(workspace, user_id="u1", agent="coder"))

    [ctx] = seen
    assert (ctx.workspace, ctx.session_id, ctx.run_id) == (workspace, "s1", "r1")
    assert (ctx.user_id, ctx.agent, ctx.call_id, ctx.tool) == ("u1", "coder", call.id, call.name)
    assert ctx.limits == limits
    assert ctx.timeout == 7


async def test_a_runs_own_bus_can_record_its_calls(bus: InProcessEventBus, workspace: Path) -> None:
    own = InProcessEventBus(InMemoryEventStore())

    await executor_for(bus).execute(
        ToolCall(name="add", arguments={"a": 1}), scope(workspace), events=own
    )

    assert await recorded(bus) == []
    assert types(await recorded(own)) == ["tool_command", "tool_result"]


def test_registry_errors_are_the_projects_errors() -> None:
    # The executor turns lookups into results; the registry itself raises by meaning.
    with pytest.raises(NotFoundError):
        ToolRegistry().require("nothing")
    with pytest.raises(InvalidInputError):
        ToolRegistry().register(object())  # type: ignore[arg-type]


async def test_progress_reported_after_the_call_ended_is_not_recorded(
    bus: InProcessEventBus, workspace: Path
) -> None:
    loop = asyncio.get_running_loop()
    release = threading.Event()
    reported = asyncio.Event()

    @tool(timeout=0.05)
    def late(context: ToolContext) -> str:
        """Reports once its call has timed out (its thread cannot be stopped)."""
        release.wait(STUCK)
        context.report_progress(output="too late")
        loop.call_soon_threadsafe(reported.set)  # runs after the report reached the loop
        return "unused"

    result = await executor_for(bus, late).execute(ToolCall(name="late"), scope(workspace))
    release.set()
    await asyncio.wait_for(reported.wait(), STUCK)
    await asyncio.sleep(0)  # a publication started by the report would have run by now

    assert result.metadata["outcome"] == "timeout"
    assert types(await recorded(bus)) == ["tool_command", "tool_result"]


class BrokenGate:
    """A permission check that fails with an unexpected error."""

    async def authorize(self, tool: Tool, call: ToolCall, scope: CallScope) -> Authorization:
        raise RuntimeError("policy store unreachable")


async def test_a_gate_that_breaks_refuses_the_call_and_records_a_result(
    bus: InProcessEventBus, workspace: Path
) -> None:
    ran: list[int] = []

    @tool(inline=True)
    def guarded() -> str:
        """Guarded."""
        ran.append(1)
        return "ran"

    call = ToolCall(name="guarded")
    result = await executor_for(bus, guarded, gate=BrokenGate()).execute(call, scope(workspace))

    assert result.metadata["outcome"] == "denied"
    assert "the permission check failed (RuntimeError: policy store unreachable)" in result.text
    assert ran == []
    assert types(await recorded(bus)) == ["tool_command", "tool_result"]


class BadValidator:
    """A hand-written tool whose own argument check crashes."""

    name = "fragile"
    description = "Fragile."
    parameters: dict[str, Any] = {"type": "object"}
    read_only = True
    destructive = False
    timeout = None

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        raise KeyError("oops")

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> Any:
        return "never"


async def test_a_tool_whose_validation_crashes_gets_an_error_result(
    bus: InProcessEventBus, workspace: Path
) -> None:
    result = await executor_for(bus, BadValidator()).execute(
        ToolCall(name="fragile"), scope(workspace)
    )

    assert result.metadata["outcome"] == "error"
    assert "could not check its arguments: KeyError" in result.text
    assert types(await recorded(bus)) == ["tool_command", "tool_result"]


def test_capture_keeps_everything_under_the_limit() -> None:
    capture = OutputCapture(100)
    capture.add("hello ")
    capture.add("world")

    assert capture.text() == "hello world"
    assert capture.omitted == 0


def test_capture_keeps_head_and_tail_of_a_flood() -> None:
    capture = OutputCapture(8)  # 6 characters of head, 2 of tail
    for piece in ("abc", "def", "ghi", "jkl"):
        capture.add(piece)

    assert capture.text() == "abcdef\n[... 4 characters omitted ...]\nkl"
    assert (capture.total, capture.omitted) == (12, 4)
    assert capture.text() == truncate("abcdefghijkl", 8)


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def progress_of(events: list[Event]) -> list[tuple[float | None, str | None, str | None]]:
    return [
        (e.data.percent, e.data.message, e.data.output)
        for e in events
        if isinstance(e, ToolProgressEvent)
    ]


async def test_reports_within_one_interval_become_one_event_and_the_last_is_flushed_first(
    bus: InProcessEventBus, workspace: Path
) -> None:
    clock = FakeClock()

    @tool
    async def burst(progress: Progress) -> str:
        """Reports in bursts, with the clock moved between them (no awaits: nothing else runs)."""
        progress(output="a;")  # the first report goes out at once
        for n in range(5):
            progress(percent=n * 10, output=f"{n};")  # within the interval: merged
        clock.advance(0.4)
        progress(output="late;")  # still within it
        clock.advance(0.1)
        progress(message="next", output="b;")  # the interval is over: one event for all
        clock.advance(0.2)
        progress(output="c;")  # within the next interval: left for the final flush
        return "done"

    executor = executor_for(bus, burst, progress_interval=0.5, clock=clock)

    await executor.execute(ToolCall(name="burst"), scope(workspace))

    events = await recorded(bus)
    assert types(events) == ["tool_command"] + ["tool_progress"] * 3 + ["tool_result"]
    assert progress_of(events) == [
        (None, None, "a;"),
        (40.0, "next", "0;1;2;3;4;late;b;"),
        (None, None, "c;"),
    ]


async def test_a_report_left_waiting_goes_out_once_the_interval_is_over_without_another(
    bus: InProcessEventBus, workspace: Path
) -> None:
    clock = FakeClock()
    seen = bus.subscribe(EventFilter(types=frozenset({"tool_progress"})))
    second_out = asyncio.Event()

    @tool
    async def slow(progress: Progress) -> str:
        """Reports twice, then waits until the second report has been published."""
        progress(output="first")
        progress(output="second")  # within the interval: waits
        clock.advance(0.05)
        await asyncio.wait_for(second_out.wait(), STUCK)
        return "done"

    executor = executor_for(bus, slow, progress_interval=0.05, clock=clock)
    task = asyncio.create_task(executor.execute(ToolCall(name="slow"), scope(workspace)))
    async with seen:
        outputs = []
        while len(outputs) < 2:
            event = await asyncio.wait_for(anext(seen), STUCK)
            assert isinstance(event, ToolProgressEvent)
            outputs.append(event.data.output)
    second_out.set()
    await task

    assert outputs == ["first", "second"]


async def test_past_the_output_budget_only_percent_and_message_are_streamed(
    bus: InProcessEventBus, workspace: Path
) -> None:
    clock = FakeClock()

    @tool
    async def flood(progress: Progress) -> str:
        """Prints more than the budget, one interval at a time."""
        for piece in ("1234567", "abcdefgh", "more", "and more"):
            progress(output=piece)
            clock.advance(1)
        progress(percent=50, output="still more")
        clock.advance(1)
        progress(message="almost done")
        return "done"

    executor = executor_for(bus, flood, progress_interval=1, max_progress_chars=10, clock=clock)

    await executor.execute(ToolCall(name="flood"), scope(workspace))

    note = "\n[... output past 10 characters is not streamed as progress ...]\n"
    assert progress_of(await recorded(bus)) == [
        (None, None, "1234567"),
        (None, None, "abc" + note),
        (50.0, None, None),
        (None, "almost done", None),
    ]


async def test_a_timed_out_call_answers_with_its_last_status_and_output(
    bus: InProcessEventBus, workspace: Path
) -> None:
    @tool(timeout=0.05)
    async def stuck(progress: Progress) -> str:
        """Says something, then hangs."""
        progress(message="compiling", output="step 1 ok\nstep 2 ")
        progress(percent=20, message="linking", output="ok\n")
        await asyncio.Event().wait()
        return "unreachable"

    result = await executor_for(bus, stuck).execute(ToolCall(name="stuck"), scope(workspace))

    assert result.metadata["outcome"] == "timeout"
    assert result.text == (
        "stuck timed out after 0.05 s\nIts last status: linking\nIts output:\nstep 1 ok\nstep 2 ok"
    )
    assert types(await recorded(bus))[-2:] == ["tool_progress", "tool_result"]


async def test_a_stopped_call_answers_with_only_the_end_of_a_long_output(
    bus: InProcessEventBus, workspace: Path
) -> None:
    @tool(timeout=0.05)
    async def long(progress: Progress) -> str:
        """Prints a lot, then hangs."""
        for n in range(1000):
            progress(output=f"line {n:04}\n")
        await asyncio.Event().wait()
        return "unreachable"

    result = await executor_for(bus, long).execute(ToolCall(name="long"), scope(workspace))

    first, *lines = result.text.splitlines()[1:]
    assert first == f"The last {MAX_STOPPED_OUTPUT_CHARS} of the 10000 characters of its output:"
    assert lines[-1] == "line 0999"
    assert len("\n".join(lines)) < MAX_STOPPED_OUTPUT_CHARS


async def test_a_cancelled_call_answers_with_the_output_it_had_reported(
    bus: InProcessEventBus, workspace: Path
) -> None:
    reported = asyncio.Event()

    @tool
    async def waits(progress: Progress) -> str:
        """Reports, then waits to be cancelled."""
        progress(output="half way\n")
        reported.set()
        await asyncio.Event().wait()
        return "unreachable"

    task = asyncio.create_task(
        executor_for(bus, waits).execute(ToolCall(name="waits"), scope(workspace))
    )
    await asyncio.wait_for(reported.wait(), STUCK)

    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    last = (await recorded(bus))[-1]
    assert isinstance(last, ToolResultEvent)
    assert last.data.result.text == (
        "the call was cancelled before it finished\nIts output:\nhalf way"
    )


class ProgressRefusingBus(InProcessEventBus):
    """A bus whose store takes everything but progress (as a store that fails at times)."""

    async def publish(self, event: Event, *, expected_seq: int | None = None) -> Event:
        if isinstance(event, ToolProgressEvent):
            raise OSError("the disk is full")
        return await super().publish(event, expected_seq=expected_seq)


async def test_progress_that_cannot_be_recorded_does_not_fail_the_call(workspace: Path) -> None:
    bus = ProgressRefusingBus(InMemoryEventStore())

    @tool
    async def chatty(progress: Progress) -> str:
        """Reports, yields, reports again."""
        progress(output="one")
        await asyncio.sleep(0)
        progress(output="two")
        return "done"

    result = await executor_for(bus, chatty).execute(ToolCall(name="chatty"), scope(workspace))

    assert (result.text, result.metadata["outcome"]) == ("done", "ok")
    assert types(await recorded(bus)) == ["tool_command", "tool_result"]


@pytest.mark.parametrize(
    ("option", "value"),
    [("progress_interval", -1.0), ("progress_interval", float("nan")), ("max_progress_chars", -1)],
)
def test_progress_limits_that_make_no_sense_are_refused(
    bus: InProcessEventBus, option: str, value: float
) -> None:
    with pytest.raises(InvalidInputError, match=f"{option} must be"):
        executor_for(bus, **{option: value})
