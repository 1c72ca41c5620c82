"""The runtime: starts runs, keeps one run at a time per session (with the session's queue
mode for messages that arrive meanwhile), watches for wedged runs, and shuts down cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from promptline.core.errors import (
    ConflictError,
    NotFoundError,
    SessionBusyError,
    SubscriberLagged,
)
from promptline.core.events import (
    AgentLifecycle,
    AgentLifecycleEvent,
    ErrorInfo,
    Event,
    LifecycleState,
    MessageReceivedEvent,
    MessageSentEvent,
    RunCancelled,
    RunCancelledEvent,
    RunFailed,
    RunFailedEvent,
)
from promptline.core.messages import Message
from promptline.events.protocols import EventFilter
from promptline.runtime.agent import DEFAULT_AGENT, Agent, QueueMode
from promptline.runtime.lifecycle import is_legal
from promptline.runtime.recovery import RECOVERY_WINDOW, Unfinished, find_unfinished
from promptline.runtime.run import Run, RunResult, SessionView
from promptline.sessions.models import Principal

if TYPE_CHECKING:
    from promptline.runtime.services import RunServices
    from promptline.sessions.manager import SessionManager

__all__ = ["Runtime"]


@dataclass
class _Lane:
    """The runs of one session: the one in flight and those waiting, in order."""

    current: Run | None = None
    waiting: deque[Run] = field(default_factory=deque)


class Runtime:
    """Runs agents. Build it with `promptline.app.build_app` (``app.runtime``) or by hand.

    ``start_run`` returns a `Run` at once; await ``run.result()`` for the outcome. Runs of
    one session never overlap: a message that arrives while one is in flight is handled by
    the queue mode (``enqueue``, ``steer``, ``interrupt`` or ``reject``), never dropped.
    """

    def __init__(
        self,
        services: RunServices,
        agents: Mapping[str, Agent],
        *,
        sessions: SessionManager | None = None,
        watchdog_secs: float = 600.0,
        shutdown_timeout_secs: float = 10.0,
    ) -> None:
        self.services = services
        self.agents = dict(agents)
        self.sessions = sessions
        self.watchdog_secs = watchdog_secs
        self.shutdown_timeout_secs = shutdown_timeout_secs
        self._lanes: dict[str, _Lane] = {}
        self._runs: dict[str, Run] = {}
        self._watchdog: asyncio.Task[None] | None = None
        self._closing = False
        self._stale: set[str] = set()
        self._suspended: set[str] = set()
        self._decisions: asyncio.Task[None] | None = None
        if sessions is not None and services.after_run is None:
            services.after_run = self._refresh_session

    # -- agents ---------------------------------------------------------------------------

    def agent(self, name: str | None = None) -> Agent:
        """The agent ``name`` (the default agent for None); `NotFoundError` listing the rest."""
        name = name or DEFAULT_AGENT
        found = self.agents.get(name)
        if found is None:
            raise NotFoundError(
                f"no agent {name!r}",
                hint=f"agents: {', '.join(self.agents) or 'none'} (configure more under agents:)",
                agent=name,
            )
        return found

    # -- runs -----------------------------------------------------------------------------

    async def start_run(
        self,
        message: Message | str,
        *,
        session_id: str | None = None,
        principal: Principal | None = None,
        agent: Agent | str | None = None,
        mode: Literal["plan", "act"] | None = None,
        model: str | None = None,
        history: Sequence[Message] = (),
        queue_mode: QueueMode | None = None,
    ) -> Run:
        """Start a run answering ``message``.

        With ``session_id`` (and the ``principal`` allowed to see it) the run continues that
        session: its history is the context, its messages are added to it. Without one the
        run stands alone with ``history`` as its context (its events go to a stream named
        after the run). While the session has a run in flight, ``queue_mode`` (default: the
        agent's) decides: ``enqueue`` runs after it, ``steer`` joins it (the returned run
        is the one in flight), ``interrupt`` cancels it first, ``reject`` raises
        `SessionBusyError`.
        """
        if self._closing:
            raise SessionBusyError(
                "the runtime is shutting down and takes no new runs",
                hint="retry once it is back",
            )
        chosen = agent if isinstance(agent, Agent) else self.agent(agent)
        msg = Message(role="user", content=message) if isinstance(message, str) else message
        if session_id is None:
            run = self._new_run(chosen, msg, None, history, mode, model, principal)
            run.start()
            return run
        lane = self._lanes.setdefault(session_id, _Lane())
        busy = lane.current is not None and not lane.current.done
        mode_of_queue = queue_mode or chosen.queue_mode
        if busy and mode_of_queue == "reject":
            assert lane.current is not None
            raise SessionBusyError(
                f"session {session_id!r} is busy with run {lane.current.id}",
                hint="wait for it to finish, cancel it, or send with queue mode enqueue",
                session_id=session_id,
                run_id=lane.current.id,
            )
        if busy and mode_of_queue == "steer":
            assert lane.current is not None
            lane.current.steer(msg)
            return lane.current
        session, past = await self._load_session(session_id, principal)
        run = self._new_run(chosen, msg, session, past, mode, model, principal)
        if busy:
            # It waits its turn, and reads the history as it is then.
            self._stale.add(run.id)
        if busy and mode_of_queue == "interrupt":
            assert lane.current is not None
            lane.current.cancel("interrupted by a new message", by="queue")
        lane.waiting.append(run)
        self._advance(session_id)
        return run

    async def run(self, message: Message | str, **options: Any) -> RunResult:
        """Start a run (see `start_run`) and wait for its outcome."""
        run = await self.start_run(message, **options)
        return await run.result()

    def get(self, run_id: str) -> Run:
        """A run in flight or waiting; `NotFoundError` for any other id."""
        found = self._runs.get(run_id)
        if found is None:
            raise NotFoundError(
                f"no active run {run_id!r}",
                hint="finished runs are in the event log: promptline runs show RUN_ID",
                run_id=run_id,
            )
        return found

    @property
    def active(self) -> list[Run]:
        """Runs in flight or waiting their turn."""
        return list(self._runs.values())

    def busy(self, session_id: str) -> bool:
        """True while the session has a run in flight."""
        lane = self._lanes.get(session_id)
        return lane is not None and lane.current is not None and not lane.current.done

    # -- lanes ----------------------------------------------------------------------------

    def _new_run(
        self,
        agent: Agent,
        message: Message,
        session: SessionView | None,
        history: Sequence[Message],
        mode: Literal["plan", "act"] | None,
        model: str | None,
        principal: Principal | None,
    ) -> Run:
        run = Run(
            self.services,
            agent,
            message,
            session=session,
            history=history,
            mode=mode,
            model=model,
            principal_user=principal.user_id if principal else None,
        )
        run.hold()
        self._runs[run.id] = run
        run.add_done_callback(self._ended)
        return run

    def _ended(self, run: Run) -> None:
        self._runs.pop(run.id, None)
        if run.session is None:
            return
        sid = run.session.id
        lane = self._lanes.get(sid)
        if lane is None:
            return
        if lane.current is run:
            lane.current = None
            leftover = run.take_steered()
            if leftover and not self._closing:
                # Steered messages the loop never reached run next, in order: never dropped.
                for message in reversed(leftover):
                    follow = self._new_run(run.agent, message, run.session, (), None, None, None)
                    self._stale.add(follow.id)
                    lane.waiting.appendleft(follow)
            self._advance(sid)
        elif run in lane.waiting:
            lane.waiting.remove(run)
        if lane.current is None and not lane.waiting:
            self._lanes.pop(sid, None)

    def _advance(self, session_id: str) -> None:
        lane = self._lanes.get(session_id)
        if lane is None or (lane.current is not None and not lane.current.done):
            return
        while lane.waiting:
            run = lane.waiting.popleft()
            if run.done:
                continue
            lane.current = run
            if run.task is None:
                asyncio.get_running_loop().create_task(self._start_in_lane(run))
            return

    async def _start_in_lane(self, run: Run) -> None:
        if run.id in self._stale and run.session is not None:
            self._stale.discard(run.id)
            try:
                _, run.history = await self._load_session(run.session.id, None)
            except Exception as exc:
                run.fail_before_start(exc)
        run.start()

    async def _load_session(
        self, session_id: str, principal: Principal | None
    ) -> tuple[SessionView, list[Message]]:
        if self.sessions is None:
            raise NotFoundError(
                f"no session {session_id!r}: this runtime has no session store",
                hint="build the runtime with a SessionManager, or run without a session",
            )
        who = principal or Principal(user_id="runtime", admin=True)
        await self.sessions.refresh(session_id)
        session = await self.sessions.get(session_id, who)
        if session.status != "active":
            raise ConflictError(
                f"session {session_id!r} has expired and takes no more messages",
                hint="start a new session",
                session_id=session_id,
            )
        view = SessionView(
            id=session.id,
            user_id=session.user_id,
            tenant_id=session.tenant_id,
            channel=session.channel,
            context=dict(session.context),
            rules=dict(session.permissions.rules),
            tools=tuple(ref.name for ref in session.tools),
        )
        return view, list(session.history)

    async def _refresh_session(self, run: Run) -> None:
        if self.sessions is not None and run.session is not None:
            await self.sessions.refresh(run.session.id)

    # -- after a restart -----------------------------------------------------------------

    async def recover(self, *, since: datetime | None = None) -> dict[str, list[str]]:
        """Deal with runs the log shows as unfinished (the process stopped during them).

        A run waiting for an approval that is still undecided stays suspended and goes on
        when it is answered (`watch_decisions`); one whose awaited approvals were all decided
        meanwhile goes on now; any other is recorded as interrupted. Returns the run ids by
        what was done: ``resumed``, ``waiting``, ``interrupted``.
        """
        since = since or self.services.clock.now() - RECOVERY_WINDOW
        done: dict[str, list[str]] = {"resumed": [], "waiting": [], "interrupted": []}
        found = await find_unfinished(
            self.services.store, since=since, instance=self.services.instance
        )
        for item in found:
            run_id = item.record.run_id
            if run_id in self._runs:
                continue
            if item.resume is not None:
                await self._resume(item)
                done["resumed"].append(run_id)
            elif item.waiting:
                self._suspended.add(run_id)
                done["waiting"].append(run_id)
            else:
                await self._interrupted(item)
                done["interrupted"].append(run_id)
        return done

    async def resume_if_decided(self, run_id: str) -> Run | None:
        """Pick up a run suspended since a restart if its approvals are now all decided."""
        if run_id not in self._suspended:
            return None
        since = self.services.clock.now() - timedelta(days=3650)
        for item in await find_unfinished(self.services.store, since=since, run_id=run_id):
            if item.resume is not None:
                self._suspended.discard(run_id)
                return await self._resume(item)
        return None

    def watch_decisions(self) -> None:
        """Resume suspended runs as their approvals are answered (until `shutdown`)."""
        if self._decisions is not None:
            return
        bus = self.services.bus
        wanted = EventFilter(types=frozenset({"permission_granted", "permission_denied"}))

        async def watch() -> None:
            position: int | None = None
            while True:
                sub = bus.subscribe(wanted, from_position=position)
                try:
                    async for event in sub:
                        position = event.position
                        if event.run_id in self._suspended:
                            with contextlib.suppress(Exception):
                                await self.resume_if_decided(event.run_id)
                except SubscriberLagged as lag:
                    position = lag.last_position
                finally:
                    await sub.close()

        self._decisions = asyncio.get_running_loop().create_task(watch(), name="decisions")

    async def _resume(self, item: Unfinished) -> Run:
        started = item.started
        agent = self.agents.get(started.data.agent) or Agent(name=started.data.agent)
        session = None
        history: list[Message] = []
        if started.session_id is not None and self.sessions is not None:
            session, history = await self._load_session(started.session_id, None)
        else:
            history = [
                e.data.message
                for e in await self.services.store.read_stream(started.stream_name)
                if isinstance(e, MessageReceivedEvent | MessageSentEvent)
            ]
        assert started.data.input is not None
        run = Run(
            self.services,
            agent,
            started.data.input,
            session=session,
            history=history,
            mode="plan" if started.data.mode == "plan" else "act",
            model=started.data.model,
            run_id=item.record.run_id,
            resume=item.resume,
        )
        if session is not None:
            run.hold()
        self._runs[run.id] = run
        run.add_done_callback(self._ended)
        if session is None:
            run.start()
            return run
        lane = self._lanes.setdefault(session.id, _Lane())
        lane.waiting.appendleft(run)
        self._advance(session.id)
        return run

    async def _interrupted(self, item: Unfinished) -> None:
        started = item.started
        envelope = {
            "stream": started.stream_name,
            "session_id": started.session_id,
            "run_id": started.run_id,
            "agent_id": started.agent_id,
            "user_id": started.user_id,
            "tenant_id": started.tenant_id,
            "correlation_id": started.run_id,
        }
        reason = "interrupted: the process stopped before the run finished"
        events: list[Event] = [
            RunCancelledEvent(**envelope, data=RunCancelled(reason=reason, cancelled_by="recovery"))
        ]
        state = item.last_state
        path: list[LifecycleState] = (
            ["stopping", "stopped"] if state not in ("stopping", "stopped", "error") else []
        )
        if state == "stopping":
            path = ["stopped"]
        for to_state in path:
            if state is None or is_legal(state, to_state):
                events.append(
                    AgentLifecycleEvent(
                        **envelope,
                        data=AgentLifecycle(
                            agent=started.data.agent,
                            from_state=state,
                            to_state=to_state,
                            reason=reason,
                        ),
                    )
                )
                state = to_state
        await self.services.bus.publish_batch(events)

    # -- watchdog -------------------------------------------------------------------------

    def start_watchdog(self, interval: float | None = None) -> None:
        """Check for wedged runs every ``interval`` seconds (default: a quarter of
        ``watchdog_secs``, at most 30 s) until `shutdown`."""
        if self._watchdog is not None:
            return
        every = interval or min(self.watchdog_secs / 4, 30.0)

        async def watch() -> None:
            while True:
                await asyncio.sleep(every)
                await self.check_watchdog()

        self._watchdog = asyncio.get_running_loop().create_task(watch(), name="watchdog")

    async def check_watchdog(self, *, now: float | None = None) -> list[str]:
        """Stop runs with no progress for ``watchdog_secs``; free the sessions of runs that
        do not end when cancelled. Returns the ids of the runs it acted on."""
        now = time.monotonic() if now is None else now
        acted = []
        for run in list(self._runs.values()):
            if run.task is None or run.done or run.lifecycle.state == "paused":
                continue
            idle = now - run.last_activity
            if idle < self.watchdog_secs:
                continue
            acted.append(run.id)
            if not run.task.cancelling():
                run.cancel(f"watchdog: no progress for {idle:.1f} s", by="watchdog")
                run.last_activity = now - self.watchdog_secs / 2
            else:
                await self._free_wedged(run, idle)
        return acted

    async def _free_wedged(self, run: Run, idle: float) -> None:
        """The run ignored its cancellation: record it as failed and give its session on."""
        self._runs.pop(run.id, None)
        run.abandon()
        if not run.lifecycle.final:
            run.lifecycle.move("error", "wedged: did not end when cancelled")
            await run.events.flush()
        await self.services.bus.publish(
            RunFailedEvent(
                **run.envelope,
                data=RunFailed(
                    error=ErrorInfo(
                        code="run_wedged",
                        message=f"the run did not end when cancelled ({idle:.1f} s without "
                        "progress); its session was freed",
                    )
                ),
            )
        )
        if run.session is not None:
            lane = self._lanes.get(run.session.id)
            if lane is not None and lane.current is run:
                lane.current = None
                self._advance(run.session.id)

    # -- shutdown -------------------------------------------------------------------------

    async def shutdown(self, grace: float | None = None) -> list[str]:
        """Stop taking runs; stop the ones in flight at a safe point (recorded as
        interrupted), cancel those still going after ``grace`` seconds (default:
        ``shutdown_timeout_secs``). Returns the run ids that
        were interrupted or cancelled."""
        self._closing = True
        if self._decisions is not None:
            self._decisions.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._decisions
            self._decisions = None
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        runs = list(self._runs.values())
        for run in runs:
            if run.task is None:
                run.stop("interrupted: the process is shutting down", by="shutdown")
                run.start()
            else:
                run.stop("interrupted: the process is shutting down", by="shutdown")
        tasks = [run.task for run in runs if run.task is not None]
        if tasks:
            _, pending = await asyncio.wait(
                tasks, timeout=self.shutdown_timeout_secs if grace is None else grace
            )
            for run in runs:
                if run.task in pending:
                    run.cancel("interrupted: shutdown timeout", by="shutdown")
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        return [run.id for run in runs]
