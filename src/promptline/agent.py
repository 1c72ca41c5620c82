"""The Python front door: an agent in a few lines, over the same runtime, event log,
approvals and replay as the gateway.

    from promptline import Agent, tool

    @tool
    def add(a: int, b: int) -> int:
        "Add two whole numbers."
        return a + b

    agent = Agent("openai/gpt-4o-mini", instructions="Be brief.", tools=[add])
    print(agent.run_sync("What is 2+3?").text)

An `Agent` made in code runs embedded: its provider comes from the home's config.yaml when
that configures it, else from the environment variables the official SDKs read; its log is
kept in a temporary database (``persist=True``: the home's). `connect` (and
`Agent.from_config`) starts the configured installation instead: the gateway's providers,
agents, tools, MCP servers, skills and policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import shutil
import tempfile
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptline.core.agents import DEFAULT_MODE, AgentMode
from promptline.core.errors import ConfigError, ConflictError, PromptLineError

if TYPE_CHECKING:
    from promptline.app import App
    from promptline.client.portal import Portal
    from promptline.config.settings import ProviderSettings, Settings
    from promptline.core.events import Event
    from promptline.core.messages import Message
    from promptline.runtime.agent import Agent as AgentDefinition
    from promptline.runtime.records import RunRecord
    from promptline.runtime.run import RunResult
    from promptline.security.approvals import ApprovalRequest
    from promptline.sessions.models import Principal
    from promptline.tools.base import Tool

__all__ = [
    "Agent",
    "Approver",
    "Installation",
    "RunFailedError",
    "Template",
    "TextDelta",
    "connect",
]

Approver = Callable[["ApprovalRequest"], "bool | Awaitable[bool]"]
"""``on_approval(request) -> bool``: asked for each tool call the policy puts at ``ask``
(``request.tool``, ``request.arguments``, ``request.reason``); True approves it."""

LOCAL_USER = "local"
"""The user the embedded agents run as (the command line's user too)."""

PROVIDER_ENV: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "openai": (("OPENAI_API_KEY",), ("OPENAI_BASE_URL",)),
    "anthropic": (("ANTHROPIC_API_KEY",), ("ANTHROPIC_BASE_URL",)),
    "gemini": (("GEMINI_API_KEY", "GOOGLE_API_KEY"), ("GEMINI_BASE_URL",)),
    "google": (("GEMINI_API_KEY", "GOOGLE_API_KEY"), ("GEMINI_BASE_URL",)),
    "deepseek": (("DEEPSEEK_API_KEY",), ("DEEPSEEK_BASE_URL",)),
    "kimi": (("MOONSHOT_API_KEY", "KIMI_API_KEY"), ("MOONSHOT_BASE_URL",)),
    "moonshot": (("MOONSHOT_API_KEY", "KIMI_API_KEY"), ("MOONSHOT_BASE_URL",)),
    "ollama": ((), ("OLLAMA_BASE_URL", "OLLAMA_HOST")),
}
"""Where an agent made in code finds a provider that the config does not have: the API key
and endpoint variables the provider's own SDK reads (any other provider NAME: ``NAME_API_KEY``
and ``NAME_BASE_URL``)."""


class Template(str):
    """Instructions to render as a Jinja2 template (``Template("You help {{ user }}.")``):
    without it, instructions are plain text, braces and all."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the answer's text, as the model streams it."""

    text: str
    run_id: str


class RunFailedError(PromptLineError):
    """A run did not complete: ``run`` is its record (status, error, usage, the tools it
    called), ``result`` how it ended; ``details["error"]`` names the run's own error (such as
    ``provider_auth_error``, ``budget_exceeded``, ``run_limit``, ``cancelled``) and
    ``details["cause"]`` holds that error's details."""

    code = "run_failed"

    def __init__(self, result: RunResult, run: RunRecord | None) -> None:
        error = result.error
        reason = error.message if error is not None else result.status
        cause = dict(error.details) if error is not None else {}
        hint = cause.pop("hint", None)
        super().__init__(
            f"run {result.run_id} {result.status}: {reason}",
            hint=hint or f"its record: promptline runs show {result.run_id}",
            run_id=result.run_id,
            status=result.status,
            error=error.code if error is not None else result.status,
            cause=cause,
        )
        self.result = result
        self.run = run


