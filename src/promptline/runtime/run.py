"""One agent run: the ReAct loop (context -> model -> tools -> results -> again) and the
controls a caller holds on it (pause, resume, stop, cancel, steer)."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson

from promptline.core.errors import (
    BudgetExceededError,
    PromptLineError,
    RunLimitError,
)
from promptline.core.events import (
    AgentLifecycle,
    AgentLifecycleEvent,
    ErrorInfo,
    LifecycleState,
    MessageReceived,
    MessageReceivedEvent,
    MessageSent,
    MessageSentEvent,
    RunCancelled,
    RunCancelledEvent,
    RunCompleted,
    RunCompletedEvent,
    RunFailed,
    RunFailedEvent,
    RunResumed,
    RunResumedEvent,
    RunStarted,
    RunStartedEvent,
    RunSteered,
    RunSteeredEvent,
    ToolCommand,
    ToolCommandEvent,
    ToolResultData,
    ToolResultEvent,
    build,
)
from promptline.core.ids import new_id
from promptline.core.messages import Message, ToolCall, ToolResult, Usage
from promptline.models.instrumented import CallContext, InstrumentedModel
from promptline.models.types import ModelRequest, ModelResponse, ToolSpec, assistant_message
from promptline.runtime.budget import Budget, Spent, check
from promptline.runtime.context import estimate_tokens, fit_context
from promptline.runtime.lifecycle import Lifecycle
from promptline.runtime.prompt import render_system_prompt, split_reasoning
from promptline.runtime.recorder import RunEvents
from promptline.tools.base import is_idempotent
from promptline.tools.executor import Authorization, CallScope, ToolExecutor

if TYPE_CHECKING:
    from promptline.runtime.agent import Agent
    from promptline.runtime.services import RunServices

_log = logging.getLogger("promptline.runtime")

__all__ = [
    "SUBMIT_PLAN",
    "Resume",
    "Run",
    "RunResult",
    "RunStatus",
    "SessionView",
]

RunStatus = Literal["completed", "failed", "cancelled", "interrupted", "steered"]


SUBMIT_PLAN = ToolSpec(
    name="submit_plan",
    description="Plan mode only: submit the plan of changes for a person to approve. Once "
    "approved, the run switches to act mode and every tool is available.",
    parameters={
        "type": "object",
        "properties": {"plan": {"type": "string", "description": "A short numbered plan."}},
        "required": ["plan"],
        "additionalProperties": False,
    },
)
"""The tool a plan-mode run offers to hand its plan over for approval."""


@dataclass(frozen=True, slots=True)
class SessionView:
    """What a run needs of its session (None for a run without one)."""

    id: str
    user_id: str
    tenant_id: str
    channel: str = "cli"
    context: dict[str, Any] = field(default_factory=dict)
    rules: Mapping[str, Any] = field(default_factory=dict)
    tools: tuple[str, ...] = ()
    sandbox: str | None = None
    """The session's own sandbox (None: it chose none)."""


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a run ended."""

    run_id: str
    agent: str
    session_id: str | None
    status: RunStatus
    output: Message | None = None
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = None
    iterations: int = 0
    tool_calls: int = 0
    error: ErrorInfo | None = None
    duration_ms: float = 0.0

    @property
    def text(self) -> str:
        """The answer's text ("" when there is none)."""
        return self.output.text if self.output is not None else ""

    @property
    def ok(self) -> bool:
        """True when the run completed."""
        return self.status == "completed"


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a run picks up after a restart, as its events tell: the tool calls of its last
    answer that have no result yet, the approvals asked for them, which of them had begun
    (their ``tool_command`` is recorded), and what the run had used so far."""

    calls: tuple[ToolCall, ...] = ()
    results: Mapping[str, ToolResult] = field(default_factory=dict)
    """Call id -> the result recorded for an open call (its tool message was not yet)."""
    decisions: Mapping[str, tuple[bool, str | None]] = field(default_factory=dict)
    """Call id -> (approved, reason) for approvals answered (before or since the stop)."""
    requests: Mapping[str, str] = field(default_factory=dict)
    """Call id -> permission request id, for approvals still unanswered: the call had not
    begun, and goes on once the request is answered."""
    begun: frozenset[str] = frozenset()
    """Ids of open calls whose ``tool_command`` is recorded: they may have taken effect."""
    iterations: int = 0
    tool_calls: int = 0
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = None
    attempt: int = 1
    """Resumptions in a row without a clean stop in between (this one included)."""


class _ResumeGate:
    """The permission gate of the calls a resumed run goes on with: an approval asked before
    the stop is answered by its decision (awaited if it is still pending); any other call
    goes through the run's usual gate."""

    def __init__(self, run: Run, resume: Resume) -> None:
        self._run = run
        self._resume = resume

    async def authorize(self, tool: Any, call: ToolCall, scope: CallScope) -> Authorization:
        request_id = self._resume.requests.get(call.id)
        services = self._run.services
        if request_id is not None and services.resume_approval is not None:
            return await services.resume_approval(request_id)
        recorded = self._resume.decisions.get(call.id)
        if recorded is not None:
            return Authorization(recorded[0], recorded[1], decided_by="recorded decision")
        gate = services.executor.gate
        if gate is None:
            return Authorization(True)
        return await gate.authorize(tool, call, scope)


