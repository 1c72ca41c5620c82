"""Body of ``promptline chat``: a conversation with an agent in the terminal, one run per
message, with slash commands to change the model, the mode and the session."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Literal, TextIO

from promptline.cli.chat_screen import ChatScreen
from promptline.cli.runtime import CliOptions, run, services

if TYPE_CHECKING:
    from promptline.app import App
    from promptline.cli.terminal import LineInput
    from promptline.runtime.agent import Agent
    from promptline.runtime.run import Run

Mode = Literal["plan", "act"]

PROMPT = "you> "
HISTORY_FILE = "chat_history"
"""The file under the PromptLine home that keeps what was typed, for the up arrow."""

HELP = """\
/help                this list
/model [ID]          show the model, or switch to ID (provider/model, see `promptline models list`)
/mode plan|act       plan: tools that change things wait until you approve a plan; act: they run
/session new         start a new session
/session list        the recent sessions of the command line
/session switch ID   continue session ID
/tools               the tools the agent may use, and their permission (allow, ask, deny)
/cost                tokens and dollars this session has used, from the event log
/exit                leave (Ctrl-D does too)

Enter sends. Esc then Enter, or a line ending in a backslash, starts a new line.
Ctrl-C stops the answer being written (at the prompt it clears the line).
Approvals: y (yes, once), n (no), a (always, for this tool), s (for the rest of the session)."""


def chat(
    options: CliOptions,
    *,
    agent: str | None,
    model: str | None,
    session: str | None,
    mode: Mode | None,
) -> None:
    """Open the REPL; returns when the user leaves."""
    from promptline.cli.live import on_interrupt
    from promptline.cli.terminal import PlainInput, TerminalInput, is_terminal
    from promptline.config import promptline_home

    async def main() -> None:
        async with services(options) as app:
            await app.start_runtime()
            line_input: LineInput
            if is_terminal():
                line_input = TerminalInput(promptline_home() / HISTORY_FILE)
            else:
                line_input = PlainInput(sys.stdout)
            repl = Chat(app, line_input, sys.stdout)
            await repl.setup(agent=agent, model=model, session=session, mode=mode)
            with on_interrupt(repl.interrupt):
                await repl.loop()

    run(main)


class Chat(ChatScreen):
    """The REPL's state (agent, model, mode, session) and what each input does."""

    def __init__(self, app: App, line_input: LineInput, out: TextIO) -> None:
        from promptline.cli.live import Style

        self.app = app
        self.input = line_input
        self.out = out
        self.style = Style.for_stream(out)
        self.agent: Agent = app.runtime.agent()
        self.model: str | None = None
        self.mode: Mode = self.agent.mode
        self.session_id: str | None = None
        self._current: Run | None = None

    # -- output -------------------------------------------------------------------------------

    # -- lifecycle ----------------------------------------------------------------------------

    async def setup(
        self, *, agent: str | None, model: str | None, session: str | None, mode: Mode | None
    ) -> None:
        """Apply the command-line choices; a bad one raises (and the command fails)."""
        from promptline.cli.launch import local_principal, pick_model

        self.agent = self.app.runtime.agent(agent)
        self.mode = mode or self.agent.mode
        if model:
            self._check_model(model)
        self.model, notice = pick_model(self.app.settings, self.agent, model)
        if session:
            await self.app.sessions.get(session, local_principal())
            self.session_id = session
        self.say(
            self.style.bold("PromptLine chat")
            + f": agent {self.agent.name}, model {self.model_id}, mode {self.mode}"
            + (f", session {self.session_id}" if self.session_id else "")
        )
        if notice:
            self.say(self.style.dim(notice))
        self.say(self.style.dim("/help lists the commands; /exit or Ctrl-D leaves."))

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

    def interrupt(self) -> None:
        """Ctrl-C outside the prompt: cancel the run in flight, if any."""
        current = self._current
        if current is not None and not current.done:
            current.cancel("cancelled with Ctrl-C", by="user")

    # -- a message ----------------------------------------------------------------------------

    async def send(self, text: str) -> None:
        """Answer ``text`` with a run of the agent, shown as it happens."""
        from promptline.cli.launch import LOCAL_USER, start_watched
        from promptline.cli.live import RunView, ask_with
        from promptline.core.errors import PromptLineError

        view = RunView(
            permissions=self.app.permissions, out=self.out, footer=True, decided_by=LOCAL_USER
        )
        view.approver = ask_with(self.input.ask, view.note)
        try:
            session_id = await self._session()
            started, feed = await start_watched(
                self.app,
                text,
                agent=self.agent,
                session_id=session_id,
                mode=self.mode,
                model=self.model,
            )
        except PromptLineError as exc:
            self.error(exc.message, exc.hint)
            return
        self._current = started
        try:
            await view.follow(started, feed)
        finally:
            self._current = None

    async def _session(self) -> str:
        if self.session_id is None:
            from promptline.cli.launch import local_principal

            created = await self.app.sessions.create(local_principal(), channel="cli")
            self.session_id = created.id
            self.say(self.style.dim(f"(session {created.id})"))
        return self.session_id

    # -- slash commands -----------------------------------------------------------------------

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
                    self.say(HELP)
                case "model":
                    self._model(args)
                case "mode":
                    self._mode(args)
                case "session":
                    await self._session_command(args)
                case "tools":
                    self._tools()
                case "cost":
                    await self._cost()
                case _:
                    self.error(f"unknown command /{name}", "/help lists the commands")
        except PromptLineError as exc:
            self.error(exc.message, exc.hint)
        return True

    @property
    def model_id(self) -> str:
        from promptline.cli.launch import effective_model

        return effective_model(self.app.settings, self.agent, self.model)

    def _check_model(self, model: str) -> None:
        if not model.startswith("tag:"):
            self.app.registry.resolve(model)

    def _model(self, args: list[str]) -> None:
        if not args:
            self.say(f"model: {self.model_id}")
            return
        self._check_model(args[0])
        self.model = args[0]
        self.say(f"model: {self.model_id}")

    async def _session_command(self, args: list[str]) -> None:
        from promptline.cli.launch import LOCAL_USER, local_principal

        action = args[0] if args else ""
        if action == "":
            self.say(f"session: {self.session_id or '(a new one starts with your next message)'}")
        elif action == "new":
            created = await self.app.sessions.create(local_principal(), channel="cli")
            self.session_id = created.id
            self.say(f"session: {created.id} (new)")
        elif action == "list":
            found = await self.app.sessions.list(
                local_principal(), user_id=LOCAL_USER, channel="cli", limit=20
            )
            if not found:
                self.say("no sessions yet")
            for s in found:
                self._say_session(s.id, s.message_count, s.updated_at, s.status)
        elif action == "switch" and len(args) == 2:
            found_session = await self.app.sessions.get(args[1], local_principal())
            self.session_id = found_session.id
            self.say(f"session: {found_session.id} ({found_session.message_count} messages)")
        else:
            self.error("usage: /session new | list | switch ID")

    def _tools(self) -> None:
        from promptline.cli.launch import LOCAL_USER

        tools = self.app.tools.select(self.agent.tools)
        if not tools:
            self.say("this agent has no tools")
            return
        policy = self.app.permissions.policy
        for tool in tools:
            decision = policy.decide(
                tool.name,
                read_only=tool.read_only,
                agent=self.agent.name,
                user=LOCAL_USER,
                session_id=self.session_id,
            )
            summary = " ".join(tool.description.split())
            summary = summary if len(summary) <= 60 else summary[:57] + "..."
            self.say(f"{tool.name:<16} {decision.mode:<5}  {summary}")
        if self.mode == "plan":
            self.say(self.style.dim("plan mode: only read-only tools run until you approve a plan"))

    async def _cost(self) -> None:
        from promptline.core.events import LlmResultEvent
        from promptline.core.messages import Usage
        from promptline.events.protocols import EventFilter

        if self.session_id is None:
            self.say("nothing spent yet: this session has not started")
            return
        results = await self.app.events.read_all(
            EventFilter(types=frozenset({"llm_result"}), session_id=self.session_id)
        )
        usage = Usage()
        cost = 0.0
        unknown = 0
        for event in results:
            if isinstance(event, LlmResultEvent):
                usage = usage + event.data.usage
                if event.data.cost_usd is None:
                    unknown += 1
                else:
                    cost += event.data.cost_usd
        note = f" (+ {unknown} call(s) of unknown price)" if unknown else ""
        self.say(
            f"session {self.session_id}: {len(results)} model call(s), "
            f"{usage.total_tokens:,} tokens ({usage.input_tokens:,} in, "
            f"{usage.output_tokens:,} out), ${cost:.6f}{note}"
        )
