"""What runs share: the bus, the models, the tools, the settings of the loop."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from promptline.core.clock import Clock, SystemClock
from promptline.events.protocols import EventBus, EventFilter, EventStore
from promptline.runtime.budget import Budget, Spent, spent, start_of_day
from promptline.tools.executor import Authorization, CallScope, ToolExecutor

if TYPE_CHECKING:
    from promptline.models.capabilities import ModelCapabilities
    from promptline.models.instrumented import ModelCaller
    from promptline.runtime.agent import Agent
    from promptline.runtime.run import Run
    from promptline.sessions.models import Principal

__all__ = ["PlanApprover", "RunServices"]

PlanApprover = Callable[[str, CallScope, EventBus], Awaitable[tuple[bool, str | None]]]
"""``approve(plan, scope, events) -> (approved, reason)``: asks a person to approve a plan."""


@dataclass
class RunServices:
    """The collaborators and settings every run of a `Runtime` uses."""

    bus: EventBus
    store: EventStore
    models: ModelCaller
    executor: ToolExecutor
    capabilities: Callable[[str], ModelCapabilities | None] = lambda _: None
    clock: Clock = field(default_factory=SystemClock)
    default_model: str | None = None
    budget: Budget = field(default_factory=Budget)
    context_strategy: Literal["trim", "summarize"] = "trim"
    max_repeated_calls: int = 3
    workspaces_dir: Path = field(default_factory=lambda: Path.cwd() / "workspaces")
    plan_approver: PlanApprover | None = None
    admit: Callable[[Principal], AbstractAsyncContextManager[None]] | None = None
    """Entered as a message is taken, before anything of it is written (raises to refuse
    it: the quotas of its user and tenant), and left once the run answering it is among the
    runtime's runs, or none will be."""
    run_ended: Callable[[Run], None] | None = None
    """Called as a run leaves the runtime (it ended): the quotas free its slot."""
    instance: str | None = None
    """This process's name in the log's ``run_started`` events (see `Runtime.recover`)."""
    after_run: Callable[[Run], Awaitable[None]] | None = None
    """Called as a run of a session ends, before its outcome is seen (the runtime brings the
    session's record up to date there)."""
    skills: Callable[[Collection[str]], str | None] | None = None
    """The skills section of a run's system prompt, given the names of the tools the run is
    offered (None: no section). Called once per run: it must be cheap (no file reads)."""
    resume_approval: Callable[[str], Awaitable[Authorization]] | None = None
    """The answer to a permission request a call asked before a restart (awaited while it
    is pending), for the call to go on with when its run resumes."""
    keep_approvals: Callable[[], Collection[str]] | None = None
    """Called as the runtime shuts down: approvals being waited for stay pending (for after
    the restart) instead of being withdrawn; returns the ids of the runs waiting for one."""

    def workspace_for(self, agent: Agent, key: str) -> Path:
        """The folder file tools of a run may touch: the agent's, or one per session (or per
        run, for a run without a session). The tools make it when they first need it."""
        return agent.workspace or self.workspaces_dir / key

    async def spent_by_session(self, session_id: str) -> Spent:
        """Tokens and dollars the session has used."""
        return await spent(self.store, EventFilter(session_id=session_id))

    async def spent_by_user_today(self, user_id: str, tenant_id: str | None = None) -> Spent:
        """Tokens and dollars the user (of ``tenant_id``: the same user id in another tenant
        is another user) has used since midnight UTC."""
        since = start_of_day(self.clock.now())
        return await spent(
            self.store, EventFilter(user_id=user_id, tenant_id=tenant_id, since=since)
        )
