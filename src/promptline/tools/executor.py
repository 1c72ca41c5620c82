"""Runs tool calls: argument validation, the permission gate, a time limit, cancellation,
``tool_progress`` streaming, output truncation, and the events that put each call on record
(``tool_command`` before, ``tool_progress``*, ``tool_result`` after)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import orjson

from promptline.core.errors import InvalidInputError, PromptLineError
from promptline.core.events import (
    ToolCommand,
    ToolCommandEvent,
    ToolProgress,
    ToolProgressEvent,
    ToolResultData,
    ToolResultEvent,
)
from promptline.core.messages import FilePart, ImagePart, TextPart, ToolCall, ToolResult
from promptline.events.protocols import EventBus
from promptline.tools.base import Tool, ToolCancelled, ToolContext, ToolError, ToolOutput
from promptline.tools.registry import ToolRegistry

__all__ = [
    "Authorization",
    "CallScope",
    "Outcome",
    "PermissionGate",
    "ToolExecutor",
    "truncate",
]

Outcome = Literal[
    "ok", "error", "invalid_arguments", "unknown_tool", "denied", "timeout", "cancelled"
]
"""How a call ended; kept in ``ToolResult.metadata["outcome"]``."""

DEFAULT_MAX_OUTPUT_CHARS = 32_000
MAX_PROGRESS_OUTPUT_CHARS = 4_000
_PART_TYPES = (TextPart, ImagePart, FilePart)


@dataclass(frozen=True, slots=True)
class CallScope:
    """Who and what a tool call belongs to; copied into every event of the call."""

    workspace: Path
    session_id: str | None = None
    run_id: str | None = None
    user_id: str | None = None
    tenant_id: str | None = None
    agent: str | None = None
    mode: Literal["plan", "act"] = "act"
    correlation_id: str | None = None
    session_rules: Mapping[str, Any] = field(default_factory=dict)
    """The session's own permission rules (tool name or pattern -> rule), most specific."""


@dataclass(frozen=True, slots=True)
class Authorization:
    """The permission gate's answer for one call."""

    allowed: bool
    reason: str | None = None
    decided_by: str | None = None


class PermissionGate(Protocol):
    """Decides whether a call may run; may wait for a person (``ask``)."""

    async def authorize(self, tool: Tool, call: ToolCall, scope: CallScope) -> Authorization:
        """Allow or refuse ``call``; a refusal's ``reason`` is shown to the model."""
        ...


@dataclass(slots=True)
class _Progress:
    """Coalesces progress reports between two publications."""

    percent: float | None = None
    message: str | None = None
    output: list[str] = field(default_factory=list)
    buffered: int = 0
    pending: bool = False
    ended: bool = False


