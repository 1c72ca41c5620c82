"""Deterministic replay of a recorded run: the loop runs again, fed the recorded model
answers instead of calling a model, and every difference from the record is reported.

The replay is given what the run was given, as the log has it: the tools offered to the model
(from the first ``llm_command``, its prompt expanded, not guessed from the calls made), the
session's history, context and channel as they stood when the run started (or the history
sent with a run without a session), the request's overrides (temperature, max_tokens,
streaming), the model, the mode, the skills section of the system prompt, the plan approvals
and the messages that joined the run (``steer``). Only the agent's definition is the current
one, so a changed prompt shows as a divergence; a run resumed after a restart replays as one
run (a model call cut short by the crash is not one the model answered; a call run again is
one call).

Tools either answer from the record (the default: nothing is executed, so a replay has no
side effects) or run for real in a scratch workspace (``live_tools``), which shows whether
they still behave as they did; what a person or the runtime decided (a refusal, a call
interrupted by a restart) is answered from the record either way. The replay writes to an
in-memory log, never the real one.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from promptline.core.errors import (
    InvalidInputError,
    NotFoundError,
    PromptLineError,
    ProviderRequestRejected,
)
from promptline.core.events import (
    ErrorEvent,
    Event,
    LlmCommandEvent,
    LlmResultEvent,
    RunQueuedEvent,
    RunStartedEvent,
    RunSteeredEvent,
    ToolCommandEvent,
    ToolResultEvent,
)
from promptline.core.messages import Message, ToolCall, ToolResult
from promptline.events.bus import InProcessEventBus
from promptline.events.content import expand_prompts
from promptline.events.memory import InMemoryEventStore
from promptline.events.protocols import EventBus, EventFilter, EventStore
from promptline.models.types import ModelRequest, ModelResponse, StreamDelta
from promptline.runtime.agent import Agent
from promptline.runtime.records import fold_run
from promptline.runtime.run import SUBMIT_PLAN, Run, RunResult, SessionView
from promptline.runtime.runtime import OVERRIDABLE
from promptline.runtime.services import RunServices
from promptline.sessions.projection import SessionHead, fold
from promptline.tools.base import Tool, ToolContext, ToolError
from promptline.tools.executor import CallScope, ToolExecutor
from promptline.tools.registry import ToolRegistry
from promptline.tools.skills.prompt import SKILLS_HEADER

__all__ = ["Divergence", "ReplayReport", "replay_run"]

DECIDED_OUTCOMES = frozenset({"denied", "unknown_tool", "interrupted"})
"""Tool outcomes decided around the tool rather than by it (a refusal, a name no tool has, a
call cut short by a restart): a replay answers them from the record even with live tools."""

_ISO_TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d|Z)?"
_PLAN_REFUSED = re.compile(r"The plan was not approved \((.*)\)\. Ask what to change\.", re.S)
_NO_APPROVER = "no one can approve plans here"


@dataclass(frozen=True, slots=True)
class Divergence:
    """One place where the replay did not do what the record says."""

    step: str
    recorded: str
    replayed: str

    def __str__(self) -> str:
        return f"{self.step}: recorded {self.recorded}, replayed {self.replayed}"


@dataclass
class ReplayReport:
    """What a replay did and where it differed from the record."""

    run_id: str
    recorded_status: str
    replayed_status: str
    model_calls: int
    tool_calls: list[str]
    divergences: list[Divergence] = field(default_factory=list)
    result: RunResult | None = None
    recorded_model_calls: int = 0
    """Model calls the record has an answer (or a failure) for."""
    resumed: int = 0
    """How many times the recorded run was resumed after a restart."""

    @property
    def diverged(self) -> bool:
        """True when anything differed."""
        return bool(self.divergences)


@dataclass(frozen=True, slots=True)
class _ModelCall:
    """One recorded model call that got an answer or failed (one cut short by a crash did
    neither: the resumed run made it again)."""

    command: LlmCommandEvent
    result: LlmResultEvent | None
    error: ErrorEvent | None


class _RecordedFailure(PromptLineError):
    """A model call failure as the record has it, raised again where it happened."""

    def __init__(self, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(message, **details)
        self.code = code


class _ReplayClock:
    """The time of the model call about to be made, as recorded: a prompt that shows the time
    is rendered with the time of the call it belongs to. Keeps what it told."""

    def __init__(self, start: datetime) -> None:
        self.current = start
        self.told: set[str] = set()

    def now(self) -> datetime:
        self.told.add(self.current.isoformat())
        return self.current


class _RecordedModel:
    """Answers the n-th model call with the n-th recorded answer (or raises its recorded
    failure), comparing the request with the recorded one on the way."""

    def __init__(
        self,
        calls: Sequence[_ModelCall],
        clock: _ReplayClock,
        steering: dict[int, list[Run]],
    ) -> None:
        self.recorded = list(calls)
        self.clock = clock
        self.steering = steering
        self.run: Run | None = None
        self.calls = 0
        self.divergences: list[Divergence] = []

    @property
    def name(self) -> str:
        return "replay"

    async def complete(self, request: ModelRequest) -> ModelResponse:
        index = self.calls
        self.calls += 1
        if index >= len(self.recorded):
            self.divergences.append(
                Divergence(
                    f"model call {index + 1}",
                    f"{len(self.recorded)} model call(s)",
                    "one more model call",
                )
            )
            raise ProviderRequestRejected(
                f"the record has no answer for model call {index + 1}", provider="replay"
            )
        call = self.recorded[index]
        self._compare(index, call.command, request)
        if index + 1 < len(self.recorded):
            self.clock.current = self.recorded[index + 1].command.ts
        if self.run is not None:
            # Messages that joined the run before its next call join the replay there too.
            for queued in self.steering.pop(index + 1, []):
                self.run.steer(queued)
        if call.result is None:
            assert call.error is not None
            error = call.error.data
            raise _RecordedFailure(error.code, error.message, dict(error.details))
        data = call.result.data
        return ModelResponse(
            message=data.message or Message(role="assistant"),
            model=data.model,
            provider=data.provider or "replay",
            finish_reason=data.finish_reason,
            usage=data.usage,
            latency_ms=0.0,
            cost_usd=data.cost_usd,
        )

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamDelta | ModelResponse]:
        yield await self.complete(request)

    def _compare(self, index: int, command: LlmCommandEvent, request: ModelRequest) -> None:
        step = f"model call {index + 1}"
        recorded = command.data
        if recorded.model != request.model:
            self._differ(f"{step}, model", recorded.model or "-", request.model or "-")
        before_tools = [str(t.get("name")) for t in recorded.tools]
        after_tools = [t.name for t in request.tools]
        if before_tools != after_tools:
            self._differ(
                f"{step}, tools offered",
                ", ".join(before_tools) or "none",
                ", ".join(after_tools) or "none",
            )
        for name, value in (
            ("temperature", request.temperature),
            ("max_tokens", request.max_tokens),
        ):
            if recorded.params.get(name) != value:
                self._differ(f"{step}, {name}", str(recorded.params.get(name)), str(value))
        before = [_shape(m) for m in recorded.messages]
        after = [_shape(m) for m in request.messages]
        if before == after:
            return
        at = next(
            (
                i
                for i, (a, b) in enumerate(zip(before, after, strict=False))
                if a != b and not self._same_but_time(a, b)
            ),
            None,
        )
        if at is None:
            if len(before) == len(after):
                return
            at = min(len(before), len(after))
        if at < len(before) and at < len(after):
            recorded_text, replayed_text = _contrast(_said(before[at]), _said(after[at]))
        else:
            recorded_text = _preview(_said(before[at])) if at < len(before) else "no message"
            replayed_text = _preview(_said(after[at])) if at < len(after) else "no message"
        self._differ(f"{step}, prompt message {at + 1}", recorded_text, replayed_text)

    def _same_but_time(self, recorded: tuple[Any, ...], replayed: tuple[Any, ...]) -> bool:
        """True when two system messages differ only in the time the prompt shows (rendered
        when the call was made: the replay renders the recorded time of the call, which is a
        moment after the one the run rendered)."""
        if recorded[0] != "system" or replayed[0] != "system" or recorded[2:] != replayed[2:]:
            return False
        text: str = replayed[1]
        shown = [told for told in self.clock.told if told in text]
        if not shown:
            return False
        pattern = re.escape(text)
        for told in shown:
            pattern = pattern.replace(re.escape(told), _ISO_TIME)
        return re.fullmatch(pattern, recorded[1]) is not None

    def _differ(self, step: str, recorded: str, replayed: str) -> None:
        self.divergences.append(Divergence(step, recorded, replayed))


class _OfferedTool:
    """A tool as the run offered it (the recorded name, description and schema). With
    ``live`` it validates and runs as that tool does now; otherwise it is never run (the
    replay's executor answers from the record)."""

    def __init__(self, spec: dict[str, Any], live: Tool | None) -> None:
        self.name = str(spec.get("name", ""))
        self.description = str(spec.get("description", ""))
        parameters = spec.get("parameters")
        self.parameters: dict[str, Any] = parameters if isinstance(parameters, dict) else {}
        self._live = live
        self.read_only = live.read_only if live is not None else True
        self.destructive = live.destructive if live is not None else False
        self.timeout = live.timeout if live is not None else None

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        return self._live.validate(arguments) if self._live is not None else arguments

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> Any:
        if self._live is None:
            raise ToolError(f"{self.name} is not a tool any more: the replay cannot run it")
        return await self._live.run(arguments, context)


class _ReplayExecutor(ToolExecutor):
    """Answers each call with the result recorded for its call id, or, with ``live``, runs
    it (except what was decided around the tool: see `DECIDED_OUTCOMES`)."""

    def __init__(
        self,
        registry: ToolRegistry,
        bus: EventBus,
        results: dict[str, ToolResult],
        *,
        live: bool,
        max_timeout: float,
    ) -> None:
        super().__init__(registry, bus, max_timeout=max_timeout)
        self._results = results
        self._live = live

    async def _execute(self, call: ToolCall, scope: CallScope, progress: Any) -> ToolResult:
        recorded = self._results.get(call.id)
        decided = recorded is not None and recorded.metadata.get("outcome") in DECIDED_OUTCOMES
        if self._live and not decided:
            return await super()._execute(call, scope, progress)
        if recorded is None:
            return ToolResult(
                call_id=call.id,
                name=call.name,
                content="the record has no result for this call",
                is_error=True,
                metadata={"outcome": "error"},
            )
        return recorded


class _RecordedApprovals:
    """The plan approver of a replay: each plan is approved or refused as it was."""

    def __init__(self, results: Sequence[ToolResult]) -> None:
        self._results = list(results)

    async def __call__(
        self, plan: str, scope: CallScope, events: EventBus
    ) -> tuple[bool, str | None]:
        if not self._results:
            return False, "the record has no decision on this plan"
        result = self._results.pop(0)
        if result.metadata.get("outcome") == "ok":
            return True, None
        refused = _PLAN_REFUSED.fullmatch(result.text)
        reason = refused.group(1) if refused else result.text
        return False, None if reason == "denied" else reason


async def replay_run(
    store: EventStore,
    run_id: str,
    *,
    agents: dict[str, Agent] | None = None,
    registry: ToolRegistry | None = None,
    live_tools: bool = False,
    workspace: Path | None = None,
    like: RunServices | None = None,
) -> ReplayReport:
    """Replay ``run_id`` from ``store`` and report every divergence.

    ``agents`` supplies the current definitions (the prompt template, the loop's settings); a
    run of an agent not there replays with a default definition. ``registry`` is needed for
    ``live_tools``. ``like`` is the services of the runtime that recorded the run: the replay
    takes its context-window lookup, context strategy and limits, so the conversation is
    fitted into the window as it was.
    """
    events = await expand_prompts(store, await store.read_all(EventFilter(run_id=run_id)))
    started = next((e for e in events if isinstance(e, RunStartedEvent)), None)
    if started is None:
        raise NotFoundError(
            f"no run {run_id!r} in the event log",
            hint="list runs with `promptline runs list`",
            run_id=run_id,
        )
    if started.data.input is None:
        raise InvalidInputError(f"run {run_id!r} recorded no input message; it cannot be replayed")
    if live_tools and registry is None:
        raise InvalidInputError("live_tools needs the tool registry")
    message = started.data.input
    record = fold_run(run_id, events)
    calls = _model_calls(events)
    tool_commands = _distinct_calls(events)
    tool_results = {
        e.data.result.call_id: e.data.result for e in events if isinstance(e, ToolResultEvent)
    }
    queued = next((e for e in events if isinstance(e, RunQueuedEvent)), None)
    offered, system = _offered(calls, message)

    session: SessionView | None = None
    history: list[Message] = list(queued.data.history) if queued is not None else []
    stream: list[Event] = []
    if started.session_id is not None:
        stream = await store.read_stream(started.stream_name)
        session, history = _session_before(started, stream)

    overrides = queued.data.overrides if queued is not None else {}
    base = (agents or {}).get(started.data.agent) or Agent(name=started.data.agent)
    agent = base.evolve(
        **{k: v for k, v in overrides.items() if k in OVERRIDABLE}, workspace=None, tools=None
    )
    mode: Literal["plan", "act"] = "plan" if started.data.mode == "plan" else "act"

    replay_store = InMemoryEventStore()
    bus = InProcessEventBus(replay_store, default_max_queue=100_000)
    tools = ToolRegistry(
        _OfferedTool(spec, registry.get(str(spec.get("name"))) if live_tools and registry else None)
        for spec in offered
    )
    clock = _ReplayClock(calls[0].command.ts if calls else started.ts)
    steering: dict[int, list[Run]] = {}
    model = _RecordedModel(calls, clock, steering)
    skills = _skills_section(system)
    plans = [
        decision
        for c in tool_commands
        if c.name == SUBMIT_PLAN.name
        and (decision := tool_results.get(c.id)) is not None
        and _is_plan_decision(decision)
    ]
    approver = None if all(r.text.startswith(_NO_APPROVER) for r in plans) else plans
    with tempfile.TemporaryDirectory(prefix="promptline-replay-") as scratch:
        services = RunServices(
            bus=bus,
            store=replay_store,
            models=model,
            executor=_ReplayExecutor(
                tools,
                bus,
                tool_results,
                live=live_tools,
                max_timeout=like.executor.max_timeout if like is not None else 300.0,
            ),
            clock=clock,
            workspaces_dir=Path(scratch),
            max_repeated_calls=like.max_repeated_calls if like is not None else 10**6,
            plan_approver=_RecordedApprovals(approver) if approver is not None else None,
            skills=_constant(skills),
        )
        if like is not None:
            services.capabilities = like.capabilities
            services.context_strategy = like.context_strategy
        if live_tools:
            agent = agent.evolve(workspace=workspace or Path(scratch))
        run = Run(
            services,
            agent,
            message,
            session=session,
            history=history,
            mode=mode,
            model=started.data.model,
            run_id=run_id,
            principal_user=started.user_id,
            principal_tenant=started.tenant_id,
        )
        model.run = run
        _schedule_steering(run, stream, calls, steering, services, agent)
        for queued_run in steering.pop(0, []):
            run.steer(queued_run)
        result = await run.result()
        replayed = await replay_store.read_all(EventFilter(run_id=run_id))
    report = ReplayReport(
        run_id=run_id,
        recorded_status=record.status,
        replayed_status=result.status,
        model_calls=model.calls,
        tool_calls=[c.name for c in _distinct_calls(replayed)],
        divergences=list(model.divergences),
        result=result,
        recorded_model_calls=len(calls),
        resumed=sum(1 for e in events if e.type == "run_resumed"),
    )
    _compare_tools(report, tool_commands, tool_results, replayed)
    if model.calls < len(calls):
        report.divergences.append(
            Divergence("model calls", f"{len(calls)}", f"{model.calls} (the replay ended early)")
        )
    if record.status != result.status and record.ended:
        report.divergences.append(Divergence("outcome", record.status, result.status))
    return report


def _model_calls(events: Sequence[Event]) -> list[_ModelCall]:
    """The recorded model calls of the loop that were answered or failed, in order. A call
    made inside the run for someone else (an MCP server's sampling request during a tool
    call, which carries a ``task``) is not one: the tool's answer is in the record."""
    results = {e.causation_id: e for e in events if isinstance(e, LlmResultEvent)}
    errors = {e.causation_id: e for e in events if isinstance(e, ErrorEvent)}
    calls = []
    for event in events:
        if not isinstance(event, LlmCommandEvent) or event.data.params.get("task"):
            continue
        result, error = results.get(event.id), errors.get(event.id)
        if result is not None or error is not None:
            calls.append(_ModelCall(event, result, error))
    return calls


def _distinct_calls(events: Sequence[Event]) -> list[ToolCall]:
    """The tool calls begun, each once (a call run again after a restart has two
    ``tool_command`` events), in the order they first began."""
    seen: dict[str, ToolCall] = {}
    for event in events:
        if isinstance(event, ToolCommandEvent):
            seen.setdefault(event.data.call.id, event.data.call)
    return list(seen.values())


def _offered(calls: Sequence[_ModelCall], message: Message) -> tuple[list[dict[str, Any]], str]:
    """The tools the run offered besides ``submit_plan`` and the system prompt of its first
    call, as its first model call sent them (a call summarising older turns is not one)."""
    target = _shape(message)
    for call in calls:
        data = call.command.data
        if any(_shape(m) == target for m in data.messages):
            system = "\n\n".join(m.text for m in data.messages if m.role == "system")
            tools = [t for t in data.tools if t.get("name") != SUBMIT_PLAN.name]
            return tools, system
    return [], ""


def _is_plan_decision(result: ToolResult) -> bool:
    """True for the result of a plan a person approved or refused (or could not: the run had
    no one to ask), as opposed to a call refused before anyone was asked."""
    text = result.text
    if result.metadata.get("outcome") == "ok":
        return True
    return _PLAN_REFUSED.fullmatch(text) is not None or text.startswith(_NO_APPROVER)


def _skills_section(system: str) -> str | None:
    """The skills section the recorded system prompt ends with, if it has one."""
    at = system.rfind(SKILLS_HEADER)
    if at < 0 or (at > 0 and not system[:at].endswith("\n\n")):
        return None
    return system[at:]


def _constant(section: str | None) -> Callable[[Collection[str]], str | None]:
    return lambda _names: section


def _session_before(
    started: RunStartedEvent, stream: Sequence[Event]
) -> tuple[SessionView, list[Message]]:
    """The session as it stood when the run started: its channel, context and history."""
    head: SessionHead | None = None
    history: list[Message] = []
    for event in stream:
        if event.seq >= started.seq:
            break
        head, added = fold(head, event)
        if added is not None and head is not None:
            history.append(added)
    assert started.session_id is not None
    view = SessionView(
        id=started.session_id,
        user_id=started.user_id or (head.user_id if head else "replay"),
        tenant_id=started.tenant_id or (head.tenant_id if head else "default"),
        channel=head.channel if head is not None else "cli",
        context=dict(head.context or {}) if head is not None else {},
        sandbox=head.sandbox if head is not None else None,
    )
    return view, history


def _schedule_steering(
    run: Run,
    stream: Sequence[Event],
    calls: Sequence[_ModelCall],
    steering: dict[int, list[Run]],
    services: RunServices,
    agent: Agent,
) -> None:
    """Queue the messages that joined the run (``run_steered``) to join the replay before
    the model call they joined before."""
    for event in stream:
        if not isinstance(event, RunSteeredEvent) or event.data.into != run.id:
            continue
        before = sum(1 for c in calls if c.command.seq < event.seq)
        joining = Run(
            services,
            agent,
            event.data.message,
            session=run.session,
            run_id=event.run_id,
            input_id=event.data.message_id,
        )
        steering.setdefault(before, []).append(joining)


def _compare_tools(
    report: ReplayReport,
    recorded: Sequence[ToolCall],
    recorded_results: dict[str, ToolResult],
    replayed: Sequence[Event],
) -> None:
    again = _distinct_calls(replayed)
    again_results = {
        e.data.result.call_id: e.data.result for e in replayed if isinstance(e, ToolResultEvent)
    }
    for index in range(max(len(recorded), len(again))):
        step = f"tool call {index + 1}"
        before = recorded[index] if index < len(recorded) else None
        after = again[index] if index < len(again) else None
        if before is None or after is None:
            report.divergences.append(
                Divergence(
                    step,
                    f"{before.name}({before.arguments})" if before else "no call",
                    f"{after.name}({after.arguments})" if after else "no call",
                )
            )
            continue
        if (before.name, before.arguments) != (after.name, after.arguments):
            report.divergences.append(
                Divergence(
                    step,
                    f"{before.name}({before.arguments})",
                    f"{after.name}({after.arguments})",
                )
            )
            continue
        old = recorded_results.get(before.id)
        new = again_results.get(after.id)
        if old is None or new is None:
            continue
        old_view = (old.metadata.get("outcome"), old.is_error, old.text)
        new_view = (new.metadata.get("outcome"), new.is_error, new.text)
        if old_view != new_view:
            report.divergences.append(
                Divergence(
                    f"{step} ({before.name}) result",
                    f"{old_view[0]}: {_preview(old.text)}",
                    f"{new_view[0]}: {_preview(new.text)}",
                )
            )


def _shape(message: Message) -> tuple[Any, ...]:
    return (
        message.role,
        message.text,
        tuple((c.name, repr(sorted(c.arguments.items()))) for c in message.tool_calls),
        message.tool_call_id is not None,
    )


def _said(shape: tuple[Any, ...]) -> str:
    """A message's shape as a line of the report: its role, text and tool calls."""
    role, text, calls, _ = shape
    called = ", ".join(f"{name}({arguments})" for name, arguments in calls)
    return f"{role}: {text}" + (f" [calls {called}]" if called else "")


def _contrast(recorded: str, replayed: str, limit: int = 80) -> tuple[str, str]:
    """Both texts from a little before the first character where they differ (a long
    prompt changed near its end shows where)."""
    same = next(
        (i for i, (a, b) in enumerate(zip(recorded, replayed, strict=False)) if a != b),
        min(len(recorded), len(replayed)),
    )
    start = max(0, same - 20)
    if start < 10:
        return _preview(recorded, limit), _preview(replayed, limit)
    return _preview("..." + recorded[start:], limit), _preview("..." + replayed[start:], limit)


def _preview(value: Any, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
