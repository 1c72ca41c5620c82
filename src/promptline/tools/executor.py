"""Runs tool calls: argument validation, the permission gate, a time limit, cancellation,
``tool_progress`` streaming (merged to a bounded rate and size), output truncation, and the
events that put each call on record (``tool_command`` before, ``tool_progress``*,
``tool_result`` after)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

import orjson

from promptline.core.errors import InvalidInputError, PromptLineError
from promptline.core.events import (
    SecurityAlert,
    SecurityAlertEvent,
    ToolCommand,
    ToolCommandEvent,
    ToolProgress,
    ToolProgressEvent,
    ToolResultData,
    ToolResultEvent,
)
from promptline.core.messages import FilePart, ImagePart, TextPart, ToolCall, ToolResult
from promptline.core.output_capture import OutputCapture
from promptline.core.tool_calls import Authorization, CallScope
from promptline.events.protocols import EventBus
from promptline.tools.base import Tool, ToolCancelled, ToolContext, ToolError, ToolOutput
from promptline.tools.registry import ToolRegistry

if TYPE_CHECKING:
    from promptline.security.sandbox.choice import Sandboxes

__all__ = [
    "MAX_PROGRESS_MESSAGE_CHARS",
    "MAX_PROGRESS_OUTPUT_CHARS",
    "MAX_PROGRESS_TOTAL_CHARS",
    "MAX_STOPPED_OUTPUT_CHARS",
    "PROGRESS_INTERVAL_SECS",
    "Authorization",
    "CallScope",
    "Outcome",
    "PermissionGate",
    "ToolExecutor",
    "truncate",
]

_log = logging.getLogger("promptline.tools")

Outcome = Literal[
    "ok", "error", "invalid_arguments", "unknown_tool", "denied", "timeout", "cancelled"
]
"""How a call ended; kept in ``ToolResult.metadata["outcome"]``."""

DEFAULT_MAX_OUTPUT_CHARS = 32_000

PROGRESS_INTERVAL_SECS = 0.5
"""A call publishes at most one ``tool_progress`` event in this many seconds; the reports in
between are merged into the next one. A tool may report as often as it likes (a command
printing without pause reports thousands of times a second) and the event log stays small."""

MAX_PROGRESS_OUTPUT_CHARS = 4_000
"""Output carried by one ``tool_progress`` event: its head and tail around a marker."""

MAX_PROGRESS_MESSAGE_CHARS = 1_000
"""A progress message (a status line) longer than this is cut to its head and tail."""

MAX_PROGRESS_TOTAL_CHARS = 100_000
"""Output carried by all the ``tool_progress`` events of one call. Past it the events carry
only percent and message (one says the output is no longer streamed): a tool's whole output
belongs in its result or a file, not in the append-only event log."""

MAX_STOPPED_OUTPUT_CHARS = 4_000
"""The end of its output a call that timed out or was cancelled answers with."""

_PART_TYPES = (TextPart, ImagePart, FilePart)


class PermissionGate(Protocol):
    """Decides whether a call may run; may wait for a person (``ask``)."""

    async def authorize(self, tool: Tool, call: ToolCall, scope: CallScope) -> Authorization:
        """Allow or refuse ``call``; a refusal's ``reason`` is shown to the model."""
        ...


