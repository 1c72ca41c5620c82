"""After a restart: the runs the log shows as queued or in flight and never ended, and, for each
run in flight, where it goes on (`Resume`): the calls of its last answer still open, their
approvals, and what it had used."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from promptline.core.events import (
    AgentLifecycleEvent,
    Event,
    LifecycleState,
    LlmCommandEvent,
    LlmResultEvent,
    MessageReceivedEvent,
    MessageSentEvent,
    PermissionDeniedEvent,
    PermissionGrantedEvent,
    PermissionRequestEvent,
    RunQueuedEvent,
    RunResumedEvent,
    RunStartedEvent,
    ToolCommandEvent,
    ToolResultEvent,
    conversation_message,
)
from promptline.core.messages import Message, ToolCall, ToolResult, Usage
from promptline.events.protocols import EventFilter, EventStore
from promptline.runtime.records import RUN_ENDINGS, RUN_TYPES, RunRecord, fold_run
from promptline.runtime.run import SUBMIT_PLAN, Resume

__all__ = [
    "MAX_RESUME_ATTEMPTS",
    "RECOVERY_WINDOW_DAYS",
    "Unfinished",
    "conversation",
    "find_unfinished",
]

RECOVERY_WINDOW_DAYS = 7
"""How far back (in days) a start-up looks for runs that never ended."""

MAX_RESUME_ATTEMPTS = 3
"""Resumptions in a row that make no progress (the process dies during each) before a run is
given up and recorded as failed."""


@dataclass(frozen=True, slots=True)
class Unfinished:
    """A run the log shows as queued or started, and never ended."""

    run_id: str
    record: RunRecord
    queued: RunQueuedEvent | None
    started: RunStartedEvent | None
    message: Message | None
    """Its input (None only for a log that lost it: such a run cannot go on)."""
    input_id: str | None
    resume: Resume | None
    """For a run that had started: where it goes on."""
    calls: tuple[ToolCall, ...] = ()
    """For a run that had started: the calls of its last answer with no result yet."""
    mode: Literal["plan", "act"] = "act"
    """The mode it runs in now (a plan approved before the stop switched it to act)."""
    last_state: LifecycleState | None = None
    """Its last recorded lifecycle state."""

    @property
    def stream(self) -> str:
        """The stream its events go to (its session's, or its own)."""
        head = self.queued or self.started
        assert head is not None
        return head.stream_name

    @property
    def session_id(self) -> str | None:
        """Its session (None for a run without one)."""
        head = self.queued or self.started
        return head.session_id if head is not None else None

    @property
    def agent(self) -> str:
        """The name of the agent it runs."""
        if self.started is not None:
            return self.started.data.agent
        assert self.queued is not None
        return self.queued.data.agent


async def find_unfinished(
    store: EventStore,
    *,
    since: datetime,
    run_id: str | None = None,
    instance: str | None = None,
) -> list[Unfinished]:
    """Runs queued or started since ``since`` (or just ``run_id``) that have no ending in
    the log, in the order they were queued; with ``instance``, only those that process
    queued or started (or that name no process)."""
    heads = await store.read_all(EventFilter(types=RUN_TYPES, since=since, run_id=run_id))
    open_runs: dict[str, list[Event]] = {}
    ended: set[str] = set()
    for event in heads:
        rid = event.run_id
        if not rid or rid in ended:
            continue
        if event.type in RUN_ENDINGS:
            ended.add(rid)
            open_runs.pop(rid, None)
        elif isinstance(event, RunQueuedEvent | RunStartedEvent):
            open_runs.setdefault(rid, []).append(event)
    found = []
    for rid, seen in open_runs.items():
        owner = next(
            (e.data.instance for e in seen if isinstance(e, RunQueuedEvent | RunStartedEvent)),
            None,
        )
        if instance is not None and owner not in (None, instance):
            continue  # another process's run: it is that process's to settle
        events = await store.read_all(EventFilter(run_id=rid))
        found.append(examine(rid, events))
    return found


def examine(run_id: str, events: Sequence[Event]) -> Unfinished:
    """What the events of an unfinished run say about it."""
    record = fold_run(run_id, events)
    queued = next((e for e in events if isinstance(e, RunQueuedEvent)), None)
    started = next((e for e in events if isinstance(e, RunStartedEvent)), None)
    message: Message | None = None
    input_id = queued.data.message_id if queued is not None else None
    for event in events:
        if isinstance(event, MessageReceivedEvent) and event.id == input_id:
            message = event.data.message
    if message is None and started is not None:
        message = started.data.input
        input_id = started.data.input_id
    if started is None:
        return Unfinished(run_id, record, queued, None, message, input_id, None)
    calls = _open_calls(events)
    mode: Literal["plan", "act"] = "plan" if started.data.mode == "plan" else "act"
    last_state: LifecycleState | None = None
    for event in events:
        if isinstance(event, AgentLifecycleEvent):
            last_state = event.data.to_state
        result = event.data.result if isinstance(event, ToolResultEvent) else None
        if result and result.name == SUBMIT_PLAN.name and result.metadata.get("outcome") == "ok":
            mode = "act"
    return Unfinished(
        run_id,
        record,
        queued,
        started,
        message,
        input_id,
        _resume(events, calls),
        calls,
        mode,
        last_state,
    )


def conversation(events: Sequence[Event]) -> list[Message]:
    """The messages ``events`` add to a conversation, in order (the session fold's rules)."""
    found = []
    for event in events:
        message = conversation_message(event)
        if message is not None:
            found.append(message)
    return found


def _open_calls(events: Sequence[Event]) -> tuple[ToolCall, ...]:
    """The calls of the run's last answer that no tool message answers yet."""
    last: list[ToolCall] = []
    answered: set[str] = set()
    for event in events:
        if not isinstance(event, MessageSentEvent):
            continue
        message = event.data.message
        if message.role == "assistant":
            last = list(message.tool_calls)
            answered = set()
        elif message.role == "tool" and message.tool_call_id:
            answered.add(message.tool_call_id)
    return tuple(call for call in last if call.id not in answered)


def _resume(events: Sequence[Event], calls: tuple[ToolCall, ...]) -> Resume:
    ids = {call.id for call in calls}
    results: dict[str, ToolResult] = {}
    begun: set[str] = set()
    commanded: set[str] = set()
    requests: dict[str, str] = {}
    decisions: dict[str, tuple[bool, str | None]] = {}
    usage = Usage()
    cost: float | None = None
    iterations = 0
    attempts = 0
    # Model calls made for someone else inside the run (an MCP server's sampling request)
    # count towards its usage, not its iterations.
    aside = {e.id for e in events if isinstance(e, LlmCommandEvent) and e.data.params.get("task")}
    for event in events:
        if isinstance(event, LlmResultEvent):
            if event.causation_id not in aside:
                iterations += 1
            usage = usage + event.data.usage
            if event.data.cost_usd is not None:
                cost = (cost or 0.0) + event.data.cost_usd
            attempts = 0
        elif isinstance(event, ToolCommandEvent):
            commanded.add(event.data.call.id)
            if event.data.call.id in ids:
                begun.add(event.data.call.id)
        elif isinstance(event, ToolResultEvent):
            attempts = 0
            if event.data.result.call_id in ids:
                results[event.data.result.call_id] = event.data.result
        elif isinstance(event, RunResumedEvent):
            attempts += 1
        elif isinstance(event, PermissionRequestEvent):
            call_id = event.data.call_id or _plan_call(calls, event.data.tool)
            if call_id in ids:
                requests[call_id] = event.data.request_id
        elif isinstance(event, PermissionGrantedEvent | PermissionDeniedEvent):
            for call_id, request_id in list(requests.items()):
                if request_id == event.data.request_id:
                    approved = isinstance(event, PermissionGrantedEvent)
                    reason = None if approved else getattr(event.data, "reason", None)
                    decisions[call_id] = (approved, reason)
                    del requests[call_id]
    return Resume(
        calls=calls,
        results=results,
        decisions=decisions,
        requests=requests,
        begun=frozenset(begun),
        iterations=iterations,
        tool_calls=len(commanded),
        usage=usage,
        cost_usd=cost,
        attempt=attempts + 1,
    )


def _plan_call(calls: tuple[ToolCall, ...], tool: str) -> str | None:
    if tool != SUBMIT_PLAN.name:
        return None
    return next((call.id for call in calls if call.name == SUBMIT_PLAN.name), None)
