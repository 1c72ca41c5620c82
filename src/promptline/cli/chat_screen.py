"""What the local and the remote chat share: the read loop, the slash commands and every line
they print; a subclass answers them against its backend (the services here, or a gateway)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol, TextIO

if TYPE_CHECKING:
    from promptline.cli.live import Style
    from promptline.cli.terminal import LineInput
    from promptline.core.events import Event

Mode = Literal["plan", "act"]

PROMPT = "you> "
HISTORY_FILE = "chat_history"
"""The file under the PromptLine home that keeps what was typed, for the up arrow."""

__all__ = ["HISTORY_FILE", "PROMPT", "ChatScreen", "SessionView", "line_input", "session_line"]


class SessionView(Protocol):
    """What a session listing shows of a session (a local record or the gateway's)."""

    @property
    def id(self) -> str: ...
    @property
    def message_count(self) -> int: ...
    @property
    def updated_at(self) -> datetime | None: ...
    @property
    def status(self) -> str: ...


def line_input() -> LineInput:
    """prompt_toolkit (with history) on a terminal, plain lines from stdin anywhere else."""
    from promptline.cli.terminal import PlainInput, TerminalInput, is_terminal
    from promptline.config import promptline_home

    if is_terminal():
        return TerminalInput(promptline_home() / HISTORY_FILE)
    return PlainInput(sys.stdout)


class ChatScreen:
    """Base of both REPLs; a subclass sets ``input``, ``out``, ``style``, ``mode`` and
    ``session_id``, and implements ``send``, ``model_id`` and the backend hooks below."""

    HELP: ClassVar[str]
    NO_TOOLS: ClassVar[str]
    input: LineInput
    out: TextIO
    style: Style
    model: str | None
    mode: Mode
    session_id: str | None

    # -- output -------------------------------------------------------------------------------

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def error(self, message: str, hint: str | None = None) -> None:
        self.say(self.style.red(f"error: {message}"))
        if hint:
            self.say(self.style.yellow(f"hint: {hint}"))

    def greet(self, agent: str, *notes: str | None) -> None:
        """The first lines: what the chat talks to, then any ``notes`` (dimmed)."""
        self.say(
            self.style.bold("PromptLine chat")
            + f": agent {agent}, model {self.model_id}, mode {self.mode}"
            + (f", session {self.session_id}" if self.session_id else "")
        )
        from promptline.cli.live import describe_mode

        for note in (*notes, describe_mode(self.mode, switch="/mode")):
            if note:
                self.say(self.style.dim(note))
        self.say(self.style.dim("/help lists the commands; /exit or Ctrl-D leaves."))

    # -- the loop -----------------------------------------------------------------------------

    async def loop(self) -> None:
        """Read and answer until the user leaves."""
        while True:
            text = await self.input.read(PROMPT)
            if text is None:
                self.say()
                return
            if not text.strip():
                continue
            stripped = text.strip()
            if stripped.startswith("/") and not stripped.startswith("//"):
                if not await self.command(stripped):
                    return
                continue
            await self.send(text[1:] if stripped.startswith("//") else text)

    async def command(self, line: str) -> bool:
        """Run a slash command; False when the REPL should end."""
        from promptline.core.errors import PromptLineError

        name, _, rest = line[1:].partition(" ")
        args = rest.split()
        try:
            match name.lower():
                case "exit" | "quit" | "q":
                    return False
                case "help" | "h" | "?":
                    self.say(self.HELP)
                case "model":
                    await self._model(args)
                case "mode":
                    self._mode(args)
                case "session":
                    await self._session_command(args)
                case "tools":
                    await self._tools()
                case "cost":
                    await self._cost()
                case _:
                    self.error(f"unknown command /{name}", "/help lists the commands")
        except PromptLineError as exc:
            self.error(exc.message, exc.hint)
        return True

    # -- what a subclass answers --------------------------------------------------------------

    @property
    def model_id(self) -> str:
        """The model the next message goes to, as shown to the user."""
        raise NotImplementedError

    async def send(self, text: str) -> None:
        """Answer ``text`` with a run, shown as it happens."""
        raise NotImplementedError

    async def _check_model(self, model: str) -> None:
        """Raise when no configured provider serves ``model``."""
        raise NotImplementedError

    async def _create_session(self) -> SessionView:
        raise NotImplementedError

    async def _recent_sessions(self) -> Sequence[SessionView]:
        raise NotImplementedError

    async def _find_session(self, session_id: str) -> SessionView:
        """The session (without its history); raises when it is not there or not visible."""
        raise NotImplementedError

    async def _tool_rows(self) -> list[tuple[str, str, str]]:
        """(name, permission, description) of each tool the agent may use."""
        raise NotImplementedError

    async def _llm_results(self) -> Sequence[Event]:
        """This session's ``llm_result`` events."""
        raise NotImplementedError

    # -- slash commands -----------------------------------------------------------------------

    async def _model(self, args: list[str]) -> None:
        if args:
            await self._check_model(args[0])
            self.model = args[0]
        self.say(f"model: {self.model_id}")

    def _mode(self, args: list[str]) -> None:
        from promptline.cli.live import describe_mode

        if args and args[0] not in ("plan", "act"):
            self.error(f"unknown mode {args[0]!r}", "use /mode plan or /mode act")
            return
        if args:
            self.mode = "plan" if args[0] == "plan" else "act"
        self.say(describe_mode(self.mode, switch="/mode"))

    async def _session(self) -> str:
        """The session of the next message, made on first use."""
        if self.session_id is None:
            created = await self._create_session()
            self.session_id = created.id
            self.say(self.style.dim(f"(session {created.id})"))
        return self.session_id

    async def _session_command(self, args: list[str]) -> None:
        action = args[0] if args else ""
        if action == "":
            self.say(f"session: {self.session_id or '(a new one starts with your next message)'}")
        elif action == "new":
            created = await self._create_session()
            self.session_id = created.id
            self.say(f"session: {created.id} (new)")
        elif action == "list":
            found = await self._recent_sessions()
            if not found:
                self.say("no sessions yet")
            for s in found:
                self._say_session(s.id, s.message_count, s.updated_at, s.status)
        elif action == "switch" and len(args) == 2:
            session = await self._find_session(args[1])
            self.session_id = session.id
            self.say(f"session: {session.id} ({session.message_count} messages)")
        else:
            self.error("usage: /session new | list | switch ID")

    def _say_session(
        self, session_id: str, count: int, updated: datetime | None, status: str
    ) -> None:
        self.say(session_line(session_id, count, updated, status, current=self.session_id))

    async def _tools(self) -> None:
        rows = await self._tool_rows()
        if not rows:
            self.say(self.NO_TOOLS)
            return
        for name, permission, description in rows:
            summary = " ".join(description.split())
            summary = summary if len(summary) <= 60 else summary[:57] + "..."
            self.say(f"{name:<16} {permission:<5}  {summary}")
        if self.mode == "plan":
            self.say(self.style.dim("plan mode: only read-only tools run until you approve a plan"))

    async def _cost(self) -> None:
        from promptline.core.events import LlmResultEvent
        from promptline.core.messages import Usage

        if self.session_id is None:
            self.say("nothing spent yet: this session has not started")
            return
        usage = Usage()
        cost = 0.0
        calls = unknown = 0
        for event in await self._llm_results():
            if isinstance(event, LlmResultEvent):
                calls += 1
                usage = usage + event.data.usage
                if event.data.cost_usd is None:
                    unknown += 1
                else:
                    cost += event.data.cost_usd
        note = f" (+ {unknown} call(s) of unknown price)" if unknown else ""
        self.say(
            f"session {self.session_id}: {calls} model call(s), "
            f"{usage.total_tokens:,} tokens ({usage.input_tokens:,} in, "
            f"{usage.output_tokens:,} out), ${cost:.6f}{note}"
        )


def session_line(
    session_id: str, count: int, updated: datetime | None, status: str, *, current: str | None
) -> str:
    """One row of ``/session list``; the current session is marked ``*``."""
    mark = "*" if session_id == current else " "
    when = updated.strftime("%Y-%m-%d %H:%M") if updated else ""
    return f"{mark} {session_id}  {count:>4} messages  {when}  {status}"
