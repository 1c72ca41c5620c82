"""After a restart: runs the log shows as unfinished are either picked up again (they were
waiting for an approval, which is now decided) or recorded as interrupted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from promptline.core.events import (
    AgentLifecycleEvent,
    Event,
    LifecycleState,
    LlmResultEvent,
    PermissionDeniedEvent,
    PermissionGrantedEvent,
    PermissionRequestEvent,
    RunStartedEvent,
    ToolCommandEvent,
    ToolResultEvent,
)
from promptline.core.messages import ToolCall
from promptline.events.protocols import EventFilter, EventStore
from promptline.runtime.records import RUN_TYPES, RunRecord, fold_run
from promptline.runtime.run import SUBMIT_PLAN, Resume

__all__ = ["RECOVERY_WINDOW", "Unfinished", "find_unfinished"]

RECOVERY_WINDOW = timedelta(days=7)
"""How far back a start-up looks for runs that never ended."""


@dataclass(frozen=True, slots=True)
class Unfinished:
    """A run the log shows as started and never ended."""

    record: RunRecord
    started: RunStartedEvent
    last_state: LifecycleState | None
    resume: Resume | None
    """Set when every call it was waiting on has a recorded decision: it can go on."""
    waiting: bool
    """True while an approval it waits for is still undecided."""


async def find_unfinished(
    store: EventStore,
    *,
    since: datetime,
    run_id: str | None = None,
    instance: str | None = None,
) -> list[Unfinished]:
    """Runs started since ``since`` (or just ``run_id``) that have no ending in the log;
    with ``instance``, only those that process started (or that name no process)."""
    heads = await store.read_all(EventFilter(types=RUN_TYPES, since=since, run_id=run_id))
    open_runs: dict[str, RunStartedEvent] = {}
    for event in heads:
        if isinstance(event, RunStartedEvent) and event.run_id:
            if instance is not None and event.data.instance not in (None, instance):
                continue  # another process's run: it is that process's to settle
            open_runs[event.run_id] = event
        elif event.run_id in open_runs:
            del open_runs[event.run_id]
    found = []
    for rid, started in open_runs.items():
        events = await store.read_all(EventFilter(run_id=rid))
        found.append(_examine(rid, started, events))
    return found


def _examine(run_id: str, started: RunStartedEvent, events: list[Event]) -> Unfinished:
    record = fold_run(run_id, events)
    answered = {e.data.result.call_id for e in events if isinstance(e, ToolResultEvent)}
    calls: dict[str, ToolCall] = {}
    for event in events:
        if isinstance(event, ToolCommandEvent) and event.data.call.id not in answered:
            calls[event.data.call.id] = event.data.call
    requests = {e.data.request_id: e.data for e in events if isinstance(e, PermissionRequestEvent)}
    decisions: dict[str, tuple[bool, str | None]] = {}
    decided_requests: set[str] = set()
    for event in events:
        if isinstance(event, PermissionGrantedEvent | PermissionDeniedEvent):
            decided_requests.add(event.data.request_id)
            request = requests.get(event.data.request_id)
            if request is None:
                continue
            approved = isinstance(event, PermissionGrantedEvent)
            reason = None if approved else getattr(event.data, "reason", None)
            call_id = request.call_id or _plan_call(calls, request.tool)
            if call_id is not None:
                decisions[call_id] = (approved, reason)
    waiting = any(rid not in decided_requests for rid in requests)
    last_state: LifecycleState | None = None
    for event in events:
        if isinstance(event, AgentLifecycleEvent):
            last_state = event.data.to_state
    resume = None
    if calls and not waiting and all(c in decisions for c in calls):
        resume = Resume(
            calls=tuple(calls.values()),
            decisions=decisions,
            iterations=sum(1 for e in events if isinstance(e, LlmResultEvent)),
        )
    return Unfinished(record, started, last_state, resume, waiting)


def _plan_call(calls: dict[str, ToolCall], tool: str) -> str | None:
    if tool != SUBMIT_PLAN.name:
        return None
    return next((cid for cid, call in calls.items() if call.name == SUBMIT_PLAN.name), None)
