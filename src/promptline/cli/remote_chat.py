"""``promptline chat --remote URL``: the chat REPL against a running gateway, through the
client library. It looks like the local chat: the answer streams in (over the WebSocket),
tool calls show, approvals are asked inline and answered through the API, Ctrl-C cancels the
run (``run.cancel``)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, TextIO

from promptline.cli.chat_screen import ChatScreen, Mode, line_input
from promptline.cli.runtime import run

if TYPE_CHECKING:
    from promptline.cli.live import GrantScope
    from promptline.cli.terminal import LineInput
    from promptline.client import AsyncPromptLine, RunStream
    from promptline.client.models import Session
    from promptline.core.events import Event
    from promptline.runtime.run import RunResult

DEFAULT_AGENT = "assistant"
"""The agent a gateway runs when a message names none."""


def remote_chat(
    url: str,
    api_key: str | None,
    *,
    agent: str | None,
    model: str | None,
    session: str | None,
    mode: Mode | None,
) -> None:
    """Open the REPL on the gateway at ``url``; returns when the user leaves."""
    from promptline.cli.live import on_interrupt
    from promptline.client import AsyncPromptLine

    async def main() -> None:
        async with AsyncPromptLine(url, api_key) as client:
            repl = RemoteChat(client, line_input(), sys.stdout)
            await repl.setup(agent=agent, model=model, session=session, mode=mode)
            with on_interrupt(repl.interrupt):
                await repl.loop()

    run(main)


class GatewayApprovals:
    """Answers permission requests through the gateway's approvals API (the gateway records
    the caller's user as who decided)."""

    def __init__(self, client: AsyncPromptLine) -> None:
        self.client = client

    async def respond(
        self,
        request_id: str,
        *,
        approve: bool,
        scope: GrantScope = "once",
        decided_by: str | None = None,
        reason: str | None = None,
        content: dict[str, Any] | None = None,
    ) -> object:
        return await self.client.approvals.respond(
            request_id, approve=approve, scope=scope, reason=reason, content=content
        )


