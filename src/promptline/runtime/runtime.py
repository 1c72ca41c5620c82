"""The runtime: takes messages durably (each is in the log before it is acknowledged), runs
one run at a time per session in the order the log gives, resumes what a stopped process left
unfinished, watches for wedged runs, and stops without losing anything."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from promptline.core.errors import (
    ConflictError,
    NotFoundError,
    ServiceUnavailableError,
    SessionBusyError,
)
from promptline.core.events import (
    AgentLifecycle,
    AgentLifecycleEvent,
    ErrorInfo,
    Event,
    LifecycleState,
    MessageReceived,
    MessageReceivedEvent,
    MessageSent,
    MessageSentEvent,
    RunCancelled,
    RunCancelledEvent,
    RunFailed,
    RunFailedEvent,
    RunQueued,
    RunQueuedEvent,
    build,
)
from promptline.core.ids import new_id
from promptline.core.messages import Message, Usage
from promptline.events.protocols import EventFilter
from promptline.runtime.agent import DEFAULT_AGENT, Agent, QueueMode
from promptline.runtime.ingress import (
    Accepted,
    IdempotencyKeyReusedError,
    check_idempotency_key,
    fingerprint,
    keyed_ids,
)
from promptline.runtime.lifecycle import is_legal
from promptline.runtime.records import RUN_ENDINGS, RunRecord, load_run
from promptline.runtime.recovery import (
    MAX_RESUME_ATTEMPTS,
    RECOVERY_WINDOW_DAYS,
    Unfinished,
    conversation,
    find_unfinished,
)
from promptline.runtime.run import Run, RunResult, SessionView
from promptline.sessions.locks import KeyedLocks
from promptline.sessions.models import Principal

if TYPE_CHECKING:
    from promptline.runtime.services import RunServices
    from promptline.sessions.manager import SessionManager
    from promptline.sessions.models import Session

__all__ = ["OVERRIDABLE", "Runtime", "result_of"]

OVERRIDABLE = ("temperature", "max_tokens", "stream")
"""The agent settings a request may change for its run (kept in its ``run_queued``)."""


@dataclass
class _Lane:
    """The runs of one session in this process: the one in flight and those waiting, in the
    order the log has them."""

    current: Run | None = None
    waiting: deque[Run] = field(default_factory=deque)

    def ahead(self) -> int:
        """Unfinished runs in the lane (what a new message would wait behind)."""
        busy = 1 if self.current is not None and not self.current.done else 0
        return busy + sum(1 for run in self.waiting if not run.done)


class Runtime:
    """Runs agents. Build it with `promptline.app.build_app` (``app.runtime``) or by hand.

    `submit` takes a message and acknowledges it once it is durable: its ``message_received``
    and the ``run_queued`` of the run that answers it are in the log. Runs of one session
    never overlap: a message that arrives while one is in flight is handled by the queue
    mode (``enqueue``, ``steer``, ``interrupt`` or ``reject``), never dropped. `recover`
    (at start) starts every queued run and resumes the runs a stopped process left in
    flight; `shutdown` leaves runs at a safe point for the next start to pick up.
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
        self._intake = KeyedLocks()
        self._watchdog: asyncio.Task[None] | None = None
        self._closing = False
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

    # -- taking messages ------------------------------------------------------------------

    async def submit(
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
        idempotency_key: str | None = None,
        channel: str | None = None,
        session: Session | None = None,
    ) -> Accepted:
        """Take ``message`` for a run that answers it; returns once both are in the log.

        With ``session_id`` (and the ``principal`` allowed to see it) the run continues that
        session after the runs already queued there; while one is in flight, ``queue_mode``
        (default: the agent's) decides: ``enqueue`` waits its turn, ``steer`` joins the run
        in flight at its next model call, ``interrupt`` cancels it, ``reject`` raises
        `SessionBusyError` and records nothing. Without a session the run stands alone
        with ``history`` as its context. ``idempotency_key``: a retry with the same key (by
        the same user) gets the first answer back (``replayed``) and creates nothing, across
        restarts; the same key with a different message is `IdempotencyKeyReusedError`.
        ``session``: the session ``session_id`` as the caller just read it for ``principal``
        (the gateway does, for its default agent), so it is not read again.
        """
        if self._closing:
            raise ServiceUnavailableError(
                "the runtime is shutting down and takes no new messages",
                hint="retry once it is back (with the same idempotency key, a retry is safe)",
            )
        key = check_idempotency_key(idempotency_key)
        chosen = agent if isinstance(agent, Agent) else self.agent(agent)
        overrides = self._overrides(chosen)
        msg = Message(role="user", content=message) if isinstance(message, str) else message
        who = principal or Principal(user_id="runtime", admin=True)
        admit = self.services.admit
        async with admit(who) if admit is not None else contextlib.nullcontext():
            if session_id is None:
                return await self._submit_alone(
                    msg, who, chosen, mode, model, list(history), overrides, key, channel
                )
            async with self._intake.hold(session_id):
                return await self._submit_to_session(
                    msg,
                    session_id,
                    who,
                    chosen,
                    mode,
                    model,
                    queue_mode,
                    overrides,
                    key,
                    channel,
                    session if session is not None and session.id == session_id else None,
                )

    async def start_run(self, message: Message | str, **options: Any) -> Run:
        """`submit` ``message`` and return the run answering it (for ``steer``, the run in
        flight it joined). Await ``run.result()`` for the outcome."""
        accepted = await self.submit(message, **options)
        if accepted.steered_into is not None:
            joined = self._runs.get(accepted.steered_into)
            if joined is not None:
                return joined
        if accepted.run is None:
            raise ConflictError(
                f"run {accepted.run_id} answered this idempotency key before and is not in "
                "flight here",
                hint="read its record (GET /v1/runs/RUN_ID, promptline runs show RUN_ID)",
                run_id=accepted.run_id,
            )
        return accepted.run

    async def run(self, message: Message | str, **options: Any) -> RunResult:
        """Start a run (see `start_run`) and wait for its outcome."""
        run = await self.start_run(message, **options)
        return await run.result()

    async def wait(self, run_id: str) -> RunRecord:
        """Wait for run ``run_id`` to end, in this process or any other sharing the log, and
        return its record (`NotFoundError` for a run the log does not have)."""
        run = self._runs.get(run_id)
        if run is not None:
            await run.result()
            return await load_run(self.services.store, run_id)
        ending = self.services.bus.subscribe(EventFilter(run_id=run_id, types=RUN_ENDINGS))
        try:
            # Subscribed before the log is read: an ending written in between is seen.
            record = await load_run(self.services.store, run_id)
            if not record.ended:
                async for _ in ending:
                    break
        finally:
            await ending.close()
        return await load_run(self.services.store, run_id)

    async def outcome(self, run_id: str) -> RunResult:
        """Wait for run ``run_id`` to end and say how (read back from the log for a run that
        ran in another process, or before a restart)."""
        run = self._runs.get(run_id)
        if run is not None:
            return await run.result()
        return result_of(await self.wait(run_id))

    def _overrides(self, chosen: Agent) -> dict[str, Any]:
        """What ``chosen`` changes of the configured agent of its name (kept with the run,
        so a resumed run runs as the request asked)."""
        base = self.agents.get(chosen.name)
        if base is None or base is chosen:
            return {}
        return {
            name: getattr(chosen, name)
            for name in OVERRIDABLE
            if getattr(chosen, name) != getattr(base, name)
        }

    async def _submit_alone(
        self,
        msg: Message,
        who: Principal,
        chosen: Agent,
        mode: Literal["plan", "act"] | None,
        model: str | None,
        history: list[Message],
        overrides: dict[str, Any],
        key: str | None,
        channel: str | None,
    ) -> Accepted:
        run_id, queued_id = self._ids(who, key)
        print_, replayed = await self._first_answer(
            key,
            run_id,
            session_id=None,
            message=msg,
            history=history,
            agent=chosen.name,
            model=model,
            mode=mode,
            queue_mode=None,
            overrides=overrides,
        )
        if replayed is not None:
            return replayed
        envelope = {
            "stream": run_id,
            "run_id": run_id,
            "user_id": who.user_id,
            "tenant_id": who.tenant_id,
            "agent_id": chosen.name,
            "correlation_id": run_id,
        }
        received, queued = self._intake_events(
            envelope,
            msg,
            chosen,
            queued_id,
            mode=mode,
            model=model,
            history=history,
            overrides=overrides,
            key=key,
            fingerprint=print_,
            channel=channel,
        )
        stored = await self._write_intake(received, queued, run_id, print_, key)
        if isinstance(stored, Accepted):
            return stored
        run = self._new_run(
            chosen, msg, None, history, mode, model, who, run_id=run_id, input_id=received.id
        )
        run.start()
        return Accepted.of(queued, stored, run, replayed=False)

    async def _submit_to_session(
        self,
        msg: Message,
        session_id: str,
        who: Principal,
        chosen: Agent,
        mode: Literal["plan", "act"] | None,
        model: str | None,
        queue_mode: QueueMode | None,
        overrides: dict[str, Any],
        key: str | None,
        channel: str | None,
        known: Session | None,
    ) -> Accepted:
        run_id, queued_id = self._ids(who, key)
        how = queue_mode or chosen.queue_mode
        print_, replayed = await self._first_answer(
            key,
            run_id,
            session_id=session_id,
            message=msg,
            history=[],
            agent=chosen.name,
            model=model,
            mode=mode,
            queue_mode=how,
            overrides=overrides,
        )
        if replayed is not None:
            return replayed
        session = await self._open_session(session_id, who, known)
        lane = self._lanes.get(session_id)
        current = lane.current if lane is not None else None
        busy = current is not None and not current.done
        if busy and how == "reject":
            assert current is not None
            raise SessionBusyError(
                f"session {session_id!r} is busy with run {current.id}",
                hint="wait for it to finish, cancel it, or send with queue mode enqueue",
                session_id=session_id,
                run_id=current.id,
            )
        target = current.id if busy and current is not None else None
        envelope = {
            "stream": session_id,
            "session_id": session_id,
            "run_id": run_id,
            "user_id": session.user_id,
            "tenant_id": session.tenant_id,
            "agent_id": chosen.name,
            "correlation_id": run_id,
        }
        received, queued = self._intake_events(
            envelope,
            msg,
            chosen,
            queued_id,
            mode=mode,
            model=model,
            queue_mode=how,
            position=lane.ahead() if lane is not None else 0,
            steer_into=target if how == "steer" else None,
            interrupts=target if how == "interrupt" else None,
            overrides=overrides,
            key=key,
            fingerprint=print_,
            channel=channel or session.channel,
        )
        stored = await self._write_intake(received, queued, run_id, print_, key)
        if isinstance(stored, Accepted):
            return stored
        # From here to the return nothing awaits: the run joins the lane as the log has it,
        # and a run ending meanwhile cannot leave it in a lane nobody will advance.
        view = _view_of(session)
        run = self._new_run(
            chosen, msg, view, (), mode, model, who, run_id=run_id, input_id=received.id
        )
        lane = self._lanes.setdefault(session_id, _Lane())
        lane.waiting.append(run)
        current = lane.current
        if current is not None and not current.done and current.id == target:
            if how == "steer":
                current.steer(run)
            elif how == "interrupt":
                current.cancel("interrupted by a new message", by="queue")
        self._advance(session_id)
        return Accepted.of(queued, stored, run, replayed=False)

    def _ids(self, who: Principal, key: str | None) -> tuple[str, str]:
        if key is None:
            return new_id("run_"), new_id("evt_")
        return keyed_ids(who.tenant_id, who.user_id, key)

    def _intake_events(
        self,
        envelope: dict[str, Any],
        msg: Message,
        chosen: Agent,
        queued_id: str,
        *,
        mode: Literal["plan", "act"] | None,
        model: str | None,
        queue_mode: QueueMode | None = None,
        position: int = 0,
        steer_into: str | None = None,
        interrupts: str | None = None,
        history: Sequence[Message] = (),
        overrides: dict[str, Any],
        key: str | None,
        fingerprint: str | None,
        channel: str | None,
    ) -> tuple[MessageReceivedEvent, RunQueuedEvent]:
        """The two events that take a message: ``message_received`` (queued) and the
        ``run_queued`` of the run that will answer it (with ``queued_id`` as its id)."""
        received = build(
            MessageReceivedEvent,
            **envelope,
            data=build(MessageReceived, message=msg, channel=channel, queued=True),
        )
        queued = build(
            RunQueuedEvent,
            **envelope,
            id=queued_id,
            causation_id=received.id,
            data=RunQueued(
                agent=chosen.name,
                model=model or None,
                mode=mode or chosen.mode,
                message_id=received.id,
                position=position,
                queue_mode=queue_mode,
                steer_into=steer_into,
                interrupts=interrupts,
                history=list(history),
                overrides=overrides,
                instance=self.services.instance,
                idempotency_key=key,
                fingerprint=fingerprint,
            ),
        )
        return received, queued

    async def _write_intake(
        self,
        received: MessageReceivedEvent,
        queued: RunQueuedEvent,
        run_id: str,
        print_: str | None,
        key: str | None,
    ) -> int | Accepted:
        """Write the message and its run in one transaction; the seq of the message (or, if
        another request with the same key won the race, that request's answer)."""
        try:
            stored = await self.services.bus.publish_batch([received, queued])
        except ConflictError:
            if key is not None:
                replayed = await self._replayed(run_id, print_, key)
                if replayed is not None:
                    return replayed
            raise
        return stored[0].seq

    async def find_keyed(self, principal: Principal, idempotency_key: str) -> Accepted | None:
        """The answer a message sent with ``idempotency_key`` by ``principal`` was given, if
        one was (``replayed``); None when the key is new."""
        key = check_idempotency_key(idempotency_key)
        assert key is not None
        run_id, _ = keyed_ids(principal.tenant_id, principal.user_id, key)
        return await self._replayed(run_id, None, key)

    async def _first_answer(
        self, key: str | None, run_id: str, **asked: Any
    ) -> tuple[str | None, Accepted | None]:
        """For a message with an idempotency key: the fingerprint of what it asks, and the
        answer given the first time the key came (None for a new key)."""
        if key is None:
            return None, None
        print_ = fingerprint(**asked)
        return print_, await self._replayed(run_id, print_, key)

    async def _replayed(self, run_id: str, print_: str | None, key: str) -> Accepted | None:
        """The first answer given for ``key`` (whose run is ``run_id``), if any; with
        ``print_``, `IdempotencyKeyReusedError` when it answered another request."""
        events = await self.services.store.read_all(EventFilter(run_id=run_id))
        queued = next((e for e in events if isinstance(e, RunQueuedEvent)), None)
        if queued is None:
            return None
        if print_ is not None and queued.data.fingerprint not in (None, print_):
            raise IdempotencyKeyReusedError(
                f"idempotency key {key!r} was used for another message (run {run_id})",
                hint="send a new key for a new message; a retry must repeat the first request "
                "exactly",
                run_id=run_id,
            )
        received = next((e for e in events if e.id == queued.data.message_id), None)
        seq = received.seq if received is not None else queued.seq
        return Accepted.of(queued, seq, self._runs.get(run_id), replayed=True)

    async def _open_session(
        self, session_id: str, who: Principal, known: Session | None = None
    ) -> Session:
        """The session (``known``: as the caller read it), if ``who`` may see it and it
        takes messages (`NotFoundError`, `ConflictError` for an expired or past-due one)."""
        if self.sessions is None:
            raise NotFoundError(
                f"no session {session_id!r}: this runtime has no session store",
                hint="build the runtime with a SessionManager, or run without a session",
            )
        session = known or await self.sessions.get(session_id, who, history_limit=0)
        now = self.services.clock.now()
        if session.status != "active" or (
            session.expires_at is not None and session.expires_at <= now
        ):
            raise ConflictError(
                f"session {session_id!r} has expired and takes no more messages",
                hint="start a new session",
                session_id=session_id,
                reason="expired",
            )
        return session

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

    def queued(self, session_id: str) -> list[str]:
        """The ids of the session's unfinished runs in this process, in the order they run
        (the one in flight first)."""
        lane = self._lanes.get(session_id)
        if lane is None:
            return []
        runs = [lane.current] if lane.current is not None and not lane.current.done else []
        return [run.id for run in [*runs, *lane.waiting] if not run.done]

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
        *,
        run_id: str,
        input_id: str | None,
        resume: Any = None,
    ) -> Run:
        run = Run(
            self.services,
            agent,
            message,
            session=session,
            history=history,
            mode=mode,
            model=model,
            run_id=run_id,
            principal_user=principal.user_id if principal else None,
            principal_tenant=principal.tenant_id if principal else None,
            input_id=input_id,
            resume=resume,
        )
        if session is not None:
            run.hold()
        self._runs[run.id] = run
        run.add_done_callback(self._ended)
        return run

    def _ended(self, run: Run) -> None:
        self._runs.pop(run.id, None)
        if self.services.run_ended is not None:
            self.services.run_ended(run)
        if run.session is None:
            return
        sid = run.session.id
        lane = self._lanes.get(sid)
        if lane is None:
            return
        if lane.current is run:
            lane.current = None
            self._advance(sid)
        else:
            with contextlib.suppress(ValueError):
                lane.waiting.remove(run)
        if lane.current is None and not lane.waiting:
            self._lanes.pop(sid, None)

    def _advance(self, session_id: str) -> None:
        """Start the next run of the session if none is in flight (never awaits, so the
        hand-over from one run to the next is one step)."""
        lane = self._lanes.get(session_id)
        if self._closing or lane is None or (lane.current is not None and not lane.current.done):
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
        """Read the session as it is now (its history, rules and context: the runs before
        may have changed them), then start the run."""
        if run.session is not None and self.sessions is not None:
            try:
                run.session, run.history = await self._load_session(run.session.id)
            except Exception as exc:
                self.sessions.project_later(run.session.id)  # no after_run for it
                run.fail_before_start(exc)
        if run.done or run.task is not None:
            return  # ended meanwhile (the process is stopping)
        run.start()

    async def _load_session(self, session_id: str) -> tuple[SessionView, list[Message]]:
        assert self.sessions is not None
        who = Principal(user_id="runtime", admin=True)
        # Up to date though the record may lag; the record itself is projected as the run
        # ends (`_refresh_session`), with the run's own messages.
        session = await self.sessions.get(session_id, who, project=False)
        if session.status != "active":
            raise ConflictError(
                f"session {session_id!r} has expired and takes no more messages",
                hint="start a new session",
                session_id=session_id,
            )
        return _view_of(session), list(session.history)

    async def _refresh_session(self, run: Run) -> None:
        # Off the run's critical path: the projector applies it (batched with the runs
        # ending meanwhile); readers of the session find the run's messages in the log.
        if self.sessions is not None and run.session is not None:
            self.sessions.project_later(run.session.id)

    # -- after a restart -----------------------------------------------------------------

    async def recover(self) -> dict[str, list[str]]:
        """Pick up what the log shows unfinished (this process, or its predecessor, stopped
        during it): every queued run is queued again, in order; a run in flight resumes from
        its last completed step (or, for an agent with ``on_crash: interrupt``, is recorded
        as interrupted; one that a later message interrupted is recorded as cancelled; one
        resumed `MAX_RESUME_ATTEMPTS` times in a row without progress is failed). Returns
        the run ids by what was done: ``queued``, ``resumed``, ``interrupted``, ``failed``.
        """
        since = self.services.clock.now() - timedelta(days=RECOVERY_WINDOW_DAYS)
        done: dict[str, list[str]] = {"queued": [], "resumed": [], "interrupted": [], "failed": []}
        found = await find_unfinished(
            self.services.store, since=since, instance=self.services.instance
        )
        interrupted = {
            item.queued.data.interrupts: item.run_id
            for item in found
            if item.queued is not None and item.queued.data.interrupts
        }
        for item in found:
            run_id = item.run_id
            if run_id in self._runs:
                continue
            agent = self.agents.get(item.agent) or Agent(name=item.agent)
            if item.message is None:
                await self._end_found(item, "failed", "its input message is not in the log")
                done["failed"].append(run_id)
            elif item.started is None:
                await self._requeue(item, agent)
                done["queued"].append(run_id)
            elif run_id in interrupted:
                await self._end_found(item, "queue", "interrupted by a new message")
                done["interrupted"].append(run_id)
            elif agent.on_crash == "interrupt":
                await self._end_found(
                    item, "recovery", "interrupted: the process stopped before the run finished"
                )
                done["interrupted"].append(run_id)
            elif item.resume is not None and item.resume.attempt > MAX_RESUME_ATTEMPTS:
                await self._end_found(
                    item,
                    "failed",
                    f"the run was resumed {MAX_RESUME_ATTEMPTS} times after a restart and the "
                    "process stopped each time before it got further; it was given up",
                )
                done["failed"].append(run_id)
            else:
                await self._requeue(item, agent)
                done["resumed"].append(run_id)
        for item in found:
            steer_into = item.queued.data.steer_into if item.queued is not None else None
            joined = self._runs.get(steer_into or "")
            queued = self._runs.get(item.run_id)
            if joined is not None and queued is not None and queued.task is None:
                joined.steer(queued)
        for sid in list(self._lanes):
            self._advance(sid)
        return done

    async def _requeue(self, item: Unfinished, agent: Agent) -> None:
        """Put a run the log shows unfinished back in its session's lane (a run without a
        session starts at once)."""
        assert item.message is not None
        head: Event = item.queued or item.started  # type: ignore[assignment]
        overrides = item.queued.data.overrides if item.queued is not None else {}
        agent = agent.evolve(**{k: v for k, v in overrides.items() if k in OVERRIDABLE})
        who = Principal(tenant_id=head.tenant_id or "default", user_id=head.user_id or "runtime")
        model = (item.started.data.model if item.started else None) or (
            item.queued.data.model if item.queued else None
        )
        mode: Literal["plan", "act"] | None
        if item.started is not None:
            mode = item.mode
        else:
            assert item.queued is not None
            mode = "plan" if item.queued.data.mode == "plan" else "act"
        session = None
        history: list[Message] = []
        if item.session_id is not None:
            session = SessionView(id=item.session_id, user_id=who.user_id, tenant_id=who.tenant_id)
        else:
            history = list(item.queued.data.history) if item.queued is not None else []
            if item.started is not None:
                events = await self.services.store.read_stream(item.stream)
                history += conversation(events)
        run = self._new_run(
            agent,
            item.message,
            session,
            history,
            mode,
            model,
            who,
            run_id=item.run_id,
            input_id=item.input_id,
            resume=item.resume if item.started is not None else None,
        )
        if session is None:
            run.start()
            return
        self._lanes.setdefault(session.id, _Lane()).waiting.append(run)

    async def _end_found(self, item: Unfinished, by: str, reason: str) -> None:
        """Record the end of a run found unfinished that will not go on: cancelled
        (``by`` who), or failed (``by`` is ``failed``). The calls its last answer left open
        are answered, so its session's conversation stays one providers accept."""
        head: Event = item.started or item.queued  # type: ignore[assignment]
        envelope = {
            "stream": head.stream_name,
            "session_id": head.session_id,
            "run_id": item.run_id,
            "agent_id": head.agent_id or item.agent,
            "user_id": head.user_id,
            "tenant_id": head.tenant_id,
            "correlation_id": item.run_id,
        }
        events: list[Event] = [
            MessageSentEvent(
                **envelope,
                data=MessageSent(
                    message=Message(
                        role="tool",
                        content=f"{call.name} did not finish: {reason}.",
                        tool_call_id=call.id,
                        name=call.name,
                        metadata={"is_error": True},
                    )
                ),
            )
            for call in item.calls
        ]
        if by == "failed":
            events.append(
                RunFailedEvent(
                    **envelope,
                    data=RunFailed(
                        error=ErrorInfo(code="run_abandoned", message=reason),
                        usage=item.resume.usage if item.resume else Usage(),
                        iterations=item.resume.iterations if item.resume else 0,
                    ),
                )
            )
        else:
            events.append(
                RunCancelledEvent(**envelope, data=RunCancelled(reason=reason, cancelled_by=by))
            )
        if item.started is not None:
            state = item.last_state
            path: list[LifecycleState] = ["error"] if by == "failed" else ["stopping", "stopped"]
            for to_state in path:
                if state is None or is_legal(state, to_state):
                    events.append(
                        AgentLifecycleEvent(
                            **envelope,
                            data=AgentLifecycle(
                                agent=item.agent, from_state=state, to_state=to_state, reason=reason
                            ),
                        )
                    )
                    state = to_state
        await self.services.bus.publish_batch(events)
        if self.sessions is not None and item.session_id is not None:
            await self.sessions.refresh(item.session_id)

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
        """Stop taking messages and leave every run as the log will have it after the
        restart: runs in flight stop at their next safe point (or, after ``grace`` seconds,
        default ``shutdown_timeout_secs``, where they are) with what they completed written
        and nothing more, so the next start resumes them; runs waiting for an approval are
        left at once, their requests still pending; queued runs stay queued. Nothing is
        recorded as ended. Returns the ids of the runs left."""
        self._closing = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        waiting: set[str] = set()
        if self.services.keep_approvals is not None:
            waiting = set(self.services.keep_approvals())
        runs = list(self._runs.values())
        for run in runs:
            if run.task is None:
                run.end_unstarted("interrupted")  # still queued in the log
            elif run.id in waiting:
                run.leave_now()
            else:
                run.leave()
        tasks = [run.task for run in runs if run.task is not None and not run.task.done()]
        if tasks:
            _, pending = await asyncio.wait(
                tasks, timeout=self.shutdown_timeout_secs if grace is None else grace
            )
            for run in runs:
                if run.task in pending:
                    run.leave_now()
            if pending:
                await asyncio.wait(pending, timeout=5.0)
        if self.sessions is not None:
            await self.sessions.drain()  # the session records of the runs that ended
        return [run.id for run in runs]


