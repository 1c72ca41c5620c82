"""Shows a run as it happens: the answer streamed as it is written, each tool call with its
progress and result, and approvals asked (or answered) inline while the run waits."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TextIO

if TYPE_CHECKING:
    from promptline.core.events import Event, PermissionRequest
    from promptline.events.protocols import Subscription
    from promptline.runtime.run import Run, RunResult

GrantScope = Literal["once", "session", "always"]

DRAIN_SECONDS = 2.0
"""How long the view waits, after a run ended, for its last events to be shown."""

ANSWER_HELP = "y = yes, n = no, a = always, s = for this session"


@dataclass(frozen=True, slots=True)
class Decision:
    """An answer to a permission request (``content``: the fields of an answered question,
    an MCP server's elicitation)."""

    approve: bool
    scope: GrantScope = "once"
    reason: str | None = None
    content: dict[str, Any] | None = None


Approver = Callable[["PermissionRequest", bool], Awaitable[Decision | None]]
"""Answers a request (the bool says whether the run has a session); None cancels the run."""

Reader = Callable[[str], Awaitable[str | None]]
"""Asks a question and returns the typed line; None when the user gave up (EOF, Ctrl-C)."""

Canceller = Callable[[str], None]
"""Cancels the run being shown, with a reason."""


class Responder(Protocol):
    """Where answers to permission requests go: the local permission manager, or a
    gateway's approvals API."""

    async def respond(
        self,
        request_id: str,
        *,
        approve: bool,
        scope: GrantScope = "once",
        decided_by: str | None = None,
        reason: str | None = None,
        content: dict[str, Any] | None = None,
    ) -> object: ...


_ANSWERS: dict[str, Decision] = {
    "y": Decision(True),
    "yes": Decision(True),
    "n": Decision(False, reason="the user said no"),
    "no": Decision(False, reason="the user said no"),
    "a": Decision(True, "always"),
    "always": Decision(True, "always"),
    "s": Decision(True, "session"),
    "session": Decision(True, "session"),
}


def parse_answer(text: str) -> Decision | None:
    """The decision ``text`` stands for (y, n, a/always, s/session), or None."""
    return _ANSWERS.get(text.strip().lower())


def approve_all(announce: Callable[[str], None], *, by_whom: str) -> Approver:
    """An approver that says yes to everything, saying so through ``announce``."""

    async def approve(request: PermissionRequest, has_session: bool) -> Decision:
        if _is_question(request.tool):
            announce(f"declining: questions are not answered automatically ({by_whom})")
            return Decision(False, reason="questions are not answered automatically")
        announce(f"approving automatically ({by_whom})")
        return Decision(True)

    return approve


def refuse_all(reason: str) -> Approver:
    """An approver that refuses everything with ``reason`` (nobody can be asked)."""

    async def refuse(request: PermissionRequest, has_session: bool) -> Decision:
        return Decision(False, reason=reason)

    return refuse


def ask_with(read: Reader, announce: Callable[[str], None]) -> Approver:
    """An approver that asks through ``read`` until it gets an answer it understands."""

    async def ask(request: PermissionRequest, has_session: bool) -> Decision | None:
        if _is_question(request.tool):
            return await answer_question(request.arguments, read, announce)
        while True:
            text = await read(f"allow {request.tool}? [y]es / [n]o / [a]lways / [s]ession (n): ")
            if text is None:
                return None
            decision = parse_answer(text or "n")
            if decision is None:
                announce(f"please answer {ANSWER_HELP}")
                continue
            if decision.scope == "session" and not has_session:
                announce("this run has no session: approving this call only")
                return Decision(True)
            return decision

    return ask


async def answer_question(
    arguments: dict[str, Any], read: Reader, announce: Callable[[str], None]
) -> Decision | None:
    """Ask a question (an MCP server's elicitation, whose ``arguments`` hold its ``message``
    and its ``requested_schema`` or ``url``) through ``read``, field by field; None when the
    user gives up."""
    while True:
        text = await read("answer it? [y]es / [n]o (n): ")
        if text is None:
            return None
        choice = (text.strip() or "n").lower()
        if choice in ("n", "no"):
            return Decision(False, reason="the user declined")
        if choice in ("y", "yes"):
            break
        announce("please answer y or n")
    schema = arguments.get("requested_schema")
    if not isinstance(schema, dict):
        return Decision(True)  # a page to visit: yes says the user goes on there
    properties = schema.get("properties")
    required = set(schema.get("required") or ())
    content: dict[str, Any] = {}
    for name, field in (properties if isinstance(properties, dict) else {}).items():
        spec = field if isinstance(field, dict) else {}
        while True:
            text = await read(_field_prompt(name, spec, name in required))
            if text is None:
                return None
            if not text.strip():
                if name in required:
                    announce(f"{name} is required")
                    continue
                break
            value, problem = _field_value(text.strip(), spec)
            if problem is None:
                content[name] = value
                break
            announce(problem)
    return Decision(True, content=content)


def _field_prompt(name: str, spec: dict[str, Any], required: bool) -> str:
    kind = str(spec.get("type") or "string")
    choices = spec.get("enum") or (spec.get("items") or {}).get("enum")
    about = [kind if not choices else "one of " + ", ".join(map(str, choices))]
    if kind == "array":
        about = ["comma-separated" + (": " + ", ".join(map(str, choices)) if choices else "")]
    if required:
        about.append("required")
    title = spec.get("title") or name
    described = f" - {spec['description']}" if spec.get("description") else ""
    return f"  {title} ({', '.join(about)}){described}: "


def _field_value(text: str, spec: dict[str, Any]) -> tuple[Any, str | None]:
    """The value ``text`` stands for in a field of ``spec``, or why it cannot."""
    kind = spec.get("type") or "string"
    if kind == "boolean":
        lowered = text.lower()
        if lowered in ("y", "yes", "true"):
            return True, None
        if lowered in ("n", "no", "false"):
            return False, None
        return None, "please answer yes or no"
    if kind in ("integer", "number"):
        try:
            return (int(text) if kind == "integer" else float(text)), None
        except ValueError:
            return None, f"please give {'a whole' if kind == 'integer' else 'a'} number"
    if kind == "array":
        return [part.strip() for part in text.split(",") if part.strip()], None
    choices = spec.get("enum")
    if choices and text not in choices:
        return None, "please give one of " + ", ".join(map(str, choices))
    return text, None


def _is_question(tool: str) -> bool:
    from promptline.security.approvals import is_question

    return is_question(tool)


class Style:
    """ANSI colours on a terminal (unless ``NO_COLOR`` is set); plain text anywhere else."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    @classmethod
    def for_stream(cls, stream: TextIO) -> Style:
        tty = _isatty(stream)
        return cls(tty and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb")

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled and text else text

    def dim(self, text: str) -> str:
        return self._wrap("2", text)

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def red(self, text: str) -> str:
        return self._wrap("31", text)

    def green(self, text: str) -> str:
        return self._wrap("32", text)

    def yellow(self, text: str) -> str:
        return self._wrap("33", text)

    def cyan(self, text: str) -> str:
        return self._wrap("36", text)


class ThinkingFilter:
    """Takes ``<thinking>...</thinking>`` out of streamed text, as the run does with the final
    answer, even when a tag arrives split across chunks."""

    OPEN = "<thinking>"
    CLOSE = "</thinking>"

    def __init__(self) -> None:
        self.thinking = False
        self._pending = ""
        self._strip = False

    def feed(self, text: str) -> str:
        """The visible part of ``text`` (a possible partial tag at its end is held back)."""
        data, self._pending = self._pending + text, ""
        shown: list[str] = []
        while data:
            tag = self.CLOSE if self.thinking else self.OPEN
            at = data.find(tag)
            if at >= 0:
                if not self.thinking:
                    shown.append(data[:at])
                data = data[at + len(tag) :]
                self.thinking = not self.thinking
                # The answer after a thinking block starts at its first visible character.
                self._strip = not self.thinking
                continue
            keep = _partial_suffix(data, tag)
            if not self.thinking:
                shown.append(data[: len(data) - keep])
            self._pending = data[len(data) - keep :]
            break
        visible = "".join(shown)
        if self._strip and visible:
            visible = visible.lstrip()
            self._strip = not visible
        return visible

    def end(self) -> str:
        """What is held back at the end of an answer; resets the filter."""
        rest = "" if self.thinking else self._pending
        self.thinking, self._pending, self._strip = False, "", False
        return rest


def _partial_suffix(text: str, tag: str) -> int:
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


class RunView:
    """Prints one run's events as they arrive and answers its permission requests.

    The answer goes to ``out``; notes (tool calls, progress, approvals, errors) go to
    ``notes`` (default: ``out``). With ``stream`` off the answer is printed once the run
    has ended, with ``show_answer`` off not at all; with ``show_tools`` off only approvals
    and errors are noted. ``decided_by`` names who answered in the permission events. Set
    ``approver`` before `follow` (the default refuses every request).
    """

    def __init__(
        self,
        *,
        permissions: Responder,
        out: TextIO,
        notes: TextIO | None = None,
        approver: Approver | None = None,
        stream: bool = True,
        show_answer: bool = True,
        show_tools: bool = True,
        footer: bool = False,
        decided_by: str = "local",
    ) -> None:
        self.permissions = permissions
        self.out = out
        self.notes = notes or out
        self.approver = approver or refuse_all("nobody is there to approve it")
        self.stream = stream and show_answer
        self.show_answer = show_answer
        self.show_tools = show_tools
        self.footer = footer
        self.decided_by = decided_by
        self.style = Style.for_stream(self.notes)
        self._filter = ThinkingFilter()
        self._streamed = False
        self._line_open = False
        self._shared = self.notes is self.out or (_isatty(self.out) and _isatty(self.notes))
        self._calls: dict[str, str] = {}  # permission request id -> tool call id
        self._refused: set[str] = set()  # tool call ids whose permission was denied
        self.spinner = Spinner(self.notes, self.style)

    # -- output ------------------------------------------------------------------------------

    def write_answer(self, text: str) -> None:
        """Append streamed answer text."""
        if not text:
            return
        self.spinner.stop()
        self.out.write(text)
        self.out.flush()
        self._line_open = not text.endswith("\n")

    def note(self, line: str) -> None:
        """Print a line of its own to the notes stream."""
        self.spinner.stop()
        self._close_line()
        self.notes.write(line + "\n")
        self.notes.flush()

    def _close_line(self) -> None:
        if self._line_open and self._shared:
            self.out.write("\n")
            self.out.flush()
        self._line_open = False

    # -- following a run ------------------------------------------------------------------------

    async def follow(self, run: Run, subscription: Subscription) -> RunResult:
        """Show ``run`` until it ends; ``subscription`` is on its events (made as soon as the
        run was started, so nothing is missed). Returns the run's result."""
        loop = asyncio.get_running_loop()
        watcher = loop.create_task(self._watch(run, subscription))
        outcome = loop.create_task(run.result())
        try:
            await asyncio.wait({watcher, outcome}, return_when=asyncio.FIRST_COMPLETED)
            if watcher.done() and watcher.exception() is not None and not outcome.done():
                # Nobody would see the run or answer its approvals any more.
                run.cancel("the command line failed while showing the run", by="user")
            result = await outcome
            # The run's last events were published before its result: let them be shown.
            done, _ = await asyncio.wait({watcher}, timeout=DRAIN_SECONDS)
            if watcher in done:
                watcher.result()
        finally:
            for task in (watcher, outcome):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            self.spinner.stop()
            await subscription.close()
        self.end(result)
        return result

    async def _watch(self, run: Run, subscription: Subscription) -> None:
        def cancel(reason: str) -> None:
            run.cancel(reason, by="user")

        async for event in subscription:
            await self.show(event, cancel)
            if event.type in ("run_completed", "run_failed", "run_cancelled"):
                return

    async def show(self, event: Event, cancel: Canceller) -> None:
        """Show one event of the run (asking for a permission request's answer; ``cancel``
        is called when the user gives up at that prompt)."""
        data: Any = event.data
        kind = event.type
        if kind == "llm_command":
            self._streamed = False
            if not self._line_open:
                self.spinner.start(f"waiting for {data.model}")
        elif kind == "llm_delta":
            if self.stream and data.text:
                was_thinking = self._filter.thinking
                visible = self._filter.feed(data.text)
                if self._filter.thinking and not was_thinking and self.show_tools:
                    self.note(self.style.dim("(thinking...)"))
                self._streamed = self._streamed or bool(visible.strip())
                self.write_answer(visible)
        elif kind == "llm_result":
            self.write_answer(self._filter.end())
        elif kind == "tool_command" and self.show_tools:
            call = data.call
            self.note(self.style.cyan(f"-> {call.name}({format_arguments(call.arguments)})"))
        elif kind == "tool_progress" and self.show_tools:
            self._progress(data)
        elif kind == "tool_result" and self.show_tools:
            result = data.result
            outcome = result.metadata.get("outcome", "ok")
            text = _clip(result.text, 200)
            if not result.is_error:
                self.note(self.style.green(f"<- {result.name}: {text}"))
            elif outcome == "denied" and result.call_id in self._refused:
                self.note(self.style.yellow(f"<- {result.name} was not run"))
            elif outcome in ("denied", "cancelled"):
                self.note(self.style.yellow(f"<- {result.name} {outcome}: {text}"))
            else:
                self.note(self.style.red(f"<- {result.name} failed: {text}"))
        elif kind == "permission_request":
            await self._ask(event, cancel)
        elif kind == "permission_granted":
            by = f" by {data.decided_by}" if data.decided_by else ""
            reach = {"once": "for this call", "session": "for this session", "always": "always"}
            self.note(self.style.green(f"approved {data.tool} {reach[data.scope]}{by}"))
        elif kind == "permission_denied":
            call_id = self._calls.get(data.request_id)
            if call_id:
                self._refused.add(call_id)
            from promptline.security.approvals import CANCELLED

            if data.decided_by == CANCELLED:
                self.note(self.style.dim(f"the request for {data.tool} was withdrawn"))
                return
            by = f" by {data.decided_by}" if data.decided_by else ""
            why = f": {data.reason}" if data.reason else ""
            self.note(self.style.yellow(f"denied {data.tool}{by}{why}"))

    def _progress(self, data: Any) -> None:
        if data.output:
            for line in data.output.rstrip("\n").splitlines():
                self.note(self.style.dim(f"   | {line}"))
        if data.message or data.percent is not None:
            pct = f"{data.percent:.0f}% " if data.percent is not None else ""
            self.note(self.style.dim(f"   ... {pct}{data.message or ''}".rstrip()))

    async def _ask(self, event: Event, cancel: Canceller) -> None:
        from promptline.core.errors import PromptLineError

        request: Any = event.data
        if request.call_id:
            self._calls[request.request_id] = request.call_id
        question = _is_question(request.tool)
        heading = f"? {request.tool} needs your approval"
        if question:
            heading = f"? {request.reason or request.tool}"
        elif request.destructive:
            heading += " (it is destructive)"
        self.note(self.style.bold(self.style.yellow(heading)))
        if question:
            if request.arguments.get("url"):
                self.note(f"  open {request.arguments['url']}")
        elif request.tool == "submit_plan":
            for line in str(request.arguments.get("plan", "")).splitlines():
                self.note(f"  {line}")
        elif request.arguments:
            self.note(f"  {format_arguments(request.arguments, width=400)}")
        if request.reason and not question:
            self.note(self.style.dim(f"  why: {request.reason}"))
        decision = await self.approver(request, event.session_id is not None)
        if decision is None:
            cancel("cancelled at the approval prompt")
            return
        # Only a question's answer carries content (and only its responders take it).
        extra = {"content": decision.content} if question and decision.approve else {}
        try:
            await self.permissions.respond(
                request.request_id,
                approve=decision.approve,
                scope=decision.scope,
                decided_by=self.decided_by,
                reason=decision.reason,
                **extra,
            )
        except PromptLineError as exc:
            self.note(self.style.red(f"the answer was not taken: {exc.message}"))

    def end(self, result: RunResult) -> None:
        """Show how the run ended (its answer, if it was not streamed)."""
        text = result.text if self.show_answer else ""
        if text and not (self.stream and self._streamed):
            self._close_line()
            self.write_answer(text if text.endswith("\n") else text + "\n")
        self._close_line()
        if result.status == "failed" and result.error is not None:
            self.note(self.style.red(f"error: {result.error.message}"))
            hint = (result.error.details or {}).get("hint")
            if hint:
                self.note(self.style.yellow(f"hint: {hint}"))
        elif result.status in ("cancelled", "interrupted"):
            self.note(self.style.yellow(f"run {result.status}"))
        elif self.footer:
            self.note(self.style.dim(summary(result)))


def describe_mode(mode: str, *, switch: str) -> str:
    """What ``mode`` means for the tools of a run, and how to change it with ``switch``
    (``/mode`` in the chat, ``--mode`` on the command line)."""
    if mode == "plan":
        return (
            "mode: plan (only read-only tools run until you approve the agent's plan; "
            f"{switch} act runs tools at once)"
        )
    return (
        "mode: act (tools run as their permission says: at once, or once you approve; "
        f"{switch} plan has the agent propose a plan for your approval first)"
    )


class Spinner:
    """While a run waits for a model, one line on the terminal that says so and for how long
    ("⠙ waiting for openai/gpt-4o · 12 s"), redrawn in place and erased as soon as anything
    else is shown. Drawn only on a terminal; ``clock`` is injectable for tests."""

    FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
    INTERVAL = 0.1
    """Seconds between two frames."""

    def __init__(
        self, out: TextIO, style: Style, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.out = out
        self.style = style
        self.enabled = _isatty(out)
        self.clock = clock
        self.label: str | None = None
        self._since = 0.0
        self._frame = 0
        self._task: asyncio.Task[None] | None = None

    def start(self, label: str) -> None:
        """Show ``label`` with the time waited from now, until `stop`."""
        if not self.enabled:
            return
        self.label = label
        self._since = self.clock()
        self.draw()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._animate())

    def line(self) -> str:
        """The text of the current frame."""
        frame = self.FRAMES[self._frame % len(self.FRAMES)]
        return f"{frame} {self.label} · {elapsed(self.clock() - self._since)}"

    def draw(self) -> None:
        """Redraw the line in place (the next frame)."""
        if self.label is None:
            return
        self.out.write("\r" + self.style.dim(self.line()) + "\x1b[K")
        self.out.flush()
        self._frame += 1

    def stop(self) -> None:
        """Erase the line, if one is shown."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        if self.label is not None:
            self.label = None
            self.out.write("\r\x1b[K")
            self.out.flush()

    async def _animate(self) -> None:
        while True:
            await asyncio.sleep(self.INTERVAL)
            self.draw()


def elapsed(seconds: float) -> str:
    """``12 s``, ``3 min 5 s``: a wait as a person reads it."""
    whole = int(max(seconds, 0.0))
    if whole < 60:
        return f"{whole} s"
    return f"{whole // 60} min {whole % 60} s"


def summary(result: RunResult) -> str:
    """One line: tokens, cost, tool calls and time of a run."""
    tokens = result.usage.total_tokens
    cost = f"${result.cost_usd:.6f}" if result.cost_usd is not None else "$?"
    tools = f" | {result.tool_calls} tool call(s)" if result.tool_calls else ""
    return f"[{tokens:,} tokens | {cost}{tools} | {result.duration_ms / 1000:.1f} s]"


def format_arguments(arguments: dict[str, Any], *, width: int = 120) -> str:
    """``a=2, path="x.txt"``: a call's arguments on one line, values as JSON."""
    import orjson

    parts = []
    for name, value in arguments.items():
        try:
            shown = orjson.dumps(value, default=str).decode()
        except TypeError:
            shown = repr(value)
        parts.append(f"{name}={shown}")
    return _clip(", ".join(parts), width)


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def on_interrupt(callback: Callable[[], None]) -> Iterator[None]:
    """While inside, Ctrl-C (SIGINT) calls ``callback`` instead of stopping the program.

    Where the event loop cannot take over SIGINT (Windows, not the main thread), Ctrl-C
    keeps its usual meaning.
    """
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, callback)
    except (NotImplementedError, RuntimeError, ValueError):
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)
