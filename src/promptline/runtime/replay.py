"""Deterministic replay of a recorded run: the loop runs again, fed the recorded model
answers instead of calling a model, and every difference from the record is reported.

Tools either answer from the record too (the default: nothing is executed, so a replay has
no side effects) or run for real in a scratch workspace (``live_tools``), which shows whether
they still behave as they did. The replay writes to an in-memory log, never the real one.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from promptline.core.errors import InvalidInputError, NotFoundError, ProviderRequestRejected
from promptline.core.events import (
    Event,
    LlmCommandEvent,
    LlmResultEvent,
    RunStartedEvent,
    ToolCommandEvent,
    ToolResultEvent,
)
from promptline.core.messages import Message, ToolResult
from promptline.events.bus import InProcessEventBus
from promptline.events.memory import InMemoryEventStore
from promptline.events.protocols import EventFilter, EventStore
from promptline.models.types import ModelRequest, ModelResponse, StreamDelta
from promptline.runtime.agent import Agent
from promptline.runtime.records import fold_run
from promptline.runtime.recovery import conversation
from promptline.runtime.run import Run, RunResult, SessionView
from promptline.runtime.services import RunServices
from promptline.tools.base import ToolContext, ToolOutput
from promptline.tools.executor import ToolExecutor
from promptline.tools.registry import ToolRegistry

__all__ = ["Divergence", "ReplayReport", "replay_run"]


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

    @property
    def diverged(self) -> bool:
        """True when anything differed."""
        return bool(self.divergences)


class _RecordedModel:
    """Answers the n-th model call with the n-th recorded answer, comparing the request
    with the recorded one on the way."""

    def __init__(
        self, commands: Sequence[LlmCommandEvent], results: Sequence[LlmResultEvent]
    ) -> None:
        self.commands = list(commands)
        self.results = list(results)
        self.calls = 0
        self.divergences: list[Divergence] = []

    @property
    def name(self) -> str:
        return "replay"

    async def complete(self, request: ModelRequest) -> ModelResponse:
        index = self.calls
        self.calls += 1
        if index >= len(self.results):
            self.divergences.append(
                Divergence(
                    f"model call {index + 1}",
                    f"{len(self.results)} model call(s)",
                    "one more model call",
                )
            )
            raise ProviderRequestRejected(
                f"the record has no answer for model call {index + 1}", provider="replay"
            )
        if index < len(self.commands):
            self._compare(index, self.commands[index].data.messages, request.messages)
        data = self.results[index].data
        message = data.message or Message(role="assistant")
        return ModelResponse(
            message=message,
            model=data.model,
            provider=data.provider or "replay",
            finish_reason=data.finish_reason,
            usage=data.usage,
            latency_ms=0.0,
            cost_usd=data.cost_usd,
        )

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamDelta | ModelResponse]:
        yield await self.complete(request)

    def _compare(self, index: int, recorded: list[Message], replayed: list[Message]) -> None:
        before = [_shape(m) for m in recorded]
        after = [_shape(m) for m in replayed]
        if before == after:
            return
        at = next(
            (i for i, (a, b) in enumerate(zip(before, after, strict=False)) if a != b),
            min(len(before), len(after)),
        )
        self.divergences.append(
            Divergence(
                f"model call {index + 1}, prompt message {at + 1}",
                _preview(before[at]) if at < len(before) else "no message",
                _preview(after[at]) if at < len(after) else "no message",
            )
        )


class _RecordedTool:
    """A tool that answers each call with the result recorded for its call id."""

    def __init__(self, name: str, results: dict[str, ToolResult], *, read_only: bool) -> None:
        self.name = name
        self.description = "replayed from the record"
        self.parameters: dict[str, Any] = {"type": "object"}
        self.read_only = read_only
        self.destructive = False
        self.timeout: float | None = None
        self._results = results

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        return arguments

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> Any:
        recorded = self._results.get(context.call_id)
        if recorded is None:
            return ToolOutput("the record has no result for this call", is_error=True)
        return ToolOutput(list(recorded.content), is_error=recorded.is_error)


async def replay_run(
    store: EventStore,
    run_id: str,
    *,
    agents: dict[str, Agent] | None = None,
    registry: ToolRegistry | None = None,
    live_tools: bool = False,
    workspace: Path | None = None,
) -> ReplayReport:
    """Replay ``run_id`` from ``store`` and report every divergence.

    ``agents`` supplies the current definitions (the prompt template, tools); a run of an
    agent not there replays with a default definition. ``registry`` is needed for
    ``live_tools`` (and gives recorded tools their read-only flags).
    """
    events = await store.read_all(EventFilter(run_id=run_id))
    started = next((e for e in events if isinstance(e, RunStartedEvent)), None)
    if started is None:
        raise NotFoundError(
            f"no run {run_id!r} in the event log",
            hint="list runs with `promptline runs list`",
            run_id=run_id,
        )
    record = fold_run(run_id, events)
    commands = [e for e in events if isinstance(e, LlmCommandEvent)]
    results = [e for e in events if isinstance(e, LlmResultEvent)]
    tool_commands = [e for e in events if isinstance(e, ToolCommandEvent)]
    tool_results = {
        e.data.result.call_id: e.data.result for e in events if isinstance(e, ToolResultEvent)
    }
    if started.data.input is None:
        raise InvalidInputError(f"run {run_id!r} recorded no input message; it cannot be replayed")
    history = await _history_before(store, started)
    base = (agents or {}).get(started.data.agent) or Agent(name=started.data.agent)
    mode: Literal["plan", "act"] = "plan" if started.data.mode == "plan" else "act"
    agent = base.evolve(stream=False, workspace=None)

    replay_store = InMemoryEventStore()
    bus = InProcessEventBus(replay_store, default_max_queue=100_000)
    model = _RecordedModel(commands, results)
    if live_tools:
        if registry is None:
            raise InvalidInputError("live_tools needs the tool registry")
        tools = registry
    else:
        tools = ToolRegistry()
        for name in {c.data.call.name for c in tool_commands}:
            real = registry.get(name) if registry is not None else None
            outcome_unknown = any(
                r.name == name and r.metadata.get("outcome") == "unknown_tool"
                for r in tool_results.values()
            )
            if not outcome_unknown:
                tools.register(
                    _RecordedTool(name, tool_results, read_only=real.read_only if real else True)
                )
    with tempfile.TemporaryDirectory(prefix="promptline-replay-") as scratch:
        services = RunServices(
            bus=bus,
            store=replay_store,
            models=model,
            executor=ToolExecutor(tools, bus),
            workspaces_dir=Path(scratch),
            max_repeated_calls=10**6,
        )
        if live_tools:
            agent = agent.evolve(workspace=workspace or Path(scratch))
        session = None
        if started.session_id is not None:
            session = SessionView(
                id=started.session_id,
                user_id=started.user_id or "replay",
                tenant_id=started.tenant_id or "default",
            )
        run = Run(
            services,
            agent,
            started.data.input,
            session=session,
            history=history,
            mode=mode,
            model=started.data.model,
            run_id=run_id,
        )
        result = await run.result()
        replayed = await replay_store.read_all(EventFilter(run_id=run_id))
    report = ReplayReport(
        run_id=run_id,
        recorded_status=record.status,
        replayed_status=result.status,
        model_calls=model.calls,
        tool_calls=[e.data.call.name for e in replayed if isinstance(e, ToolCommandEvent)],
        divergences=list(model.divergences),
        result=result,
    )
    _compare_tools(report, tool_commands, tool_results, replayed)
    if model.calls < len(results):
        report.divergences.append(
            Divergence("model calls", f"{len(results)}", f"{model.calls} (the replay ended early)")
        )
    if record.status != result.status and record.ended:
        report.divergences.append(Divergence("outcome", record.status, result.status))
    return report


def _compare_tools(
    report: ReplayReport,
    recorded: Sequence[ToolCommandEvent],
    recorded_results: dict[str, ToolResult],
    replayed: Sequence[Event],
) -> None:
    again = [e for e in replayed if isinstance(e, ToolCommandEvent)]
    again_results = {
        e.data.result.call_id: e.data.result for e in replayed if isinstance(e, ToolResultEvent)
    }
    for index in range(max(len(recorded), len(again))):
        step = f"tool call {index + 1}"
        before = recorded[index].data.call if index < len(recorded) else None
        after = again[index].data.call if index < len(again) else None
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


async def _history_before(store: EventStore, started: RunStartedEvent) -> list[Message]:
    """The session's messages before the run began (none for a run without a session)."""
    if started.session_id is None:
        return []
    events = await store.read_stream(started.stream_name)
    return conversation([e for e in events if e.seq < started.seq])


def _shape(message: Message) -> tuple[Any, ...]:
    return (
        message.role,
        message.text,
        tuple((c.name, repr(sorted(c.arguments.items()))) for c in message.tool_calls),
        message.tool_call_id is not None,
    )


def _preview(value: Any, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