_CONTEXT = tuple(field.name for field in dataclasses.fields(CallContext))
"""The fields of a `CallContext`: a run's envelope (`dataclasses.asdict` without its deep
copy)."""


class _Stop(Exception):
    """Raised at a safe point when the run was asked to stop."""

    def __init__(self, reason: str, by: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.by = by


class Run:
    """One run of an agent. Start it with `Runtime.start_run`; await `result`.

    Controls: `pause`/`resume` take effect at the next safe point (before a model call or a
    tool turn); `stop` ends the run at the next safe point; `cancel` ends it at once, tool
    calls included; `steer` adds a user message the model sees at its next call.
    """

    def __init__(
        self,
        services: RunServices,
        agent: Agent,
        message: Message,
        *,
        session: SessionView | None = None,
        history: Sequence[Message] = (),
        mode: Literal["plan", "act"] | None = None,
        model: str | None = None,
        run_id: str | None = None,
        principal_user: str | None = None,
        principal_tenant: str | None = None,
        resume: Resume | None = None,
        input_id: str | None = None,
    ) -> None:
        self.services = services
        self.resuming = resume
        self.input_id = input_id
        """The queued ``message_received`` this run answers (None: the run records its
        input itself when it starts)."""
        self.agent = agent
        self.id = run_id or new_id("run_")
        self.session = session
        self.message = message
        self.mode: Literal["plan", "act"] = mode or agent.mode
        self.model = model or agent.model or services.default_model or ""
        self.history = list(history)
        self.last_activity = time.monotonic()
        self.events = RunEvents(services.bus, on_activity=self._touch)
        self._call_context = CallContext(
            session_id=session.id if session else None,
            run_id=self.id,
            user_id=session.user_id if session else principal_user,
            agent_id=agent.name,
            tenant_id=session.tenant_id if session else principal_tenant,
            correlation_id=self.id,
            stream=session.id if session else self.id,
        )
        # The envelope of every event the run records itself: the same who and where.
        context = self._call_context
        self._envelope: dict[str, Any] = {name: getattr(context, name) for name in _CONTEXT}
        self.lifecycle = Lifecycle(self._on_lifecycle)
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._stop: _Stop | None = None
        self._cancel_reason: tuple[str, str] | None = None
        self._steered: list[Run] = []
        self._leaving = False
        self._begun = False
        self._ended_unstarted: RunResult | None = None
        self._task: asyncio.Task[RunResult] | None = None
        self._started = time.perf_counter()
        self._usage = Usage()
        self._cost: float | None = None
        self._iterations = 0
        self._tool_calls = 0
        self._on_done: list[Callable[[Run], None]] = []
        self._failure: BaseException | None = None
        self._abandoned = False
        self._entered = False
        self._summary: tuple[int, str] | None = None
        self._held = False
        self._launched = asyncio.Event()

    # -- controls -------------------------------------------------------------------------

    @property
    def task(self) -> asyncio.Task[RunResult] | None:
        """The task running the loop (None until started)."""
        return self._task

    @property
    def done(self) -> bool:
        """True once the run has ended (a queued run may end without starting)."""
        if self._ended_unstarted is not None:
            return True
        return self._task is not None and self._task.done()

    @property
    def envelope(self) -> dict[str, Any]:
        """The envelope fields of every event this run records (a copy)."""
        return dict(self._envelope)

    @property
    def paused(self) -> bool:
        """True while a pause is requested or in effect."""
        return not self._resumed.is_set()

    def start(self) -> asyncio.Task[RunResult]:
        """Begin the loop in a task of its own."""
        if self._ended_unstarted is not None:
            raise RuntimeError(f"run {self.id} ended before it started")
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._execute(), name=self.id)
            self._task.add_done_callback(lambda _: [cb(self) for cb in self._on_done])
            self._launched.set()
        return self._task

    def hold(self) -> None:
        """Leave the start to the runtime, which starts the run when its session's turn
        comes: `result` then waits for that instead of starting the run out of turn."""
        self._held = True

    def fail_before_start(self, error: BaseException) -> None:
        """Make the run fail with ``error`` as soon as it starts (its session could not be
        read when its turn came)."""
        self._failure = error

    def add_done_callback(self, callback: Callable[[Run], None]) -> None:
        """Call ``callback(run)`` when the run ends."""
        self._on_done.append(callback)

    async def result(self) -> RunResult:
        """Wait for the run to end; its outcome (never raises for a failed run). A run not
        started yet is started here, unless the runtime holds it until its turn."""
        if self._held:
            await self._launched.wait()
        if self._ended_unstarted is not None:
            return self._ended_unstarted
        task = self.start()
        return await asyncio.shield(task)

    def end_unstarted(self, status: RunStatus) -> None:
        """End a run that never started, recording nothing: it joined the run in flight
        (``steered``), or the process stops while it waits its turn (``interrupted``: it
        stays queued in the log and starts after the restart)."""
        if self._task is not None or self._ended_unstarted is not None:
            return
        self._ended_unstarted = RunResult(
            run_id=self.id,
            agent=self.agent.name,
            session_id=self.session.id if self.session else None,
            status=status,
        )
        self._launched.set()
        for callback in self._on_done:
            callback(self)

    def pause(self) -> None:
        """Hold the run at its next safe point until `resume`."""
        self._resumed.clear()

    def resume(self) -> None:
        """Let a paused run go on."""
        self._resumed.set()

    def stop(self, reason: str = "stopped", *, by: str = "user") -> None:
        """End the run at its next safe point (recorded as cancelled)."""
        self._stop = _Stop(reason, by)
        self._resumed.set()

    def leave(self) -> None:
        """The process is stopping: at the next safe point, write what the run has recorded
        so far and leave it unfinished in the log, to be resumed after the restart."""
        self._stop = _Stop("the process is stopping", "shutdown")
        self._resumed.set()

    def leave_now(self) -> None:
        """Leave the run now (see `leave`), cutting short a model call, tool calls or an
        approval wait: nothing they would record is written, so the log shows the run as a
        crash at this moment would, and its resumption takes it from there."""
        self._leaving = True
        self.events.seal()
        if self._task is None or not self._entered:
            self.leave()
        elif not self._task.done():
            self._task.cancel()

    def cancel(self, reason: str = "cancelled", *, by: str = "user") -> bool:
        """End the run now, interrupting a model call or tool calls in flight. A run still
        waiting for its turn ends as soon as it starts, before any model call."""
        if self._task is None or not self._entered:
            # Not begun: a task cancelled before its first step would record nothing.
            self.stop(reason, by=by)
            return True
        if self._task.done():
            return False
        self._cancel_reason = (reason, by)
        self._task.cancel()
        return True

    def abandon(self) -> None:
        """The runtime gave up on this run (it ignored its cancellation) and recorded its
        end; whatever it does later must not record another."""
        self._abandoned = True

    def steer(self, queued: Run) -> None:
        """Let the queued run ``queued`` join this one: its message is added to the
        conversation before the next model call, and it ends (``steered``) without running.
        If this run ends before that, ``queued`` runs on its own when its turn comes."""
        self._steered.append(queued)

    # -- events ---------------------------------------------------------------------------

    def _touch(self, now: float) -> None:
        self.last_activity = now

    def _on_lifecycle(
        self, from_state: LifecycleState | None, to_state: LifecycleState, reason: str | None
    ) -> None:
        self.events.emit(
            build(
                AgentLifecycleEvent,
                **self._envelope,
                data=build(
                    AgentLifecycle,
                    agent=self.agent.name,
                    from_state=from_state,
                    to_state=to_state,
                    reason=reason,
                ),
            )
        )

    def _message_event(self, message: Message) -> MessageReceivedEvent | MessageSentEvent:
        channel = self.session.channel if self.session else None
        if message.role == "user":
            return build(
                MessageReceivedEvent,
                **self._envelope,
                data=build(MessageReceived, message=message, channel=channel),
            )
        return build(
            MessageSentEvent,
            **self._envelope,
            data=build(MessageSent, message=message, channel=channel),
        )

    def _add(self, message: Message) -> None:
        self.history.append(message)
        self.events.emit(self._message_event(message))

    # -- the loop -------------------------------------------------------------------------

    def _begin(self) -> None:
        self.events.emit(
            build(
                RunStartedEvent,
                **self._envelope,
                data=build(
                    RunStarted,
                    agent=self.agent.name,
                    model=self.model or None,
                    mode=self.mode,
                    input=self.message,
                    instance=self.services.instance,
                    input_id=self.input_id,
                ),
            )
        )
        if self.input_id is None:
            self._add(self.message)
        else:
            # Received (and on the record) when it was queued: it joins the conversation now.
            self.history.append(self.message)

    def _join_steered(self) -> None:
        """Take in the messages of queued runs steered into this one that have not started."""
        steered, self._steered = self._steered, []
        for queued in steered:
            if queued.task is not None or queued.done or queued.input_id is None:
                continue  # it started on its own (this run had ended), or it was cancelled
            self.events.emit(
                build(
                    RunSteeredEvent,
                    **queued.envelope,
                    data=build(
                        RunSteered, into=self.id, message_id=queued.input_id, message=queued.message
                    ),
                )
            )
            self.history.append(queued.message)
            queued.end_unstarted("steered")

    async def _execute(self) -> RunResult:
        self._entered = True
        lifecycle = self.lifecycle
        status: RunStatus
        output: Message | None = None
        error: ErrorInfo | None = None
        try:
            try:
                lifecycle.move("initializing")
                if self._failure is not None:
                    raise self._failure
                prepared = await self._prepare()
                if self.resuming is None:
                    lifecycle.move("ready")
                    self._begin()
                else:
                    lifecycle.move("ready", "resumed after a restart")
                    await self._record_resumption(self.resuming)
                self._begun = True
                lifecycle.move("running")
                output = await self._loop(prepared)
                status = "completed"
            except _Stop as stop:
                if stop.by == "shutdown":
                    return await self._leave()
                status = "cancelled"
                self._cancel_reason = (stop.reason, stop.by)
            except asyncio.CancelledError:
                if self._leaving:
                    return await self._leave()
                if self._cancel_reason is None:
                    self._cancel_reason = ("cancelled", "system")
                status = "cancelled"
            except PromptLineError as exc:
                status = "failed"
                error = ErrorInfo(code=exc.code, message=exc.message, details=exc.json_details())
            except Exception as exc:
                status = "failed"
                error = ErrorInfo(code="internal_error", message=f"{type(exc).__name__}: {exc}")
            if status != "completed":
                self._answer_open_calls(status)
            finishing = asyncio.ensure_future(self._finish(status, output, error))
            try:
                return await asyncio.shield(finishing)
            except asyncio.CancelledError:
                # Cancelled while its end is being recorded: the record is finished anyway.
                return await finishing
        finally:
            self._resumed.set()

    async def _record_resumption(self, resume: Resume) -> None:
        """Put the resumption on the record before the run does anything: a process that
        dies during it leaves a trace, which is how repeated failures are counted."""
        await self.events.publish(
            build(
                RunResumedEvent,
                **self._envelope,
                data=build(RunResumed, attempt=resume.attempt, reason="resumed after a restart"),
            )
        )

    async def _leave(self) -> RunResult:
        """End this process's part in the run without ending the run: write what it had
        recorded up to now (results of steps that completed) and nothing more, so that after
        the restart it goes on from its last completed step."""
        try:
            if self._begun:
                await asyncio.shield(self.events.close_with())
            else:
                self.events.seal()  # not started on the record: it stays queued
        except Exception:
            _log.exception("writing what run %s recorded before the stop failed", self.id)
        error = ErrorInfo(
            code="run_interrupted",
            message="the process stopped during the run; it goes on after the restart",
        )
        return self._result("interrupted", None, error)

    def _result(
        self, status: RunStatus, output: Message | None, error: ErrorInfo | None
    ) -> RunResult:
        """How the run ended, for whoever waits on it in this process."""
        return RunResult(
            run_id=self.id,
            agent=self.agent.name,
            session_id=self.session.id if self.session else None,
            status=status,
            output=output,
            usage=self._usage,
            cost_usd=self._cost,
            iterations=self._iterations,
            tool_calls=self._tool_calls,
            error=error,
            duration_ms=(time.perf_counter() - self._started) * 1000,
        )

    async def _finish(
        self, status: RunStatus, output: Message | None, error: ErrorInfo | None
    ) -> RunResult:
        duration = (time.perf_counter() - self._started) * 1000
        envelope = self._envelope
        if self._abandoned:
            pass  # the runtime recorded this run's end already (run_wedged)
        elif status == "completed":
            self.events.emit(
                build(
                    RunCompletedEvent,
                    **envelope,
                    data=build(
                        RunCompleted,
                        output=output,
                        usage=self._usage,
                        cost_usd=self._cost,
                        iterations=self._iterations,
                        duration_ms=round(duration, 3),
                    ),
                )
            )
        elif status == "failed":
            assert error is not None
            self.events.emit(
                build(
                    RunFailedEvent,
                    **envelope,
                    data=build(
                        RunFailed,
                        error=error,
                        usage=self._usage,
                        iterations=self._iterations,
                        duration_ms=round(duration, 3),
                    ),
                )
            )
        else:
            reason, by = self._cancel_reason or ("cancelled", "system")
            self.events.emit(
                build(
                    RunCancelledEvent,
                    **envelope,
                    data=build(RunCancelled, reason=reason, cancelled_by=by),
                )
            )
        lifecycle = self.lifecycle
        if not lifecycle.final:
            if status == "failed":
                lifecycle.move("error", error.message if error else None)
            else:
                lifecycle.move("stopping", None if status == "completed" else status)
                lifecycle.move("stopped")
        await self.events.flush()
        if self.services.after_run is not None and self.session is not None:
            # Before the outcome is seen: whoever reads the session next finds the run in it.
            try:
                await self.services.after_run(self)
            except Exception:
                _log.exception("bringing session %s up to date failed", self.session.id)
        return self._result(status, output, error)

    async def _prepare(self) -> _Prepared:
        services = self.services
        names: Sequence[str] | None = self.agent.tools
        if self.session is not None and self.session.tools:
            allowed = set(self.session.tools)
            names = [n for n in (names or services.executor.registry.names()) if n in allowed]
        workspace = services.workspace_for(self.agent, self.session.id if self.session else self.id)
        # Only the tools that apply here (no git tools outside a repository...): every tool
        # offered is sent with every model call.
        specs = services.executor.registry.specs(names, workspace=workspace)
        caps = services.capabilities(self.model) if self.model else None
        window = caps.context_window if caps else 128_000
        reserve = self.agent.max_tokens or min(caps.max_tokens if caps else 4096, 4096)
        budget = services.budget
        session_spent = user_spent = None
        if budget.any_session and self.session is not None:
            session_spent = await services.spent_by_session(self.session.id)
        if budget.any_user and self._envelope["user_id"]:
            user_spent = await services.spent_by_user_today(
                str(self._envelope["user_id"]), self._envelope["tenant_id"]
            )
        skills = services.skills(frozenset(s.name for s in specs)) if services.skills else None
        return _Prepared(
            specs=specs,
            skills=skills,
            limit=max(window - reserve, 1),
            budget=budget,
            session_spent=session_spent,
            user_spent=user_spent,
            workspace=workspace,
            llm=InstrumentedModel(services.models, self.events, capabilities=services.capabilities),
        )

    def _system(self, prepared: _Prepared) -> list[Message]:
        key = self.mode
        cached = prepared.system.get(key)
        if cached is None:
            session = self.session
            text = render_system_prompt(
                self.agent,
                tools=prepared.tool_specs(self.mode),
                session=(
                    {"id": session.id, "user_id": session.user_id, "channel": session.channel}
                    if session
                    else None
                ),
                context=session.context if session else None,
                now=self.services.clock.now(),
                mode=self.mode,
            )
            if prepared.skills:
                text = f"{text}\n\n{prepared.skills}" if text else prepared.skills
            cached = [Message(role="system", content=text)] if text else []
            prepared.system[key] = cached
        return cached

    def _answer_open_calls(self, status: RunStatus) -> None:
        """Give each tool call of the last answer that has no result a result saying it did
        not finish, so the session's conversation stays one that providers accept (they
        refuse a tool call left without its result)."""
        answered: set[str | None] = set()
        for message in reversed(self.history):
            if message.role == "tool":
                answered.add(message.tool_call_id)
            elif message.role == "assistant":
                for call in message.tool_calls:
                    if call.id not in answered:
                        self._add(
                            Message(
                                role="tool",
                                content=f"{call.name} did not finish: the run was {status}.",
                                tool_call_id=call.id,
                                name=call.name,
                                metadata={"is_error": True},
                            )
                        )
                return

    async def _safe_point(self, *, steering: bool = True) -> None:
        if self._stop is not None:
            raise self._stop
        if not self._resumed.is_set():
            self.lifecycle.move("paused")
            await self.events.flush()
            await self._resumed.wait()
            if self._stop is not None:
                raise self._stop
            self.lifecycle.move("running")
        if steering and self._steered:
            self._join_steered()

    async def _loop(self, prepared: _Prepared) -> Message:
        last_calls: tuple[Any, ...] = ()
        repeats = 0
        limit = self.agent.max_iterations
        if self.resuming is not None:
            await self._finish_interrupted_calls(self.resuming, prepared)
        while True:
            await self._safe_point()
            if self._iterations >= limit:
                raise RunLimitError(
                    f"the run reached max_iterations ({limit}) without a final answer",
                    hint="raise agent.max_iterations, or make the task smaller",
                    limit=limit,
                )
            self._iterations += 1
            response = await self._call_model(prepared)
            message = response.message
            if self.agent.use_chain_of_thought and message.text and "<thinking>" in message.text:
                visible, reasoning = split_reasoning(message.text)
                message = assistant_message(visible, message.tool_calls, reasoning=reasoning)
            self._add(message)
            calls = message.tool_calls
            if not calls:
                return message
            signature = tuple(
                (c.name, orjson.dumps(c.arguments, option=orjson.OPT_SORT_KEYS)) for c in calls
            )
            repeats = repeats + 1 if signature == last_calls else 1
            last_calls = signature
            if repeats >= self.services.max_repeated_calls:
                raise RunLimitError(
                    f"the model called {calls[0].name} with the same arguments {repeats} times "
                    "in a row; the run was stopped",
                    hint="the model is looping: change the prompt or the tool's answers",
                    tool=calls[0].name,
                    repeats=repeats,
                )
            # Steered messages wait for the next model call: a tool call and its result are
            # never split by another message.
            await self._safe_point(steering=False)
            results = await self._run_tools(calls, prepared)
            for call, result in zip(calls, results, strict=True):
                self._add_tool_message(call, result)

    def _add_tool_message(self, call: ToolCall, result: ToolResult) -> None:
        self._add(
            Message(
                role="tool",
                content=result.content,
                tool_call_id=call.id,
                name=call.name,
                metadata={"is_error": True} if result.is_error else {},
            )
        )

    async def _finish_interrupted_calls(self, resume: Resume, prepared: _Prepared) -> None:
        """Go on with the calls of the last answer that had no result when the process
        stopped: one that waited for an approval gets its answer (awaited if still pending);
        one that had begun runs again only if its tool is idempotent, otherwise the model is
        told its effect is unknown; one that had not begun runs now."""
        self._iterations = resume.iterations
        self._tool_calls = resume.tool_calls
        self._usage = resume.usage
        self._cost = resume.cost_usd
        registry = self.services.executor.registry
        results: dict[str, ToolResult] = {}
        again: list[ToolCall] = []
        for call in resume.calls:
            recorded = resume.results.get(call.id)
            if recorded is not None:
                results[call.id] = recorded
                continue
            if call.name == SUBMIT_PLAN.name:
                results[call.id] = await self._resume_plan(call, resume, prepared)
                continue
            tool = registry.get(call.name)
            waiting = call.id in resume.requests
            refused = not resume.decisions.get(call.id, (True, None))[0]
            if (
                call.id in resume.begun
                and not waiting
                and not refused
                and tool is not None
                and not is_idempotent(tool)
            ):
                result = ToolResult(
                    call_id=call.id,
                    name=call.name,
                    content=f"{call.name} was interrupted by a restart of PromptLine before its "
                    "result was recorded: whether it took effect is unknown. Check before "
                    "calling it again.",
                    is_error=True,
                    metadata={"outcome": "interrupted"},
                )
                self._record_result(result, None, time.perf_counter())
                results[call.id] = result
            else:
                again.append(call)
        if again:
            ex = self.services.executor
            resumed = ToolExecutor(
                ex.registry,
                self.services.bus,
                gate=_ResumeGate(self, resume),
                max_timeout=ex.max_timeout,
                max_output_chars=ex.max_output_chars,
                limits=ex.limits,
                sandboxes=ex.sandboxes,
                alerts=ex.alerts,
            )
            done = await resumed.execute_many(again, self._scope(prepared), events=self.events)
            results.update({c.id: r for c, r in zip(again, done, strict=True)})
        for call in resume.calls:
            self._add_tool_message(call, results[call.id])

    async def _resume_plan(self, call: ToolCall, resume: Resume, prepared: _Prepared) -> ToolResult:
        request_id = resume.requests.get(call.id)
        approval = self.services.resume_approval
        if request_id is not None and approval is not None:
            answer = await approval(request_id)
            result = self._plan_result(call, answer.allowed, answer.reason)
        elif call.id in resume.decisions:
            approved, reason = resume.decisions[call.id]
            result = self._plan_result(call, approved, reason)
        else:
            # Never asked before the stop: ask now.
            result = await self._submit_plan(call, self._scope(prepared))
        self._record_result(result, None, time.perf_counter())
        return result

    async def _call_model(self, prepared: _Prepared) -> ModelResponse:
        system = self._system(prepared)
        tools = prepared.tool_specs(self.mode)
        fit = await fit_context(
            system,
            self.history,
            limit=prepared.limit - prepared.tools_tokens(self.mode),
            strategy=self.services.context_strategy,
            summarize=(
                functools.partial(self._summarize, prepared)
                if self.services.context_strategy == "summarize"
                else None
            ),
        )
        if not fit.fits:
            raise BudgetExceededError(
                f"the conversation's last turn needs about {fit.tokens} tokens, more than the "
                f"context window of {self.model or 'the model'} allows ({prepared.limit})",
                hint="send a shorter message, or use a model with a larger context window",
                tokens=fit.tokens,
                limit=prepared.limit,
            )
        check(prepared.budget, session=prepared.session_spent, user=prepared.user_spent)
        model, tags = self.model, []
        if model.startswith("tag:"):
            model, tags = "", [model[4:]]
        request = ModelRequest(
            model=model,
            messages=fit.messages,
            tools=list(tools),
            temperature=self.agent.temperature,
            max_tokens=self.agent.max_tokens,
            tags=tags,
        )
        context = self._call_context
        if self.agent.stream:
            response: ModelResponse | None = None
            async for item in prepared.llm.stream(request, context=context):
                if isinstance(item, ModelResponse):
                    response = item
            assert response is not None
        else:
            response = await prepared.llm.complete(request, context=context)
        self._count(response, prepared)
        return response

    def _count(self, response: ModelResponse, prepared: _Prepared) -> None:
        """Add a model call's usage to the run's, and to the budgets being watched."""
        self._usage = self._usage + response.usage
        if response.cost_usd is not None:
            self._cost = (self._cost or 0.0) + response.cost_usd
        tokens = response.usage.total_tokens
        for spent in (prepared.session_spent, prepared.user_spent):
            if spent is not None:
                spent.add(tokens, response.cost_usd)

    async def _summarize(self, prepared: _Prepared, messages: list[Message]) -> str:
        # The same older turns are left out at every call until the conversation grows
        # past the window again: summarise them once.
        if self._summary is not None and self._summary[0] == len(messages):
            return self._summary[1]
        transcript = "\n".join(f"{m.role}: {m.text}" for m in messages if m.text)
        request = ModelRequest(
            model=self.model,
            messages=[
                Message(
                    role="system",
                    content="Summarise this conversation in a few sentences. Keep names, "
                    "facts, numbers, decisions and open questions.",
                ),
                Message(role="user", content=transcript),
            ],
        )
        response = await prepared.llm.complete(request, context=self._call_context)
        self._count(response, prepared)
        self._summary = (len(messages), response.message.text)
        return response.message.text

    async def _run_tools(self, calls: Sequence[ToolCall], prepared: _Prepared) -> list[ToolResult]:
        self._tool_calls += len(calls)
        scope = self._scope(prepared)
        plan_calls = [c for c in calls if c.name == SUBMIT_PLAN.name and self.mode == "plan"]
        if not plan_calls:
            return await self.services.executor.execute_many(calls, scope, events=self.events)
        results: dict[str, ToolResult] = {}
        others = [c for c in calls if c not in plan_calls]
        if others:
            done = await self.services.executor.execute_many(others, scope, events=self.events)
            results.update({c.id: r for c, r in zip(others, done, strict=True)})
        for call in plan_calls:
            envelope = {**self._envelope, "session_id": scope.session_id}
            command = build(ToolCommandEvent, **envelope, data=build(ToolCommand, call=call))
            await self.events.publish(command)
            started = time.perf_counter()
            result = await self._submit_plan(call, scope)
            self._record_result(result, command.id, started)
            results[call.id] = result
        return [results[c.id] for c in calls]

    def _record_result(self, result: ToolResult, command_id: str | None, started: float) -> None:
        envelope = {**self._envelope, "causation_id": command_id}
        elapsed = round((time.perf_counter() - started) * 1000, 3)
        self.events.emit(
            build(
                ToolResultEvent,
                **envelope,
                data=build(ToolResultData, result=result, duration_ms=elapsed),
            )
        )

    def _scope(self, prepared: _Prepared) -> CallScope:
        return CallScope(
            workspace=prepared.workspace,
            session_id=self._envelope["session_id"],
            run_id=self.id,
            user_id=self._envelope["user_id"],
            tenant_id=self._envelope["tenant_id"],
            agent=self.agent.name,
            mode=self.mode,
            correlation_id=self.id,
            session_rules=self.session.rules if self.session else {},
            channel=self.session.channel if self.session else None,
            session_sandbox=self.session.sandbox if self.session else None,
        )

    async def _submit_plan(self, call: ToolCall, scope: CallScope) -> ToolResult:
        plan = str(call.arguments.get("plan", "")).strip()
        approver = self.services.plan_approver
        if not plan:
            return self._plan_result(call, False, None, "submit_plan needs a non-empty `plan`.")
        if approver is None:
            text = "no one can approve plans here; answer with the plan instead."
            return self._plan_result(call, False, None, text)
        approved, reason = await approver(plan, scope, self.events)
        return self._plan_result(call, approved, reason)

    def _plan_result(
        self, call: ToolCall, approved: bool, reason: str | None, text: str | None = None
    ) -> ToolResult:
        if text is None:
            text = (
                "The plan is approved. Carry it out now: every tool is available."
                if approved
                else f"The plan was not approved ({reason or 'denied'}). Ask what to change."
            )
        if approved:
            self.mode = "act"
        return ToolResult(
            call_id=call.id,
            name=call.name,
            content=text,
            is_error=not approved,
            metadata={"outcome": "ok" if approved else "denied"},
        )


@dataclass
class _Prepared:
    """What a run works out once and reuses at every iteration."""

    specs: list[ToolSpec]
    limit: int
    budget: Budget
    session_spent: Spent | None
    user_spent: Spent | None
    workspace: Path
    llm: InstrumentedModel
    skills: str | None = None
    """The skills section of the system prompt (`RunServices.skills`)."""
    system: dict[str, list[Message]] = field(default_factory=dict)
    _tokens: dict[str, int] = field(default_factory=dict)

    def tool_specs(self, mode: str) -> list[ToolSpec]:
        """The tools offered in ``mode`` (plan mode adds ``submit_plan``)."""
        return [*self.specs, SUBMIT_PLAN] if mode == "plan" else self.specs

    def tools_tokens(self, mode: str) -> int:
        """Estimated tokens of the tool descriptions in ``mode``."""
        found = self._tokens.get(mode)
        if found is None:
            found = self._tokens[mode] = estimate_tokens([], self.tool_specs(mode))
        return found
