"""Run records (an ``AgentRun``): what one run was and did, folded from its events."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from promptline.core.errors import NotFoundError
from promptline.core.events import (
    Event,
    LlmResultEvent,
    MessageReceivedEvent,
    PermissionDeniedEvent,
    PermissionGrantedEvent,
    PermissionRequestEvent,
    RunCancelledEvent,
    RunCompletedEvent,
    RunFailedEvent,
    RunQueuedEvent,
    RunResumedEvent,
    RunStartedEvent,
    RunSteeredEvent,
    ToolCommandEvent,
)
from promptline.core.messages import Usage
from promptline.core.runs import OPEN_STATUSES, RunRecordStatus
from promptline.events.protocols import EventFilter, EventStore

__all__ = ["RunRecord", "RunRecordStatus", "fold_run", "list_runs", "load_run"]


RUN_ENDINGS = frozenset({"run_completed", "run_failed", "run_cancelled", "run_steered"})
"""The event types that end a run (``run_steered`` ends a queued run that joined another)."""
RUN_TYPES = frozenset({"run_queued", "run_started", "run_resumed", *RUN_ENDINGS})
"""The event types that say where a run stands: queued, started, resumed, ended."""


@dataclass
class RunRecord:
    """One run, as the log tells it: who, what, how it ended, what it used."""

    run_id: str
    agent: str = ""
    session_id: str | None = None
    user_id: str | None = None
    tenant_id: str | None = None
    status: RunRecordStatus = "running"
    mode: str | None = None
    model: str | None = None
    input: str = ""
    output: str = ""
    iterations: int = 0
    model_calls: int = 0
    tool_calls: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = None
    latency_ms: float | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    error: dict[str, Any] | None = None
    cancelled_by: str | None = None
    pending_approvals: list[str] = field(default_factory=list)
    queued_at: datetime | None = None
    position: int | None = None
    """Unfinished runs of its session ahead of it when it was accepted."""
    steered_into: str | None = None
    """For a queued message that joined the run in flight: that run."""
    resumed: int = 0
    """How many times the run was resumed after a restart."""

    def apply(self, event: Event) -> None:
        """Take one event of the run into account. The first ending recorded counts (a run
        given up as wedged may still record its own ending later)."""
        if self.ended and event.type in RUN_ENDINGS:
            return
        if isinstance(event, RunQueuedEvent):
            self.agent = event.data.agent
            self.mode = event.data.mode
            self.model = event.data.model
            self.queued_at = event.ts
            self.position = event.data.position
            self.session_id = event.session_id
            self.user_id = event.user_id
            self.tenant_id = event.tenant_id
            if self.status == "running" and self.started_at is None:
                self.status = "queued"
        elif isinstance(event, RunStartedEvent):
            self.agent = event.data.agent
            self.mode = event.data.mode
            self.model = event.data.model
            self.input = event.data.input.text if event.data.input else ""
            self.started_at = event.ts
            self.session_id = event.session_id
            self.user_id = event.user_id
            self.tenant_id = event.tenant_id
            if self.status == "queued":
                self.status = "running"
        elif isinstance(event, RunResumedEvent):
            self.resumed += 1
        elif isinstance(event, RunSteeredEvent):
            self._end(event, "steered")
            self.steered_into = event.data.into
            self.input = event.data.message.text
        elif isinstance(event, MessageReceivedEvent):
            if event.data.queued and not self.input:
                self.input = event.data.message.text
        elif isinstance(event, LlmResultEvent):
            self.model_calls += 1
            if event.data.provider and event.data.model:
                self.model = f"{event.data.provider}/{event.data.model}"
            if self.status == "running":
                self.usage = self.usage + event.data.usage
                if event.data.cost_usd is not None:
                    self.cost_usd = (self.cost_usd or 0.0) + event.data.cost_usd
        elif isinstance(event, ToolCommandEvent):
            self.tool_calls.append(event.data.call.name)
        elif isinstance(event, PermissionRequestEvent):
            self.pending_approvals.append(event.data.request_id)
        elif isinstance(event, PermissionGrantedEvent | PermissionDeniedEvent):
            if event.data.request_id in self.pending_approvals:
                self.pending_approvals.remove(event.data.request_id)
        elif isinstance(event, RunCompletedEvent):
            self._end(event, "completed")
            self.output = event.data.output.text if event.data.output else ""
            self.iterations = event.data.iterations
            self.usage = event.data.usage
            self.cost_usd = event.data.cost_usd
            self.latency_ms = event.data.duration_ms
        elif isinstance(event, RunFailedEvent):
            self._end(event, "failed")
            self.error = event.data.error.model_dump()
            self.iterations = event.data.iterations or self.iterations
            if event.data.usage.total_tokens:
                self.usage = event.data.usage
            self.latency_ms = event.data.duration_ms
        elif isinstance(event, RunCancelledEvent):
            by = event.data.cancelled_by
            self._end(event, "interrupted" if by in ("shutdown", "recovery") else "cancelled")
            self.cancelled_by = by
            self.error = {"code": "cancelled", "message": event.data.reason or "cancelled"}
        if self.status == "running" and self.pending_approvals:
            self.status = "waiting_approval"
        elif self.status == "waiting_approval" and not self.pending_approvals:
            self.status = "running"

    def _end(self, event: Event, status: RunRecordStatus) -> None:
        self.status = status
        self.ended_at = event.ts
        if self.latency_ms is None and self.started_at is not None:
            self.latency_ms = (event.ts - self.started_at).total_seconds() * 1000

    @property
    def ended(self) -> bool:
        """True once the run has a final status."""
        return self.status not in OPEN_STATUSES

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        return {
            "run_id": self.run_id,
            "agent": self.agent,
            "session_id": self.session_id,
            "user_id": self.user_id,
            "tenant_id": self.tenant_id,
            "status": self.status,
            "mode": self.mode,
            "model": self.model,
            "input": self.input,
            "output": self.output,
            "iterations": self.iterations,
            "model_calls": self.model_calls,
            "tool_calls": list(self.tool_calls),
            "usage": self.usage.model_dump(),
            "total_tokens": self.usage.total_tokens,
            "cost_usd": self.cost_usd,
            "latency_ms": self.latency_ms,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "error": self.error,
            "cancelled_by": self.cancelled_by,
            "pending_approvals": list(self.pending_approvals),
            "queued_at": self.queued_at.isoformat() if self.queued_at else None,
            "position": self.position,
            "steered_into": self.steered_into,
            "resumed": self.resumed,
        }


def fold_run(run_id: str, events: Iterable[Event]) -> RunRecord:
    """The record of run ``run_id`` from its events (in log order)."""
    record = RunRecord(run_id=run_id)
    for event in events:
        if event.run_id == run_id:
            record.apply(event)
    return record


async def load_run(store: EventStore, run_id: str) -> RunRecord:
    """The record of ``run_id``; `NotFoundError` when the log has no such run."""
    events = await store.read_all(EventFilter(run_id=run_id))
    if not any(isinstance(e, RunQueuedEvent | RunStartedEvent) for e in events):
        raise NotFoundError(
            f"no run {run_id!r} in the event log",
            hint="list runs with `promptline runs list`",
            run_id=run_id,
        )
    return fold_run(run_id, events)


async def list_runs(
    store: EventStore,
    *,
    session_id: str | None = None,
    user_id: str | None = None,
    tenant_id: str | None = None,
    agent: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[RunRecord]:
    """The newest runs first (summaries from the run_* events; `load_run` has the detail)."""
    flt = EventFilter(types=RUN_TYPES, session_id=session_id, user_id=user_id, tenant_id=tenant_id)
    records: dict[str, RunRecord] = {}
    order: list[str] = []
    listed: set[str] = set()
    position = 0
    page_size = max(limit * 4, 200)
    while True:
        page = await store.read_all(flt, from_position=position, limit=page_size, descending=True)
        for event in reversed(page):
            rid = event.run_id
            if rid is None:
                continue
            record = records.get(rid)
            if record is None:
                record = records[rid] = RunRecord(run_id=rid)
            record.apply(event)
        for event in page:
            rid = event.run_id
            if isinstance(event, RunQueuedEvent | RunStartedEvent) and rid and rid not in listed:
                listed.add(rid)
                order.append(rid)
        chosen = [
            records[r]
            for r in order
            if (agent is None or records[r].agent == agent)
            and (status is None or records[r].status == status)
        ]
        if len(chosen) >= limit or len(page) < page_size:
            return chosen[:limit]
        position = page[-1].position