class RemoteChat(ChatScreen):
    """The REPL's state (agent, model, mode, session) and what each input does, against a
    gateway."""

    HELP = """\
/help                this list
/model [ID]          show the model, or switch to ID (provider/model, one the gateway serves)
/mode plan|act       plan: tools that change things wait until you approve a plan; act: they run
/session new         start a new session
/session list        your recent sessions on the gateway
/session switch ID   continue session ID
/tools               the tools of the gateway, and their permission for you (allow, ask, deny)
/cost                tokens and dollars this session has used, from the gateway's event log
/exit                leave (Ctrl-D does too)

Enter sends. Esc then Enter, or a line ending in a backslash, starts a new line.
Ctrl-C cancels the run in flight on the gateway (at the prompt it clears the line).
Approvals: y (yes, once), n (no), a (always, for this tool), s (for the rest of the session)."""
    NO_TOOLS = "the gateway has no tools"

    def __init__(self, client: AsyncPromptLine, line_input: LineInput, out: TextIO) -> None:
        from promptline.cli.live import Style

        self.client = client
        self.input = line_input
        self.out = out
        self.style = Style.for_stream(out)
        self.agent = DEFAULT_AGENT
        self.agent_model: str | None = None
        self.model: str | None = None
        self.mode: Mode = "act"
        self.session_id: str | None = None
        self._current: RunStream | None = None
        self._tasks: set[asyncio.Task[object]] = set()

    async def setup(
        self, *, agent: str | None, model: str | None, session: str | None, mode: Mode | None
    ) -> None:
        """Apply the command-line choices; a bad one (or an unreachable gateway, a refused
        key) raises, and the command fails."""
        found = await self.client.agents.get(agent or DEFAULT_AGENT)
        self.agent = found.name
        self.agent_model = found.model
        self.mode = mode or ("plan" if found.mode == "plan" else "act")
        if model:
            await self._check_model(model)
        self.model = model
        if session:
            self.session_id = (await self._find_session(session)).id
        await self.client.websocket()  # fail now, not at the first message
        self.greet(self.agent, f"(remote: {self.client.base_url})")

    async def loop(self) -> None:
        """Read and answer until the user leaves; then wait for the cancels still in flight."""
        try:
            await super().loop()
        finally:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    def interrupt(self) -> None:
        """Ctrl-C outside the prompt: cancel the run in flight on the gateway, if any."""
        current = self._current
        if current is not None and current.run_id is not None and current.final is None:
            self._cancel(current.run_id)

    def _cancel(self, run_id: str) -> None:
        task: asyncio.Task[object] = asyncio.get_running_loop().create_task(
            self._cancel_run(run_id)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _cancel_run(self, run_id: str) -> object:
        from promptline.core.errors import PromptLineError

        try:
            return await self.client.runs.cancel(run_id)
        except PromptLineError as exc:
            self.error(f"the run was not cancelled: {exc.message}", exc.hint)
            return None

    async def send(self, text: str) -> None:
        """Answer ``text`` with a run on the gateway, shown as it happens."""
        from promptline.cli.live import RunView, ask_with
        from promptline.core.errors import PromptLineError

        view = RunView(permissions=GatewayApprovals(self.client), out=self.out, footer=True)
        view.approver = ask_with(self.input.ask, view.note)
        try:
            session_id = await self._session()
            connection = await self.client.websocket()
            stream = connection.stream(
                session_id, text, agent=self.agent, model=self.model, mode=self.mode
            )
            await stream.start()
        except PromptLineError as exc:
            self.error(exc.message, exc.hint)
            return
        run_id = stream.run_id or ""

        def cancel(reason: str) -> None:
            self._cancel(run_id)

        self._current = stream
        tool_calls = 0
        try:
            async for event in stream:
                if event.type == "tool_command":
                    tool_calls += 1
                await view.show(event, cancel)
        except PromptLineError as exc:
            view.note(self.style.red(f"error: {exc.message}"))
            if exc.hint:
                view.note(self.style.yellow(f"hint: {exc.hint}"))
            return
        finally:
            self._current = None
            await stream.aclose()
        if stream.final is not None:
            view.end(result_of(stream.final, run_id, self.agent, session_id, tool_calls))

    # -- the backend of the slash commands: the gateway's API ---------------------------------

    @property
    def model_id(self) -> str:
        return self.model or self.agent_model or "the gateway's default"

    async def _check_model(self, model: str) -> None:
        """Refuse a model no configured provider of the gateway serves."""
        from promptline.core.errors import ModelNotFoundError

        if model.startswith("tag:"):
            return
        configured = [m.id for m in await self.client.models.catalogue() if m.configured]
        provider = model.partition("/")[0]
        if model in configured or any(m.partition("/")[0] == provider for m in configured):
            return
        raise ModelNotFoundError(
            f"no configured provider serves model {model!r}",
            hint="configured on the gateway: " + (", ".join(configured) or "none"),
        )

    async def _create_session(self) -> Session:
        return await self.client.sessions.create(channel="cli")

    async def _recent_sessions(self) -> list[Session]:
        return (await self.client.sessions.list(limit=20)).items

    async def _find_session(self, session_id: str) -> Session:
        return await self.client.sessions.get(session_id, history_limit=0)

    async def _tool_rows(self) -> list[tuple[str, str, str]]:
        return [
            (tool.name, tool.permission or "?", tool.description)
            for tool in await self.client.tools.list()
        ]

    async def _llm_results(self) -> Sequence[Event]:
        events: list[Event] = []
        cursor: str | None = None
        while True:
            page = await self.client.events.list(
                session_id=self.session_id, types=["llm_result"], limit=1000, cursor=cursor
            )
            events.extend(page.items)
            if not page.next_cursor:
                return events
            cursor = page.next_cursor


def result_of(final: Event, run_id: str, agent: str, session_id: str, tool_calls: int) -> RunResult:
    """How a run ended, from the event that ended it (as the local view shows it)."""
    from promptline.core.events import RunCancelledEvent, RunCompletedEvent, RunFailedEvent
    from promptline.runtime.run import RunResult

    if isinstance(final, RunCompletedEvent):
        data = final.data
        return RunResult(
            run_id,
            agent,
            session_id,
            "completed",
            tool_calls=tool_calls,
            output=data.output,
            usage=data.usage,
            cost_usd=data.cost_usd,
            iterations=data.iterations,
            duration_ms=data.duration_ms or 0.0,
        )
    if isinstance(final, RunFailedEvent):
        return RunResult(
            run_id,
            agent,
            session_id,
            "failed",
            tool_calls=tool_calls,
            error=final.data.error,
            usage=final.data.usage,
            iterations=final.data.iterations,
            duration_ms=final.data.duration_ms or 0.0,
        )
    by = final.data.cancelled_by if isinstance(final, RunCancelledEvent) else None
    status: Literal["cancelled", "interrupted"] = (
        "interrupted" if by in ("shutdown", "recovery") else "cancelled"
    )
    return RunResult(run_id, agent, session_id, status, tool_calls=tool_calls)