class ToolExecutor:
    """Executes tool calls from the model against a `ToolRegistry`.

    Every call ends in a `ToolResult` (never an exception, except `asyncio.CancelledError`
    propagating a cancellation after its result is recorded): invalid arguments, unknown
    tools, refusals, failures and time-outs become error results the model can read.
    ``max_timeout`` is the ceiling of every call (``security.resource_limits.timeout_secs``).
    """

    def __init__(
        self,
        registry: ToolRegistry,
        bus: EventBus,
        *,
        gate: PermissionGate | None = None,
        max_timeout: float = 300.0,
        max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
        limits: dict[str, Any] | None = None,
    ) -> None:
        self.registry = registry
        self._bus = bus
        self.gate = gate
        self.max_timeout = max_timeout
        self.max_output_chars = max_output_chars
        self.limits = dict(limits or {})

    async def execute_many(
        self, calls: Sequence[ToolCall], scope: CallScope, *, events: EventBus | None = None
    ) -> list[ToolResult]:
        """Run the calls of one turn concurrently; results in the order of ``calls``.

        ``events`` replaces the executor's bus for these calls (a run's own recorder).
        """
        if len(calls) == 1:
            return [await self.execute(calls[0], scope, events=events)]
        tasks = [asyncio.ensure_future(self.execute(call, scope, events=events)) for call in calls]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def execute(
        self, call: ToolCall, scope: CallScope, *, events: EventBus | None = None
    ) -> ToolResult:
        """Run one call and record it; see the class docstring for what can come back."""
        bus = events or self._bus
        envelope = _envelope(scope)
        command = ToolCommandEvent(**envelope, data=ToolCommand(call=call))
        await bus.publish(command)
        envelope["causation_id"] = command.id
        started = time.perf_counter()
        try:
            result = await self._execute(call, scope, envelope, bus)
        except asyncio.CancelledError:
            result = _result(call, "the call was cancelled before it finished", "cancelled")
            await self._record(bus, result, envelope, started)
            raise
        await self._record(bus, result, envelope, started)
        return result

    async def _record(
        self, bus: EventBus, result: ToolResult, envelope: dict[str, Any], started: float
    ) -> None:
        elapsed = (time.perf_counter() - started) * 1000
        event = ToolResultEvent(
            **envelope, data=ToolResultData(result=result, duration_ms=round(elapsed, 3))
        )
        await asyncio.shield(bus.publish(event))

    async def _execute(
        self, call: ToolCall, scope: CallScope, envelope: dict[str, Any], bus: EventBus
    ) -> ToolResult:
        tool = self.registry.get(call.name)
        if tool is None:
            known = ", ".join(self.registry.names()) or "none"
            return _result(
                call,
                f"unknown tool {call.name!r}; the tools available are: {known}",
                "unknown_tool",
            )
        try:
            arguments = tool.validate(call.arguments)
        except InvalidInputError as exc:
            return _result(
                call, f"{exc.message}. Fix the arguments and call again.", "invalid_arguments"
            )
        except Exception as exc:  # a tool's own validate that breaks: its fault, not the model's
            return _result(
                call, f"{call.name} could not check its arguments: {type(exc).__name__}", "error"
            )
        if scope.mode == "plan" and not tool.read_only:
            return _result(
                call,
                f"{call.name} changes things and the run is in plan mode, where only read-only "
                "tools run: call submit_plan with your plan; it runs once the plan is approved",
                "denied",
            )
        if self.gate is not None:
            try:
                decision = await self.gate.authorize(tool, call, scope)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Fail closed: a permission check that breaks refuses the call.
                reason = f"the permission check failed ({type(exc).__name__}: {exc})"
                return _result(call, f"permission denied for {call.name}: {reason}", "denied")
            if not decision.allowed:
                reason = decision.reason or "not allowed by the permission policy"
                return _result(call, f"permission denied for {call.name}: {reason}", "denied")
        return await self._run(tool, call, arguments, scope, envelope, bus)

    async def _run(
        self,
        tool: Tool,
        call: ToolCall,
        arguments: dict[str, Any],
        scope: CallScope,
        envelope: dict[str, Any],
        bus: EventBus,
    ) -> ToolResult:
        timeout = self.max_timeout if tool.timeout is None else min(tool.timeout, self.max_timeout)
        loop = asyncio.get_running_loop()
        progress = _Progress()
        flushed = asyncio.Event()
        flushed.set()

        publishers: set[asyncio.Task[None]] = set()

        async def publish_progress() -> None:
            try:
                await _drain()
            finally:
                flushed.set()

        async def _drain() -> None:
            while progress.pending:
                output = "".join(progress.output) or None
                if output is not None and len(output) > MAX_PROGRESS_OUTPUT_CHARS:
                    output = truncate(output, MAX_PROGRESS_OUTPUT_CHARS)
                data = ToolProgress(
                    call_id=call.id,
                    percent=progress.percent,
                    message=progress.message,
                    output=output,
                )
                progress.output.clear()
                progress.buffered = 0
                progress.pending = False
                await bus.publish(ToolProgressEvent(**envelope, data=data))

        def report_in_loop(percent: Any, message: Any, output: Any) -> None:
            if progress.ended:
                # A sync tool's thread outlives a time-out; its later reports would land in
                # the log after the call's tool_result.
                return
            if percent is not None:
                progress.percent = max(0.0, min(100.0, float(percent)))
            if message is not None:
                progress.message = str(message)
            if output is not None:
                progress.output.append(str(output))
                progress.buffered += len(progress.output[-1])
                if progress.buffered > 4 * MAX_PROGRESS_OUTPUT_CHARS:
                    # A publication is late (a slow store): keep the newest output only.
                    text = "".join(progress.output)[-2 * MAX_PROGRESS_OUTPUT_CHARS :]
                    progress.output[:] = [text]
                    progress.buffered = len(text)
            if not progress.pending:
                progress.pending = True
                if flushed.is_set():
                    flushed.clear()
                    task = loop.create_task(publish_progress())
                    publishers.add(task)
                    task.add_done_callback(publishers.discard)

        def report(
            percent: float | None = None, message: str | None = None, output: str | None = None
        ) -> None:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                report_in_loop(percent, message, output)
            else:
                with contextlib.suppress(RuntimeError):  # the loop has closed: nobody listens
                    loop.call_soon_threadsafe(report_in_loop, percent, message, output)

        context = ToolContext(
            call_id=call.id,
            tool=call.name,
            workspace=scope.workspace,
            session_id=scope.session_id,
            run_id=scope.run_id,
            user_id=scope.user_id,
            tenant_id=scope.tenant_id,
            agent=scope.agent,
            timeout=timeout,
            limits=self.limits,
            _progress=report,
        )
        try:
            async with asyncio.timeout(timeout):
                value = await tool.run(arguments, context)
        except TimeoutError:
            context.cancel()
            result = _result(call, f"{call.name} timed out after {timeout:g} s", "timeout")
        except asyncio.CancelledError:
            context.cancel()
            raise
        except ToolCancelled as exc:
            result = _result(call, exc.message, "cancelled")
        except ToolError as exc:
            text = f"{exc.message} (hint: {exc.hint})" if exc.hint else exc.message
            result = _result(call, text, "error")
        except PromptLineError as exc:
            result = _result(call, f"{call.name} failed: {exc.message}", "error")
        except Exception as exc:
            result = _result(call, f"{call.name} raised {type(exc).__name__}: {exc}", "error")
        else:
            result = self._to_result(call, value)
        finally:
            progress.ended = True
            if not flushed.is_set():
                await flushed.wait()
        return result

    def _to_result(self, call: ToolCall, value: Any) -> ToolResult:
        is_error = False
        metadata: dict[str, Any] = {"outcome": "ok"}
        # A ToolOutput's list is content parts even when empty; a plain list is parts only if
        # every item is one (an empty list or objects with a `type` attribute are JSON data).
        parts_given = isinstance(value, ToolOutput) and isinstance(value.content, list)
        if isinstance(value, ToolOutput):
            is_error = value.is_error
            metadata.update(value.metadata)
            if is_error:
                metadata["outcome"] = "error"
            value = value.content
        if isinstance(value, list) and (
            parts_given or (value and all(isinstance(p, _PART_TYPES) for p in value))
        ):
            parts = [
                TextPart(text=truncate(p.text, self.max_output_chars))
                if isinstance(p, TextPart)
                else p
                for p in value
            ]
            return ToolResult(
                call_id=call.id, name=call.name, content=parts, is_error=is_error, metadata=metadata
            )
        text = value if isinstance(value, str) else _to_text(value)
        if len(text) > self.max_output_chars:
            metadata["truncated_chars"] = len(text) - self.max_output_chars
            text = truncate(text, self.max_output_chars)
        return ToolResult(
            call_id=call.id, name=call.name, content=text, is_error=is_error, metadata=metadata
        )


def truncate(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters: its head and tail around a marker saying
    how much was left out (so the model knows the output is incomplete)."""
    if len(text) <= limit:
        return text
    omitted = len(text) - limit
    head = limit * 3 // 4
    tail = limit - head
    return f"{text[:head]}\n[... {omitted} characters omitted ...]\n{text[len(text) - tail :]}"


def _to_text(value: Any) -> str:
    if value is None:
        return ""
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:
        return str(value)


def _result(call: ToolCall, text: str, outcome: Outcome) -> ToolResult:
    return ToolResult(
        call_id=call.id,
        name=call.name,
        content=text,
        is_error=True,
        metadata={"outcome": outcome},
    )


def _envelope(scope: CallScope) -> dict[str, Any]:
    return {
        "session_id": scope.session_id,
        "run_id": scope.run_id,
        "user_id": scope.user_id,
        "tenant_id": scope.tenant_id,
        "agent_id": scope.agent,
        "correlation_id": scope.correlation_id,
        "stream": scope.session_id or scope.run_id or "",
    }