def _view_of(session: Session) -> SessionView:
    """What a run needs of ``session``."""
    return SessionView(
        id=session.id,
        user_id=session.user_id,
        tenant_id=session.tenant_id,
        channel=session.channel,
        context=dict(session.context),
        rules=dict(session.permissions.rules),
        tools=tuple(ref.name for ref in session.tools),
        sandbox=session.sandbox,
    )


def result_of(record: RunRecord) -> RunResult:
    """A run's outcome as its record tells it (`RunResult` of a run not in this process)."""
    status: Any = record.status if record.ended else "interrupted"
    error = None
    if record.error is not None:
        error = ErrorInfo(
            code=str(record.error.get("code", "error")),
            message=str(record.error.get("message", "")),
            details=dict(record.error.get("details") or {}),
        )
    elif not record.ended:
        error = ErrorInfo(
            code="run_interrupted",
            message="the process stopped during the run; it goes on after the restart",
        )
    return RunResult(
        run_id=record.run_id,
        agent=record.agent,
        session_id=record.session_id,
        status=status,
        output=Message(role="assistant", content=record.output) if record.output else None,
        usage=record.usage,
        cost_usd=record.cost_usd,
        iterations=record.iterations,
        tool_calls=len(record.tool_calls),
        error=error,
        duration_ms=record.latency_ms or 0.0,
    )