class ToolExecutor:
    """Executes tool calls from the model against a `ToolRegistry`.

    Every call ends in a `ToolResult` (never an exception, except `asyncio.CancelledError`
    propagating a cancellation after its result is recorded): invalid arguments, unknown
    tools, refusals, failures and time-outs become error results the model can read.
    ``max_timeout`` is the ceiling of every call (``security.resource_limits.timeout_secs``).

    Progress reports become at most one ``tool_progress`` event per ``progress_interval``
    seconds of ``clock`` (a monotonic clock; tests pass a fake one), each with at most
    `MAX_PROGRESS_OUTPUT_CHARS` of output and all of a call's together with at most
    ``max_progress_chars``.
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
        progress_interval: float = PROGRESS_INTERVAL_SECS,
        max_progress_chars: int = MAX_PROGRESS_TOTAL_CHARS,
        clock: Callable[[], float] = time.monotonic,
        sandboxes: Sandboxes | None = None,
        alerts: bool = True,
    ) -> None:
        if not (math.isfinite(progress_interval) and progress_interval >= 0):
            raise InvalidInputError(
                f"progress_interval must be a number of seconds of 0 or more, "
                f"got {progress_interval!r}",
                hint=f"leave it out for the default of {PROGRESS_INTERVAL_SECS:g} s",
            )
        if max_progress_chars < 0:
            raise InvalidInputError(
                f"max_progress_chars must be 0 or more, got {max_progress_chars!r}",
                hint="give 0 to stream no output as progress, or leave it out for the default",
            )
        self.registry = registry
        self._bus = bus
        self.gate = gate
        self.max_timeout = max_timeout
        self.max_output_chars = max_output_chars
        self.limits = dict(limits or {})
        self.progress_interval = progress_interval
        self.max_progress_chars = max_progress_chars
        self.clock = clock
        self.sandboxes = sandboxes
        """The sandbox of each call, from its agent, channel and session (None: the tools'
        own default)."""
        self.alerts = alerts
        """Whether a ``security_alert`` a tool reports is published (``security.audit_log``)."""

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

        async def publish(data: ToolProgress) -> None:
            await bus.publish(ToolProgressEvent(**envelope, data=data))

        progress = _CallProgress(
            call.id,
            publish,
            clock=self.clock,
            interval=self.progress_interval,
            budget=self.max_progress_chars,
        )
        try:
            result = await self._execute(call, scope, progress)
        except asyncio.CancelledError:
            text = "the call was cancelled before it finished" + progress.last_words()
            result = _result(call, text, "cancelled")
            await self._record(bus, result, envelope, started)
            raise
        alert = result.metadata.pop("security_alert", None)
        if isinstance(alert, dict) and self.alerts:
            # A limit a sandbox enforced, say: on record beside the call.
            with contextlib.suppress(PromptLineError):
                await bus.publish(SecurityAlertEvent(**envelope, data=SecurityAlert(**alert)))
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
        self, call: ToolCall, scope: CallScope, progress: _CallProgress
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
        return await self._run(tool, call, arguments, scope, progress)

    async def _run(
        self,
        tool: Tool,
        call: ToolCall,
        arguments: dict[str, Any],
        scope: CallScope,
        progress: _CallProgress,
    ) -> ToolResult:
        timeout = self.max_timeout if tool.timeout is None else min(tool.timeout, self.max_timeout)
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
            sandbox=None
            if self.sandboxes is None
            else self.sandboxes.for_call(
                scope.agent, channel=scope.channel, session=scope.session_sandbox
            ),
            _progress=progress.report,
        )
        try:
            async with asyncio.timeout(timeout):
                value = await tool.run(arguments, context)
        except TimeoutError:
            context.cancel()
            text = f"{call.name} timed out after {timeout:g} s" + progress.last_words()
            result = _result(call, text, "timeout")
        except asyncio.CancelledError:
            context.cancel()
            raise
        except ToolCancelled as exc:
            result = _result(call, exc.message + progress.last_words(), "cancelled")
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
            await progress.finish()
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
    capture = OutputCapture(limit)
    capture.add(text)
    return capture.text()


class _CallProgress:
    """The progress of one call, from its reports to its ``tool_progress`` events.

    Reports are merged (output joined, the latest percent and message win) into at most one
    event per ``interval`` of ``clock``; an event carries the percent and message reported
    since the previous one, never again those it already carried. The first report goes out
    at once, later ones when the interval since the previous event has passed, on the next
    report or on a timer. Which reports share an event depends on the clock only, so a fake
    clock makes it exact. Events are published in order by one task; `finish` publishes what
    is left and waits for it, so every event of a call precedes its ``tool_result``.
    """

    def __init__(
        self,
        call_id: str,
        publish: Callable[[ToolProgress], Awaitable[None]],
        *,
        clock: Callable[[], float],
        interval: float,
        budget: int,
    ) -> None:
        self._call_id = call_id
        self._publish = publish
        self._clock = clock
        self._interval = interval
        self._budget = budget
        self._loop = asyncio.get_running_loop()
        # What the next event carries: the latest percent and message reported since the
        # previous event (an event repeats neither), and the output reported since.
        self._percent: float | None = None
        self._message: str | None = None
        self._said: str | None = None
        self._output = OutputCapture(MAX_PROGRESS_OUTPUT_CHARS)
        self._pending = False
        self._last: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._queue: deque[ToolProgress] = deque()
        self._publisher: asyncio.Task[None] | None = None
        self._sent = 0
        self._streaming = True
        self._tail = ""
        self._total = 0
        self._ended = False
        self._failed = False

    def report(
        self, percent: float | None = None, message: str | None = None, output: str | None = None
    ) -> None:
        """The call's progress reporter (`ToolContext.report_progress`): safe from any thread."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._add(percent, message, output)
        else:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody listens
                self._loop.call_soon_threadsafe(self._add, percent, message, output)

    def _add(self, percent: Any, message: Any, output: Any) -> None:
        if self._ended:
            # A sync tool's thread outlives a time-out; its later reports would land in the
            # log after the call's tool_result.
            return
        if percent is not None:
            self._percent = max(0.0, min(100.0, float(percent)))
        if message is not None:
            self._message = self._said = truncate(str(message), MAX_PROGRESS_MESSAGE_CHARS)
        text = None if output is None else str(output)
        if text:
            self._total += len(text)
            self._tail = (self._tail + text[-MAX_STOPPED_OUTPUT_CHARS:])[-MAX_STOPPED_OUTPUT_CHARS:]
        if text is not None and percent is None and message is None and not self._streaming:
            return  # output past the budget, and nothing else new: no event for it
        if text and self._streaming:
            self._output.add(text)
        self._pending = True
        if self._failed:
            return
        if self._due():
            self._emit()
        elif self._timer is None:
            self._timer = self._loop.call_later(self._wait(), self._on_timer)

    def _remaining(self) -> float:
        """Seconds of ``clock`` until the next event may go out (0 or less: it may now).

        `_due` and the timer both ask this one expression, so they never disagree by a
        rounding error (and a timer never fires again and again on a clock that is not due).
        """
        if self._last is None:
            return 0.0
        return self._last + self._interval - self._clock()

    def _due(self) -> bool:
        return self._remaining() <= 0

    def _wait(self) -> float:
        """Real seconds for the timer: what is left of the interval, at least a millisecond
        (a fake clock that stands still only makes the timer look again later)."""
        return min(self._interval, max(0.001, self._remaining()))

    def _on_timer(self) -> None:
        self._timer = None
        if self._ended or not self._pending:
            return
        if self._due():
            self._emit()
        else:
            self._timer = self._loop.call_later(self._wait(), self._on_timer)

    def _emit(self) -> None:
        """Turn what is pending into the next event and see that it gets published."""
        self._last = self._clock()
        self._pending = False
        output = self._spend(self._output.text()) if self._output.total else None
        self._output = OutputCapture(MAX_PROGRESS_OUTPUT_CHARS)
        self._queue.append(
            ToolProgress(
                call_id=self._call_id, percent=self._percent, message=self._message, output=output
            )
        )
        self._percent = self._message = None
        if self._publisher is None or self._publisher.done():
            self._publisher = self._loop.create_task(self._drain())

    def _spend(self, output: str) -> str:
        """``output`` within what is left of the budget; the one that exhausts it ends with a
        note that the rest is not streamed."""
        room = self._budget - self._sent
        if len(output) <= room:
            self._sent += len(output)
            return output
        self._streaming = False
        self._sent = self._budget
        return (
            f"{output[: max(room, 0)]}\n[... output past {self._budget} characters is not "
            "streamed as progress ...]\n"
        )

    async def _drain(self) -> None:
        while self._queue:
            data = self._queue.popleft()
            try:
                await self._publish(data)
            except Exception as exc:
                # Progress is a courtesy to watchers: a store that refuses it must not fail
                # the call (its tool_result is published, or fails, on its own).
                _log.warning(
                    "tool_progress of call %s not recorded (%s: %s); the call's further "
                    "progress is dropped",
                    self._call_id,
                    type(exc).__name__,
                    exc,
                )
                self._queue.clear()
                self._failed = True
                return

    async def finish(self) -> None:
        """End the call's progress: publish what is pending at once, whatever the interval,
        and wait until every event is published. Reports from now on are dropped."""
        self._ended = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending and not self._failed:
            self._emit()
        if self._publisher is not None:
            # Waiting, not awaiting: a second cancellation must not cancel the publisher.
            await asyncio.wait({self._publisher})

    def last_words(self) -> str:
        """What a stopped call had said: its last status message and the end of its output,
        each on its own lines after a newline; empty when it reported neither."""
        parts: list[str] = []
        if self._said:
            parts.append(f"Its last status: {self._said}")
        if self._total:
            if self._total > len(self._tail):
                parts.append(
                    f"The last {len(self._tail)} of the {self._total} characters of its output:"
                )
            else:
                parts.append("Its output:")
            parts.append(self._tail.rstrip("\n"))
        return "".join("\n" + part for part in parts)


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
