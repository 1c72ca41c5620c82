"""Body of ``promptline chat``: a conversation with an agent in the terminal, one run per
message, with slash commands to change the model, the mode and the session."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from promptline.cli.chat_screen import ChatScreen, Mode, line_input
from promptline.cli.runtime import CliOptions, run, services

if TYPE_CHECKING:
    from promptline.app import App
    from promptline.cli.terminal import LineInput
    from promptline.core.events import Event
    from promptline.runtime.agent import Agent
    from promptline.runtime.run import Run
    from promptline.sessions.models import Session


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

    async def main() -> None:
        async with services(options) as app:
            app.settings.channels.require_on("cli")
            await app.start_runtime()
            repl = Chat(app, line_input(), sys.stdout)
            await repl.setup(agent=agent, model=model, session=session, mode=mode)
            with on_interrupt(repl.interrupt):
                await repl.loop()

    run(main)


class Chat(ChatScreen):
    """The REPL's state (agent, model, mode, session) and what each input does."""

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
    NO_TOOLS = "this agent has no tools"

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

    async def setup(
        self, *, agent: str | None, model: str | None, session: str | None, mode: Mode | None
    ) -> None:
        """Apply the command-line choices; a bad one raises (and the command fails)."""
        from promptline.cli.launch import pick_model

        self.agent = self.app.runtime.agent(agent)
        self.mode = mode or self.agent.mode
        if model:
            await self._check_model(model)
        self.model, notice = pick_model(self.app.settings, self.agent, model)
        if session:
            self.session_id = (await self._find_session(session)).id
        self.greet(self.agent.name, notice)

    def interrupt(self) -> None:
        """Ctrl-C outside the prompt: cancel the run in flight, if any."""
        current = self._current
        if current is not None and not current.done:
            current.cancel("cancelled with Ctrl-C", by="user")

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

    # -- the backend of the slash commands: this process's services ---------------------------

    @property
    def model_id(self) -> str:
        from promptline.cli.launch import effective_model

        return effective_model(self.app.settings, self.agent, self.model)

    async def _check_model(self, model: str) -> None:
        if not model.startswith("tag:"):
            self.app.registry.resolve(model)

    async def _create_session(self) -> Session:
        from promptline.cli.launch import local_principal

        return await self.app.sessions.create(local_principal(), channel="cli")

    async def _recent_sessions(self) -> list[Session]:
        from promptline.cli.launch import LOCAL_USER, local_principal

        return await self.app.sessions.list(
            local_principal(), user_id=LOCAL_USER, channel="cli", limit=20
        )

    async def _find_session(self, session_id: str) -> Session:
        from promptline.cli.launch import local_principal

        return await self.app.sessions.get(session_id, local_principal(), history_limit=0)

    async def _tool_rows(self) -> list[tuple[str, str, str]]:
        from promptline.cli.launch import LOCAL_USER

        policy = self.app.permissions.policy
        return [
            (
                tool.name,
                policy.decide(
                    tool.name,
                    read_only=tool.read_only,
                    agent=self.agent.name,
                    user=LOCAL_USER,
                    session_id=self.session_id,
                ).mode,
                tool.description,
            )
            for tool in self.app.tools.select(self.agent.tools)
        ]

    async def _llm_results(self) -> Sequence[Event]:
        from promptline.events.protocols import EventFilter

        return await self.app.events.read_all(
            EventFilter(types=frozenset({"llm_result"}), session_id=self.session_id)
        )
