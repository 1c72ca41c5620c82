"""The one place that builds PromptLine's object graph from `Settings`.

Everything else receives its collaborators as arguments; nothing is a module-level singleton.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from promptline.core.clock import Clock, SystemClock

_log = logging.getLogger("promptline.app")

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from promptline.config.settings import Settings
    from promptline.events.protocols import EventBus, EventStore
    from promptline.models.capabilities import ModelCapabilities
    from promptline.models.instrumented import InstrumentedModel
    from promptline.models.registry import ProviderRegistry
    from promptline.models.router import ModelRouter
    from promptline.runtime.runtime import Runtime
    from promptline.security.audit import Auditor
    from promptline.security.gate import PermissionManager
    from promptline.security.quotas import Quotas
    from promptline.security.sandbox import Sandboxes
    from promptline.sessions.manager import SessionManager
    from promptline.sessions.models import Principal
    from promptline.state.protocols import StateStore
    from promptline.storage.lease import InstanceLease
    from promptline.tools.executor import CallScope
    from promptline.tools.mcp import McpManager
    from promptline.tools.plugins import PluginManager
    from promptline.tools.registry import ToolRegistry
    from promptline.tools.skills import SkillLibrary


@dataclass
class App:
    """The services of one PromptLine process."""

    settings: Settings
    engine: AsyncEngine
    events: EventStore
    bus: EventBus
    state: StateStore
    sessions: SessionManager
    registry: ProviderRegistry
    clock: Clock
    _llm: InstrumentedModel | None = field(default=None, repr=False)
    _router: ModelRouter | None = field(default=None, repr=False)
    _tools: ToolRegistry | None = field(default=None, repr=False)
    _permissions: PermissionManager | None = field(default=None, repr=False)
    _audit: Auditor | None = field(default=None, repr=False)
    _quotas: Quotas | None = field(default=None, repr=False)
    _runtime: Runtime | None = field(default=None, repr=False)
    _mcp: McpManager | None = field(default=None, repr=False)
    _plugins: PluginManager | None = field(default=None, repr=False)
    _skills: SkillLibrary | None = field(default=None, repr=False)
    _lease: InstanceLease | None = field(default=None, repr=False)
    _sweep: asyncio.Task[None] | None = field(default=None, repr=False)
    _sandboxes: Sandboxes | None = field(default=None, repr=False)

    @property
    def router(self) -> ModelRouter:
        """The model router (rules, failover, balancing), built on first use, so commands
        that never call a model do not depend on the models configuration."""
        if self._router is None:
            from promptline.models.routing_setup import build_router

            self._router = build_router(self.settings, self.registry, clock=self.clock)
        return self._router

    @property
    def llm(self) -> InstrumentedModel:
        """Model calls through the router, each recorded in the event log as llm_command /
        llm_delta / llm_result."""
        if self._llm is None:
            from promptline.models.instrumented import InstrumentedModel

            self._llm = InstrumentedModel(self.router, self.bus)
        return self._llm

    @property
    def tools(self) -> ToolRegistry:
        """Every tool agents may use: the built-in ones, plus what is registered at run time."""
        if self._tools is None:
            from promptline.tools.builtin import builtin_tools
            from promptline.tools.registry import ToolRegistry

            web_allow = self.settings.security.egress_allow
            self._tools = ToolRegistry(builtin_tools(web_allow=web_allow))
            if self.settings.skills.enabled:
                from promptline.tools.skills import register_skill_tools

                # The tools look the library up when called, so it is built on first use.
                register_skill_tools(self._tools, lambda: self.skills)
        return self._tools

    @property
    def skills(self) -> SkillLibrary:
        """The skills found in the workspace's ``skills/``, ``<home>/skills`` and
        ``skills.paths`` (read on first use; `start_runtime` loads and watches them)."""
        if self._skills is None:
            from promptline.tools.skills import SkillLibrary

            self._skills = SkillLibrary.from_settings(self.settings, tools=self.tools)
        return self._skills

    @property
    def plugins(self) -> PluginManager:
        """The tool packages (entry points, ``plugins.modules``, ``plugins.dir``), registered
        into `tools`; `start_runtime` loads them and follows their switches."""
        if self._plugins is None:
            from promptline.tools.plugins import PluginManager

            self._plugins = PluginManager.from_settings(self.settings, self.tools)
        return self._plugins

    @property
    def mcp(self) -> McpManager:
        """The MCP servers of ``mcp_servers``, their tools registered into `tools` as
        ``mcp.<server>.<tool>``, those over HTTP reached only where ``security.egress_allow``
        allows; `start_runtime` connects them."""
        if self._mcp is None:
            from promptline.config.home import promptline_home
            from promptline.security.egress import EgressPolicy
            from promptline.tools.mcp import McpManager

            home = promptline_home()
            self._mcp = McpManager(
                self.settings.mcp_servers,
                self.tools,
                cache_dir=home / "cache" / "mcp",
                log_dir=home / "logs" / "mcp",
                egress=EgressPolicy(self.settings.security.egress_allow),
            )
        return self._mcp

    @property
    def audit(self) -> Auditor:
        """The audit trail and security alerts (``security.audit_log``,
        ``security.alerts``)."""
        if self._audit is None:
            from promptline.security.audit import Auditor

            self._audit = Auditor(self.settings, self.bus)
        return self._audit

    @property
    def quotas(self) -> Quotas:
        """The quotas per tenant and per user (``quotas:``)."""
        if self._quotas is None:
            from promptline.security.quotas import Quotas

            self._quotas = Quotas(
                self.settings.quotas,
                self.bus,
                store=self.events,
                clock=self.clock,
                engine=self.engine,
            )
        return self._quotas

    @property
    def permissions(self) -> PermissionManager:
        """The permission gate: policy, grants and approvals."""
        if self._permissions is None:
            from promptline.security import build_permissions

            self._permissions = build_permissions(
                self.settings,
                self.bus,
                self.events,
                self.state,
                clock=self.clock,
                auditor=self.audit,
            )
        return self._permissions

    @property
    def sandboxes(self) -> Sandboxes:
        """The sandbox of each agent's commands (``security.sandbox``, ``agents.<name>.sandbox``);
        what they keep between commands (docker's containers) is removed on close."""
        if self._sandboxes is None:
            from promptline.security.sandbox import Sandboxes

            self._sandboxes = Sandboxes(self.settings)
        return self._sandboxes

    @property
    def runtime(self) -> Runtime:
        """The agent runtime (configured agents, the tools, the permission gate)."""
        if self._runtime is None:
            self._runtime = build_runtime(self)
        return self._runtime

    async def start_runtime(self) -> Runtime:
        """The runtime, ready to serve: tool packages loaded, MCP servers connected, skills
        read (each followed while the app runs), overdue approvals expired, runs the last
        process left unfinished resumed or recorded as interrupted, the watchdog running."""
        # Tool packages first: runs resumed below may call their tools.
        await self.plugins.start()
        runtime = self.runtime
        if self.settings.mcp_servers:
            # Before runs are resumed: they may call MCP tools. A server that does not start
            # is logged and shown by `promptline mcp list`; it never fails the start.
            from promptline.tools.mcp import McpHost

            # Sampling and elicitation are declared when a server connects: bind first.
            self.mcp.bind(McpHost(runtime, self.permissions))
            await self.mcp.start()
        if self.settings.skills.enabled:
            # Also before runs are resumed: their prompts list the skills.
            self.skills.reload()
            if self.settings.skills.watch:
                self.skills.watch()
        await self.permissions.recover()
        # Only the one live process of this instance name picks up what the name left
        # unfinished (a CLI command beside the gateway must not run the gateway's runs).
        instance = runtime.services.instance or socket.gethostname()
        if self._lease is None:
            from promptline.storage.lease import InstanceLease

            self._lease = InstanceLease(self.engine, instance)
        if await self._lease.acquire():
            await runtime.recover()
        else:
            _log.info(
                "another process serves instance %r: its unfinished runs are left to it", instance
            )
        runtime.start_watchdog()
        return runtime

    def start_session_sweep(self, interval: float | None = None) -> None:
        """Record the sessions past their expiry time as expired every ``interval`` seconds
        (default ``sessions.sweep_secs``), until the app closes."""
        if self._sweep is not None:
            return
        every = self.settings.sessions.sweep_secs if interval is None else interval

        async def sweep() -> None:
            while True:
                try:
                    expired = await self.sessions.expire_due()
                except Exception:
                    _log.exception("the sweep of expired sessions failed; it runs again later")
                else:
                    if expired:
                        _log.info("sessions expired: %s", ", ".join(expired))
                await asyncio.sleep(every)

        self._sweep = asyncio.get_running_loop().create_task(sweep(), name="session-sweep")

    async def _stop_sweep(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweep
            self._sweep = None


async def open_engine(settings: Settings, *, migrate: bool | None = None) -> AsyncEngine:
    """Open the event-log/session database, bringing its schema up to date if allowed."""
    from promptline.storage.database import create_engine
    from promptline.storage.migrate import ensure_schema

    engine = create_engine(settings.database_url())
    try:
        auto = settings.state.auto_migrate if migrate is None else migrate
        await ensure_schema(engine, auto_upgrade=auto)
    except BaseException:
        await engine.dispose()
        raise
    return engine


@contextlib.asynccontextmanager
async def build_app(
    settings: Settings, *, clock: Clock | None = None, migrate: bool | None = None
) -> AsyncIterator[App]:
    """Build every service from ``settings``; closes them all on exit."""
    from promptline.events.bus import InProcessEventBus
    from promptline.events.factory import create_event_store
    from promptline.models.registry import ProviderRegistry
    from promptline.sessions.manager import SessionManager
    from promptline.state.evented import EventedStateStore
    from promptline.state.factory import create_state_store
    from promptline.state.owners import StateOwners

    clock = clock or SystemClock()
    engine = await open_engine(settings, migrate=migrate)
    store = create_event_store(engine)
    bus = InProcessEventBus(store, default_max_queue=settings.events.subscriber_queue)
    state_backend = settings.state.backend
    inner = create_state_store(
        state_backend,
        engine=engine,
        redis_url=settings.require("state.redis_url") if state_backend == "redis" else None,
        file_dir=settings.state.file_dir,
        clock=clock,
    )
    sessions = SessionManager(
        engine,
        bus,
        clock=clock,
        default_ttl=timedelta(seconds=settings.sessions.ttl_secs),
        store=store,
    )
    # API keys (their hashes) are kept out of the event log's state_change values.
    state = EventedStateStore(
        inner,
        bus,
        redact=lambda scope, key: key.startswith("auth/"),
        owners=StateOwners.of_sessions(sessions),
    )
    registry = ProviderRegistry(settings)
    app: App | None = None
    try:
        await sessions.recover()
        built = app = App(settings, engine, store, bus, state, sessions, registry, clock)

        async def admit_session(who: Principal) -> None:
            await built.quotas.admit_session(who.tenant_id, who.user_id, sessions.count_active)

        sessions.admit = admit_session
        yield app
    finally:
        if app is not None:
            await app._stop_sweep()
            if app._runtime is not None:
                await app._runtime.shutdown()
            if app._sandboxes is not None:
                await app._sandboxes.aclose()
            if app._mcp is not None:
                await app._mcp.close()
            if app._plugins is not None:
                await app._plugins.close()
            if app._skills is not None:
                await app._skills.close()
            if app._permissions is not None:
                await app._permissions.close()
            if app._audit is not None:
                await app._audit.close()
            if app._quotas is not None:
                await app._quotas.close()
            if app._lease is not None:
                await app._lease.release()
        await sessions.drain()
        await registry.aclose()
        await bus.close()
        await state.close()
        await store.close()
        await engine.dispose()


OFFLINE_MODEL = "scripted/demo"
"""What answers when nothing is configured: the offline demo model (it says so)."""


def default_model(settings: Settings) -> str | None:
    """``models.default``; with no provider configured at all, the offline demo model, so a
    fresh install answers (and says how to configure a real model) instead of failing."""
    if settings.models.default:
        return settings.models.default
    return None if settings.models.providers else OFFLINE_MODEL


def build_runtime(app: App) -> Runtime:
    """The agent runtime of ``app``: its agents, tools, permission gate and loop settings."""
    from promptline.runtime.agent import agents_from_settings
    from promptline.runtime.budget import Budget
    from promptline.runtime.runtime import Runtime
    from promptline.runtime.services import RunServices
    from promptline.tools.executor import ToolExecutor

    settings = app.settings
    limits = settings.security.resource_limits
    executor = ToolExecutor(
        app.tools,
        app.bus,
        gate=app.permissions,
        max_timeout=float(limits.timeout_secs),
        limits=limits.model_dump(),
        sandboxes=app.sandboxes,
        alerts=settings.security.audit_log,
    )
    budget = settings.agent.budget
    broker = app.permissions.broker

    async def approve_plan(
        plan: str, scope: CallScope, events: EventBus
    ) -> tuple[bool, str | None]:
        outcome = await broker.request(
            "submit_plan",
            {"plan": plan},
            scope,
            reason="approve this plan to let the agent carry it out (plan -> act)",
        )
        return outcome.approved, outcome.reason

    def capabilities(model_id: str) -> ModelCapabilities | None:
        try:
            return app.registry.capabilities(app.registry.resolve(model_id).id)
        except Exception:  # a tag, an unknown model: the router decides later
            return None

    services = RunServices(
        bus=app.bus,
        store=app.events,
        models=app.router,
        executor=executor,
        capabilities=capabilities,
        clock=app.clock,
        default_model=default_model(settings),
        budget=Budget(
            session_tokens=budget.session_tokens,
            session_cost_usd=budget.session_cost_usd,
            user_tokens=budget.user_tokens,
            user_cost_usd=budget.user_cost_usd,
        ),
        context_strategy=settings.agent.context_strategy,
        max_repeated_calls=settings.agent.max_repeated_calls,
        workspaces_dir=settings.agent.workspaces_dir,
        plan_approver=approve_plan,
        skills=app.skills.prompt_section if settings.skills.enabled else None,
        resume_approval=app.permissions.resume,
        keep_approvals=app.permissions.keep_pending,
        instance=settings.agent.instance_id or socket.gethostname(),
    )
    runtime = Runtime(
        services,
        agents_from_settings(settings),
        sessions=app.sessions,
        watchdog_secs=settings.agent.watchdog_secs,
        shutdown_timeout_secs=settings.agent.shutdown_timeout_secs,
    )

    quotas = app.quotas
    quotas.bind_runs(lambda: runtime.active)
    services.admit = lambda who: quotas.admission(who.tenant_id, who.user_id)
    services.run_ended = quotas.run_ended
    return runtime