def connect(
    home: str | os.PathLike[str] | None = None,
    *,
    config: str | os.PathLike[str] | None = None,
    profile: str | None = None,
    on_approval: Approver | None = None,
) -> Installation:
    """The configured installation: the same providers, agents, tools, MCP servers, skills and
    policy as ``promptline serve`` of ``home`` (default: ``$PROMPTLINE_HOME`` or
    ~/.promptline), started on first use (or ``async with``) and stopped by `Installation.aclose`.
    ``on_approval`` answers the tool calls the policy puts at ``ask``."""
    from promptline.config import load_settings

    environ = dict(os.environ)
    if home is not None:
        environ["PROMPTLINE_HOME"] = str(Path(home).expanduser())
    settings = load_settings(config, environ=environ, profile=profile)
    return Installation(settings, on_approval=on_approval)


class Installation:
    """A PromptLine app (stores, providers, tools, MCP servers, skills, the runtime) running in
    this process while it is in use. Get one from `connect`; `agent` gives its agents."""

    def __init__(
        self,
        settings: Settings,
        *,
        on_approval: Approver | None = None,
        definitions: Sequence[AgentDefinition] = (),
        tools: Sequence[Tool] = (),
        principal: Principal | None = None,
    ) -> None:
        self.settings = settings
        self.on_approval = on_approval
        self._definitions = list(definitions)
        self._tools = list(tools)
        self._principal = principal
        self._stack: contextlib.AsyncExitStack | None = None
        self._app: App | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._starting: asyncio.Lock | None = None
        self._answering: asyncio.Task[None] | None = None
        self._mine: set[str] = set()

    # -- lifetime -------------------------------------------------------------------------

    @property
    def app(self) -> App:
        """The running app (`promptline.app.App`); `ConflictError` before `start`."""
        if self._app is None:
            raise ConflictError(
                "the installation is not started",
                hint="use `async with promptline.connect() as pl:` or await pl.start()",
            )
        return self._app

    async def start(self) -> Installation:
        """Build the app and start the runtime (resuming what was left unfinished); a no-op
        when it runs already."""
        self._check_loop()
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._app is not None:
                return self
            from promptline.app import build_app
            from promptline.events.protocols import EventFilter

            stack = contextlib.AsyncExitStack()
            try:
                app = await stack.enter_async_context(build_app(self.settings))
                for each in self._tools:
                    if app.tools.get(each.name) is not each:
                        app.tools.register(each)
                runtime = await app.start_runtime()
                for definition in self._definitions:
                    runtime.agents[definition.name] = definition
                # Subscribed before any run starts: no approval request is missed.
                requests = app.bus.subscribe(EventFilter(types=frozenset({"permission_request"})))
                self._answering = asyncio.get_running_loop().create_task(
                    self._answer(app, requests), name="promptline-approvals"
                )
            except BaseException:
                await stack.aclose()
                raise
            self._stack, self._app = stack, app
        return self

    async def aclose(self) -> None:
        """Stop the runtime (runs in flight are left to resume on the next start) and close
        every store and connection."""
        if self._answering is not None:
            self._answering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._answering
            self._answering = None
        stack, self._stack, self._app = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> Installation:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _check_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise ConflictError(
                "this agent already runs on another event loop",
                hint="use run_sync or await run on one agent, not both; or make a new Agent",
            )

    # -- agents ---------------------------------------------------------------------------

    def agent(self, name: str | None = None) -> Agent:
        """The agent ``name`` of this installation (None: the default agent)."""
        return Agent._bound(self, name)

    def principal(self) -> Principal:
        """Who the runs of this installation run as (the local user, an operator)."""
        if self._principal is None:
            from promptline.sessions.models import Principal

            self._principal = Principal(user_id=LOCAL_USER, admin=True)
        return self._principal

    async def _session(self, key: str | None) -> str | None:
        """The session named ``key`` (made on first use), or None for a run of its own."""
        if key is None:
            return None
        from promptline.core.errors import NotFoundError

        app, who = self.app, self.principal()
        try:
            return (await app.sessions.get(key, who, history_limit=0)).id
        except NotFoundError:
            pass
        try:
            return (await app.sessions.create(who, channel="python", session_id=key)).id
        except ConflictError:
            return (await app.sessions.get(key, who, history_limit=0)).id  # made meanwhile

    async def _submit(
        self, agent: AgentDefinition | str | None, message: str | Message, session: str | None
    ) -> str:
        await self.start()
        self._check_loop()
        session_id = await self._session(session)
        accepted = await self.app.runtime.submit(
            message, session_id=session_id, principal=self.principal(), agent=agent
        )
        self._mine.add(accepted.run_id)
        return accepted.answer_run_id

    async def _outcome(self, run_id: str) -> RunResult:
        from promptline.runtime.records import load_run

        result = await self.app.runtime.outcome(run_id)
        self._mine.discard(run_id)
        if result.status != "completed":
            record = None
            with contextlib.suppress(PromptLineError):
                record = await load_run(self.app.events, run_id)
            raise RunFailedError(result, record)
        return result

    async def _answer(self, app: App, requests: Any) -> None:
        """Answer the approval requests of this installation's runs: with ``on_approval``,
        or, without one, refuse them at once with a reason that says what to do (a call
        nobody can see must not wait)."""
        async for event in requests:
            request_id = event.data.request_id
            with contextlib.suppress(PromptLineError):
                record = await app.permissions.broker.get(request_id)
                if record.outcome is not None:
                    continue
                approved, reason = await self._decide(record.request)
                await app.permissions.respond(
                    request_id,
                    approve=approved,
                    decided_by=LOCAL_USER if self.on_approval else "no approver",
                    reason=reason,
                )

    async def _decide(self, request: ApprovalRequest) -> tuple[bool, str | None]:
        if self.on_approval is None:
            return False, (
                f"{request.tool} needs an approval and nothing here can give one: pass "
                f"on_approval= to Agent(...) or connect(...), or allow the tool in the policy "
                f"(tools: {{{request.tool}: allow}})"
            )
        answer = self.on_approval(request)
        if inspect.isawaitable(answer):
            answer = await answer
        return bool(answer), None if answer else "refused by on_approval"


class Agent:
    """An agent: a model, instructions and tools, run in a ReAct loop whose every step is in
    PromptLine's event log.

    ``Agent("openai/gpt-4o-mini", instructions="Be brief.", tools=[add])`` runs embedded (see
    the module docs); `Agent.from_config` and ``connect().agent(name)`` run a configured
    agent. ``await agent.run(message)`` or ``agent.run_sync(message)`` returns the outcome
    (``.text``, ``.usage``, ``.cost_usd``) or raises `RunFailedError` with the run's record;
    ``agent.stream(message)`` yields `TextDelta` pieces of the answer and the run's events.
    ``session="..."`` names a conversation to go on with (made on first use).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        instructions: str | None = None,
        tools: Sequence[Tool | Callable[..., Any]] = (),
        name: str = "assistant",
        mode: AgentMode = DEFAULT_MODE,
        temperature: float | None = None,
        max_tokens: int | None = None,
        on_approval: Approver | None = None,
        persist: bool = False,
        home: str | os.PathLike[str] | None = None,
    ) -> None:
        from promptline.tools.base import Tool
        from promptline.tools.function import tool as make_tool

        self.name = name
        self.model = model
        self.instructions = instructions
        self.tools: list[Tool] = [t if isinstance(t, Tool) else make_tool(t) for t in tools]
        self.mode: AgentMode = mode
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.on_approval = on_approval
        self.persist = persist
        self.home = None if home is None else Path(home).expanduser()
        self._installation: Installation | None = None
        self._owns_installation = True
        self._configured: str | None = None  # a configured agent's name
        self._sync_state = _SyncState()

    @classmethod
    def from_config(
        cls,
        name: str | None = None,
        *,
        home: str | os.PathLike[str] | None = None,
        on_approval: Approver | None = None,
    ) -> Agent:
        """The agent ``name`` (None: the default agent) of the configured installation,
        which starts on its first run and stops with `aclose` (or `close`)."""
        agent = cls(name=name or "assistant", on_approval=on_approval, home=home)
        agent._configured = name or "assistant"
        agent._installation = connect(home, on_approval=on_approval)
        return agent

    @classmethod
    def _bound(cls, installation: Installation, name: str | None) -> Agent:
        agent = cls(name=name or "assistant", on_approval=installation.on_approval)
        agent._configured = name or "assistant"
        agent._installation = installation
        agent._owns_installation = False
        return agent

    # -- running --------------------------------------------------------------------------

    async def run(self, message: str | Message, *, session: str | None = None) -> RunResult:
        """Run the agent on ``message`` and return how it ended (``.text`` the answer);
        `RunFailedError` when it did not complete."""
        installation = self._ensure()
        run_id = await installation._submit(self._target(), message, session)
        return await installation._outcome(run_id)

    def run_sync(self, message: str | Message, *, session: str | None = None) -> RunResult:
        """`run`, for code that is not async (on an event loop of the agent's own)."""
        return self._sync().call(self.run(message, session=session))

    async def stream(
        self, message: str | Message, *, session: str | None = None
    ) -> AsyncIterator[TextDelta | Event]:
        """Run the agent on ``message``; yield the answer's text as it streams (`TextDelta`)
        and the run's events (tool calls and results, approvals, model calls...) in the order
        they are recorded, ending with the run's end (`RunFailedError` after it when the run
        did not complete)."""
        from promptline.runtime.answer import RunAnswer

        installation = self._ensure()
        run_id = await installation._submit(self._target(), message, session)
        # No await since the message was taken: the run has not recorded anything yet.
        answer = RunAnswer(installation.app.bus, run_id, deltas=True, everything=True)
        try:
            async for item in answer.steps():
                yield TextDelta(item, run_id) if isinstance(item, str) else item
        finally:
            await answer.close()
        await installation._outcome(run_id)

    def stream_sync(
        self, message: str | Message, *, session: str | None = None
    ) -> Iterator[TextDelta | Event]:
        """`stream`, for code that is not async."""
        return self._sync().iterate(self.stream(message, session=session))

    # -- lifetime -------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop what this agent started (its embedded app; a configured installation it
        started itself). Runs in flight are left to resume on the next start."""
        if self._installation is not None and self._owns_installation:
            await self._installation.aclose()

    def close(self) -> None:
        """`aclose`, for code that is not async (closes the agent's own event loop too)."""
        self._sync_state.close()

    async def __aenter__(self) -> Agent:
        await self._ensure().start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------

    def _sync(self) -> Portal:
        state = self._sync_state
        if state.portal is None:
            from promptline.client.portal import Portal

            state.portal = Portal()
            state.installation = self._installation if self._owns_installation else None
            # An agent nobody closed is closed when it goes (or when the program ends).
            weakref.finalize(self, state.close)
        return state.portal

    def _ensure(self) -> Installation:
        if self._installation is None:
            self._installation = _embedded(self)
            self._sync_state.installation = self._installation
        return self._installation

    def _target(self) -> AgentDefinition | str:
        if self._configured is not None:
            return self._configured
        return self._definition()

    def _definition(self) -> AgentDefinition:
        from promptline.runtime.agent import Agent as AgentDefinition

        return AgentDefinition(
            name=self.name,
            model=self.model,
            system_prompt=_as_template(self.instructions),
            tools=tuple(t.name for t in self.tools),
            mode=self.mode,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
        )


class _SyncState:
    """The event loop of an agent's blocking calls, and the installation it runs there; kept
    apart from the agent so that closing it at the end needs no reference to the agent."""

    def __init__(self) -> None:
        self.portal: Portal | None = None
        self.installation: Installation | None = None

    def close(self) -> None:
        portal, self.portal = self.portal, None
        if portal is None:
            return
        installation, self.installation = self.installation, None
        if installation is not None:
            with contextlib.suppress(Exception):
                portal.call(installation.aclose())
        portal.close()


def _as_template(instructions: str | None) -> str | None:
    """The system prompt the runtime renders (a Jinja2 template) for ``instructions``:
    plain text is kept verbatim inside a raw block, a `Template` is rendered."""
    if instructions is None or isinstance(instructions, Template):
        return instructions
    closing = "{% endraw %}"
    parts = instructions.split(closing)
    return "{% raw %}" + ("{% endraw %}{{ '" + closing + "' }}{% raw %}").join(parts) + closing


def _embedded(agent: Agent) -> Installation:
    """The app an agent made in code runs on: the config's settings with the agent's
    provider made available, its tools allowed (a destructive one asked for), nothing else
    started (no MCP servers, skills or tool packages), and its log in a temporary database
    unless it persists."""
    from promptline.config import load_settings

    environ = dict(os.environ)
    if agent.home is not None:
        environ["PROMPTLINE_HOME"] = str(agent.home)
    base = load_settings(environ=environ)
    model = agent.model or base.models.default
    models = base.models
    if model:
        provider, _, name = model.partition("/")
        found = models.providers.get(provider)
        if provider != "scripted" and (found is None or name not in found.models):
            if found is None:
                found = _provider_from_env(provider, environ)
            # The router serves the models a provider lists: list this one too.
            found = found.model_copy(update={"models": [*found.models, name]})
            models = models.model_copy(update={"providers": {**models.providers, provider: found}})
    from promptline.config.settings import ToolRuleSettings

    rules = dict(base.tools)
    for each in agent.tools:
        rules.setdefault(each.name, ToolRuleSettings(mode="ask" if each.destructive else "allow"))
    updates: dict[str, Any] = {
        "models": models,
        "tools": rules,
        "mcp_servers": {},
        "skills": base.skills.model_copy(update={"enabled": False}),
    }
    cleanup: str | None = None
    if not agent.persist:
        cleanup = tempfile.mkdtemp(prefix="promptline-agent-")
        updates["state"] = base.state.model_copy(
            update={
                "backend": "sqlite",
                "database_url": None,
                "sqlite_path": Path(cleanup) / "log.db",
            }
        )
    settings = base.model_copy(update=updates)
    installation = Installation(settings, on_approval=agent.on_approval, tools=agent.tools)
    if cleanup is not None:
        weakref.finalize(installation, shutil.rmtree, cleanup, True)
    return installation


def _provider_from_env(name: str, environ: Mapping[str, str]) -> ProviderSettings:
    """Provider ``name`` as its own SDK would find it in the environment; `ConfigError`
    saying what to set when nothing there names it."""
    from promptline.config.settings import ProviderSettings

    keys, urls = PROVIDER_ENV.get(
        name, ((f"{name.upper()}_API_KEY",), (f"{name.upper()}_BASE_URL",))
    )
    api_key = next((environ[k] for k in keys if environ.get(k)), None)
    base_url = next((environ[k] for k in urls if environ.get(k)), None)
    if name == "ollama":
        base_url = (base_url or "http://localhost:11434").rstrip("/")
        if not base_url.startswith(("http://", "https://")):
            base_url = f"http://{base_url}"
    elif api_key is None and base_url is None:
        wanted = " or ".join(keys)
        raise ConfigError(
            f"no provider {name!r}: the config does not have it and {wanted} is not set",
            hint=f"export {keys[0]}=..., or add models.providers.{name} to the config "
            "(promptline init)",
            provider=name,
        )
    return ProviderSettings(api_key=api_key, base_url=base_url)
