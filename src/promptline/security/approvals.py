"""Approvals: a tool call that needs a person waits here until someone answers or time runs out.

The request and its answer are events (``permission_request`` -> ``permission_granted`` /
``permission_denied``), written to the log before anything acts on them. What is pending is
read back from the log, so requests outlive a restart and can still be answered.

A *question* (an MCP server's elicitation, ``mcp.<server>:elicitation``) waits the same way,
but its answer carries content a person fills in, checked against the schema it was asked
with (see `ApprovalBroker.ask`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

from promptline.core.clock import Clock, SystemClock
from promptline.core.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    ServiceUnavailableError,
)
from promptline.core.events import (
    Event,
    PermissionDenied,
    PermissionDeniedEvent,
    PermissionGranted,
    PermissionGrantedEvent,
    PermissionRequest,
    PermissionRequestEvent,
)
from promptline.core.ids import new_id
from promptline.core.tool_calls import CallScope
from promptline.events.protocols import EventBus, EventFilter, EventStore

__all__ = [
    "CANCELLED",
    "EXPIRED",
    "GRANT_SCOPES",
    "QUESTION_SUFFIX",
    "TIMEOUT",
    "ApprovalBroker",
    "ApprovalOutcome",
    "ApprovalRecord",
    "ApprovalRequest",
    "DecisionListener",
    "GrantScope",
    "is_question",
]

GrantScope = Literal["once", "session", "always"]
GRANT_SCOPES: tuple[GrantScope, ...] = get_args(GrantScope)

TIMEOUT = "timeout"
"""``decided_by`` of a request whose waiting call got no answer in time."""
EXPIRED = "expired"
"""``decided_by`` of a request found unanswered past its time with nobody waiting (a restart)."""
CANCELLED = "cancelled"
"""``decided_by`` of a request withdrawn because the call waiting on it was cancelled."""

QUESTION_SUFFIX = ":elicitation"
"""How the name of a question ends (``mcp.<server>:elicitation``): no tool name can, as tool
names hold no ``:``."""

_TYPES = frozenset({"permission_request", "permission_granted", "permission_denied"})
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """A recorded permission request: what waits, for whom, and until when."""

    request_id: str
    tool: str
    arguments: dict[str, Any]
    reason: str | None
    requested_at: datetime
    expires_at: datetime
    call_id: str | None = None
    destructive: bool = False
    binding: str | None = None
    session_id: str | None = None
    run_id: str | None = None
    user_id: str | None = None
    tenant_id: str | None = None
    agent_id: str | None = None
    correlation_id: str | None = None
    stream: str = ""
    event_id: str = ""
    position: int = 0


@dataclass(frozen=True, slots=True)
class ApprovalOutcome:
    """The recorded answer to a request. ``scope`` is ``once`` for every refusal."""

    request: ApprovalRequest
    approved: bool
    scope: GrantScope
    decided_by: str | None
    reason: str | None
    decided_at: datetime
    content: dict[str, Any] | None = None
    """The answer's content, for a question answered yes (given to the call waiting here;
    the event log records that it was answered, not what)."""

    @property
    def request_id(self) -> str:
        return self.request.request_id

    @property
    def tool(self) -> str:
        return self.request.tool

    @property
    def timed_out(self) -> bool:
        """True when nobody answered in time (``timeout`` or ``expired``)."""
        return not self.approved and self.decided_by in (TIMEOUT, EXPIRED)


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    """A request and its outcome (``None`` while it is undecided)."""

    request: ApprovalRequest
    outcome: ApprovalOutcome | None

    @property
    def status(self) -> Literal["pending", "granted", "denied"]:
        if self.outcome is None:
            return "pending"
        return "granted" if self.outcome.approved else "denied"


DecisionListener = Callable[[ApprovalOutcome], Awaitable[None]]
"""Called with every recorded outcome, before the waiting call (if any) resumes."""


def is_question(tool: str) -> bool:
    """True when ``tool`` names a question (its answer carries content), not a tool call."""
    return tool.endswith(QUESTION_SUFFIX)


class _Entry:
    __slots__ = ("outcome", "request")

    def __init__(self, request: ApprovalRequest) -> None:
        self.request = request
        self.outcome: ApprovalOutcome | None = None


class ApprovalBroker:
    """Asks for permission over the event bus and waits for the answer.

    `request` records a ``permission_request`` and suspends only its caller until `respond`
    (from anywhere in the process) records a decision, or the request's time passes, which
    records ``permission_denied`` by ``timeout``. `pending` and `respond` read the log, so
    requests made before a restart are listed and can be answered (the decision is then
    recorded, and `on_decision` remembers a grant, though no call waits for it). Call
    `recover` on start to expire what is overdue and time the rest.

    Decisions are serialised within the process, so a request is decided exactly once here;
    the first decision in the log counts if two processes answer at the same moment.
    """

    def __init__(
        self,
        bus: EventBus,
        store: EventStore,
        *,
        timeout: float = 300.0,
        clock: Clock | None = None,
        on_decision: DecisionListener | None = None,
    ) -> None:
        self._bus = bus
        self._store = store
        self._clock: Clock = clock or SystemClock()
        self._on_decision = on_decision
        self.timeout = timeout
        self._index: dict[str, _Entry] = {}
        self._cursor = 0
        self._lock = asyncio.Lock()
        self._waiters: dict[str, asyncio.Future[ApprovalOutcome]] = {}
        self._settling: set[str] = set()  # decided here; the listener has not run yet
        self._timers: dict[str, asyncio.Task[None]] = {}
        self._closed = False
        self._keeping = False
        # Questions asked by calls of this process: request id -> the schema their content
        # is checked against (None: a question answered without content).
        self._questions: dict[str, dict[str, Any] | None] = {}

    @property
    def timeout(self) -> float:
        """Seconds a new request waits for an answer (``permissions.approval_timeout_secs``)."""
        return self._timeout

    @timeout.setter
    def timeout(self, value: float) -> None:
        if value <= 0:
            raise InvalidInputError(f"the approval timeout must be > 0 seconds, got {value}")
        self._timeout = float(value)

    # -- asking -----------------------------------------------------------------------------

    async def request(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        scope: CallScope,
        reason: str | None = None,
        *,
        call_id: str | None = None,
        destructive: bool = False,
        expires_after: float | None = None,
        binding: str | None = None,
    ) -> ApprovalOutcome:
        """Record a request for ``tool`` and wait for its outcome (approved or not).

        ``binding`` narrows a ``session`` or ``always`` answer to calls with the same binding
        (a shell command's argv chain, folder and scripts; see `GrantStore`).

        No answer within ``expires_after`` seconds (default: `timeout`) is a refusal by
        ``timeout``. If the caller is cancelled while waiting, the request is withdrawn
        (denied by ``cancelled``) so it leaves the pending list, unless the process is
        stopping (`keep_pending`): then it stays pending for after the restart.
        """
        return await self._ask(
            tool,
            arguments,
            scope,
            reason,
            call_id=call_id,
            destructive=destructive,
            expires_after=expires_after,
            binding=binding,
        )

    async def ask(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        scope: CallScope,
        reason: str | None = None,
        *,
        schema: Mapping[str, Any] | None,
        expires_after: float | None = None,
    ) -> ApprovalOutcome:
        """Record a question (``tool`` ends in `QUESTION_SUFFIX`) and wait for its answer.

        A yes answer's content must match ``schema`` (a JSON schema of an object; None: the
        answer takes no content) and is handed over in the outcome's ``content``. Only this
        process can hand it over, so only this process takes the answer (`respond`), and a
        cancelled wait always withdraws the question (the call that asked cannot outlive a
        restart to read an answer). Otherwise as `request`.
        """
        if not is_question(tool):
            raise InvalidInputError(
                f"{tool!r} is not the name of a question (it must end in {QUESTION_SUFFIX!r})"
            )
        checked = None if schema is None else dict(schema)
        if checked is not None:
            _schema_checker(checked)  # a schema that is no JSON schema fails here, not later
        return await self._ask(
            tool, arguments, scope, reason, expires_after=expires_after, question=(checked,)
        )

    async def _ask(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        scope: CallScope,
        reason: str | None,
        *,
        call_id: str | None = None,
        destructive: bool = False,
        expires_after: float | None = None,
        question: tuple[dict[str, Any] | None] | None = None,
        binding: str | None = None,
    ) -> ApprovalOutcome:
        if self._closed:
            raise ServiceUnavailableError("the approval broker is closed")
        wait = self._timeout if expires_after is None else expires_after
        if wait <= 0:
            raise InvalidInputError(f"an approval timeout must be > 0 seconds, got {wait}")
        now = self._clock.now()
        request_id = new_id("perm_")
        event = PermissionRequestEvent(
            stream=scope.session_id or scope.run_id or "",
            ts=now,
            session_id=scope.session_id,
            run_id=scope.run_id,
            user_id=scope.user_id,
            tenant_id=scope.tenant_id,
            agent_id=scope.agent,
            correlation_id=scope.correlation_id,
            data=PermissionRequest(
                request_id=request_id,
                tool=tool,
                arguments=dict(arguments),
                reason=reason,
                call_id=call_id,
                destructive=destructive,
                expires_at=now + timedelta(seconds=wait),
                binding=binding,
            ),
        )
        waiter: asyncio.Future[ApprovalOutcome] = asyncio.get_running_loop().create_future()
        self._waiters[request_id] = waiter
        if question is not None:
            self._questions[request_id] = question[0]
        try:
            stored = await self._bus.publish(event)
            recorded = replace(
                self._request_of(event), stream=stored.stream_name, position=stored.position
            )
            entry = self._index.setdefault(request_id, _Entry(recorded))
            self._schedule(entry.request)
            return await self._wait(entry, waiter, keep=question is None)
        finally:
            self._waiters.pop(request_id, None)
            self._questions.pop(request_id, None)

    async def wait_for(self, request_id: str) -> ApprovalOutcome:
        """The outcome of a request recorded earlier (by this process before a restart, say),
        waiting for it while it is pending; `NotFoundError` for an unknown request. Like a
        `request`, a wait that is cancelled withdraws the request."""
        if self._closed:
            raise ServiceUnavailableError("the approval broker is closed")
        await self._refresh()
        entry = self._index.get(request_id)
        if entry is None:
            raise _not_found(request_id)
        if entry.outcome is not None:
            return entry.outcome
        if request_id in self._waiters:
            raise ConflictError(
                f"a call already waits for permission request {request_id}",
                hint="one call waits for each request",
                request_id=request_id,
            )
        waiter: asyncio.Future[ApprovalOutcome] = asyncio.get_running_loop().create_future()
        self._waiters[request_id] = waiter
        try:
            self._schedule(entry.request)
            return await self._wait(entry, waiter)
        finally:
            self._waiters.pop(request_id, None)

    def keep_pending(self) -> list[str]:
        """The process is stopping: from now on a call whose wait is cut short leaves its
        request pending (to be answered after the restart) instead of withdrawing it.
        Returns the run ids of the calls waiting now."""
        self._keeping = True
        runs = []
        for request_id in self._waiters:
            entry = self._index.get(request_id)
            if entry is not None and entry.request.run_id is not None:
                runs.append(entry.request.run_id)
        return runs

    async def _wait(
        self, entry: _Entry, waiter: asyncio.Future[ApprovalOutcome], *, keep: bool = True
    ) -> ApprovalOutcome:
        try:
            return await asyncio.shield(waiter)
        except asyncio.CancelledError:
            if entry.outcome is None and not (keep and self._keeping):
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._withdraw(entry.request.request_id))
            raise

    # -- answering --------------------------------------------------------------------------

    async def respond(
        self,
        request_id: str,
        *,
        approve: bool,
        scope: GrantScope = "once",
        decided_by: str | None = None,
        reason: str | None = None,
        content: Mapping[str, Any] | None = None,
    ) -> ApprovalOutcome:
        """Record the answer to a request and wake the call waiting on it, if any.

        `NotFoundError` for an unknown request; `ConflictError` for one already decided or
        past its time (an overdue request is recorded as expired first). ``scope`` says how
        far a grant reaches: ``once`` (this call), ``session`` (this tool for the rest of
        the session) or ``always`` (this tool for this user from now on).

        ``content`` answers a question (see `ask`): a yes must carry content that matches
        its schema (`InvalidInputError` saying what does not, and the question stays
        pending); a no carries none. A question asked by another process (or before a
        restart) is a `ConflictError` here: its answer could not reach the server that asked.
        """
        if scope not in GRANT_SCOPES:
            raise InvalidInputError(
                f"unknown grant scope {scope!r}", hint=f"use one of {', '.join(GRANT_SCOPES)}"
            )
        expired: ApprovalOutcome | None = None
        async with self._lock:
            entry = await self._undecided(request_id)
            if self._clock.now() >= entry.request.expires_at:
                expired = await self._record(entry, False, "once", self._expiry_by(entry), None)
                outcome = expired
            elif is_question(entry.request.tool):
                answer = self._answer(entry.request, approve, scope, content)
                outcome = await self._record(
                    entry, approve, "once", decided_by, reason, content=answer
                )
            else:
                if content is not None:
                    raise InvalidInputError(
                        f"permission request {request_id} ({entry.request.tool}) is answered "
                        "yes or no; it takes no content",
                        hint="leave content out",
                        field="content",
                    )
                if approve and scope == "session" and entry.request.session_id is None:
                    raise InvalidInputError(
                        f"permission request {request_id} belongs to no session, so it cannot "
                        "be granted for the session",
                        hint="answer with scope 'once' or 'always'",
                    )
                outcome = await self._record(
                    entry, approve, scope if approve else "once", decided_by, reason
                )
        await self._settled(outcome)
        if expired is not None:
            raise _conflict(expired)
        return outcome

    # -- reading ----------------------------------------------------------------------------

    async def pending(self, session_id: str | None = None) -> list[ApprovalRequest]:
        """Undecided requests whose time has not passed (of one session, or all), oldest
        first; read from the log, so requests made before a restart are included."""
        await self._refresh()
        now = self._clock.now()
        found = [
            e.request
            for e in self._index.values()
            if e.outcome is None
            and e.request.expires_at > now
            and (session_id is None or e.request.session_id == session_id)
        ]
        return sorted(found, key=lambda r: (r.position, r.requested_at))

    async def get(self, request_id: str) -> ApprovalRecord:
        """A request and its outcome so far; `NotFoundError` if there is no such request."""
        await self._refresh()
        entry = self._index.get(request_id)
        if entry is None:
            raise _not_found(request_id)
        return ApprovalRecord(entry.request, entry.outcome)

    # -- time -------------------------------------------------------------------------------

    async def expire_due(self) -> list[ApprovalOutcome]:
        """Record every undecided request whose time has passed as denied (``timeout`` when a
        call waits on it, ``expired`` otherwise); returns what was recorded."""
        await self._refresh()
        now = self._clock.now()
        due = [
            rid
            for rid, e in self._index.items()
            if e.outcome is None and e.request.expires_at <= now
        ]
        outcomes = []
        for request_id in due:
            outcome = await self._expire(request_id)
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes

    async def recover(self) -> list[ApprovalOutcome]:
        """On start: expire the requests whose time passed while nothing ran, and time the
        others so they expire when due. Returns the expired ones."""
        expired = await self.expire_due()
        for entry in self._index.values():
            if entry.outcome is None:
                self._schedule(entry.request)
        return expired

    async def close(self) -> None:
        """Stop the timers; calls still waiting get `ServiceUnavailableError`. Undecided
        requests stay pending in the log for the next start."""
        self._closed = True
        timers = list(self._timers.values())
        self._timers.clear()
        for task in timers:
            task.cancel()
        for task in timers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(
                    ServiceUnavailableError(
                        "the approval broker stopped before the request was answered"
                    )
                )

    # -- internals --------------------------------------------------------------------------

    async def _refresh(self) -> None:
        events = await self._store.read_all(EventFilter(types=_TYPES), from_position=self._cursor)
        for event in events:
            self._fold(event)
            self._cursor = max(self._cursor, event.position)

    def _fold(self, event: Event) -> None:
        if isinstance(event, PermissionRequestEvent):
            self._index.setdefault(event.data.request_id, _Entry(self._request_of(event)))
        elif isinstance(event, PermissionGrantedEvent | PermissionDeniedEvent):
            entry = self._index.get(event.data.request_id)
            if entry is not None and entry.outcome is None:
                entry.outcome = _outcome_of(entry.request, event)
                # Decided by another process: a call waiting here learns it now. (One decided
                # here is woken by `_settled`, after the listener.)
                request_id = entry.request.request_id
                waiter = self._waiters.get(request_id)
                if waiter is not None and not waiter.done() and request_id not in self._settling:
                    waiter.set_result(entry.outcome)

    def _request_of(self, event: PermissionRequestEvent) -> ApprovalRequest:
        data = event.data
        expires = data.expires_at or event.ts + timedelta(seconds=self._timeout)
        return ApprovalRequest(
            request_id=data.request_id,
            tool=data.tool,
            arguments=dict(data.arguments),
            reason=data.reason,
            requested_at=event.ts,
            expires_at=expires,
            call_id=data.call_id,
            destructive=data.destructive,
            binding=data.binding,
            session_id=event.session_id,
            run_id=event.run_id,
            user_id=event.user_id,
            tenant_id=event.tenant_id,
            agent_id=event.agent_id,
            correlation_id=event.correlation_id,
            stream=event.stream_name,
            event_id=event.id,
            position=event.position,
        )

    async def _undecided(self, request_id: str) -> _Entry:
        """The entry of an undecided request (call with the lock held)."""
        await self._refresh()
        entry = self._index.get(request_id)
        if entry is None:
            raise _not_found(request_id)
        if entry.outcome is not None:
            raise _conflict(entry.outcome)
        return entry

    def _answer(
        self,
        request: ApprovalRequest,
        approve: bool,
        scope: GrantScope,
        content: Mapping[str, Any] | None,
    ) -> dict[str, Any] | None:
        """The content of an answer to a question, checked; `InvalidInputError` or
        `ConflictError` saying why it cannot be taken."""
        rid = request.request_id
        if rid not in self._questions or rid not in self._waiters:
            raise ConflictError(
                f"permission request {rid} ({request.tool}) was asked by another PromptLine "
                "process, or before a restart: the answer cannot reach the MCP server from "
                "here",
                hint=f"answer it where it was asked; unanswered, it is refused at "
                f"{_when(request.expires_at)}",
                request_id=rid,
            )
        if not approve:
            if content is not None:
                raise InvalidInputError(
                    f"a refusal of {rid} ({request.tool}) carries no content",
                    hint="leave content out, or answer yes with it",
                    field="content",
                )
            return None
        if scope != "once":
            raise InvalidInputError(
                f"{rid} ({request.tool}) is a question: an answer reaches it alone, so its "
                f"scope is once, not {scope}",
                hint="answer with scope 'once'",
                field="scope",
            )
        schema = self._questions[rid]
        if schema is None:
            if content:
                raise InvalidInputError(
                    f"{rid} ({request.tool}) is answered yes or no; it takes no content",
                    hint="leave content out",
                    field="content",
                )
            return None
        return _checked_content(rid, schema, content)

    def _expiry_by(self, entry: _Entry) -> str:
        return TIMEOUT if entry.request.request_id in self._waiters else EXPIRED

    async def _record(
        self,
        entry: _Entry,
        approved: bool,
        scope: GrantScope,
        decided_by: str | None,
        reason: str | None,
        *,
        content: dict[str, Any] | None = None,
    ) -> ApprovalOutcome:
        """Publish the decision, then note it (call with the lock held)."""
        req = entry.request
        now = self._clock.now()
        envelope: dict[str, Any] = {
            "stream": req.stream,
            "ts": now,
            "session_id": req.session_id,
            "run_id": req.run_id,
            "user_id": req.user_id,
            "tenant_id": req.tenant_id,
            "agent_id": req.agent_id,
            "correlation_id": req.correlation_id,
            "causation_id": req.event_id or None,
        }
        event: PermissionGrantedEvent | PermissionDeniedEvent
        if approved:
            event = PermissionGrantedEvent(
                **envelope,
                data=PermissionGranted(
                    request_id=req.request_id, tool=req.tool, scope=scope, decided_by=decided_by
                ),
            )
        else:
            event = PermissionDeniedEvent(
                **envelope,
                data=PermissionDenied(
                    request_id=req.request_id,
                    tool=req.tool,
                    reason=reason or _default_reason(req, decided_by),
                    decided_by=decided_by,
                ),
            )
        self._settling.add(req.request_id)
        try:
            await self._bus.publish(event)
        except BaseException:
            self._settling.discard(req.request_id)
            raise
        outcome = ApprovalOutcome(
            request=req,
            approved=approved,
            scope=scope,
            decided_by=decided_by,
            reason=event.data.reason if isinstance(event, PermissionDeniedEvent) else reason,
            decided_at=now,
            content=content,
        )
        entry.outcome = outcome
        return outcome

    async def _settled(self, outcome: ApprovalOutcome) -> None:
        """After a decision is recorded: stop its timer, tell the listener, wake the caller."""
        request_id = outcome.request_id
        timer = self._timers.pop(request_id, None)
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()
        try:
            if self._on_decision is not None:
                await self._on_decision(outcome)
        finally:
            self._settling.discard(request_id)
            waiter = self._waiters.get(request_id)
            if waiter is not None and not waiter.done():
                waiter.set_result(outcome)

    async def _expire(self, request_id: str) -> ApprovalOutcome | None:
        async with self._lock:
            await self._refresh()
            entry = self._index.get(request_id)
            if entry is None or entry.outcome is not None:
                return None
            if self._clock.now() < entry.request.expires_at:
                return None
            outcome = await self._record(entry, False, "once", self._expiry_by(entry), None)
        await self._settled(outcome)
        return outcome

    async def _withdraw(self, request_id: str) -> None:
        async with self._lock:
            entry = self._index.get(request_id)
            if entry is None or entry.outcome is not None:
                return
            outcome = await self._record(entry, False, "once", CANCELLED, None)
        await self._settled(outcome)

    def _schedule(self, request: ApprovalRequest) -> None:
        request_id = request.request_id
        if self._closed or request_id in self._timers:
            return
        task = asyncio.get_running_loop().create_task(self._expire_when_due(request_id))
        self._timers[request_id] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._timers.get(request_id) is done:
                del self._timers[request_id]

        task.add_done_callback(forget)

    async def _expire_when_due(self, request_id: str) -> None:
        # Sleeps in loop time but judges by the injected clock, so a clock that has not yet
        # reached the expiry time (or was set back) only reschedules.
        while True:
            entry = self._index.get(request_id)
            if entry is None or entry.outcome is not None:
                return
            remaining = (entry.request.expires_at - self._clock.now()).total_seconds()
            if remaining <= 0:
                break
            await asyncio.sleep(remaining)
        try:
            await self._expire(request_id)
        except Exception:  # the request stays pending; `recover` or a later answer settles it
            _log.exception("could not record the expiry of permission request %s", request_id)


def _outcome_of(
    request: ApprovalRequest, event: PermissionGrantedEvent | PermissionDeniedEvent
) -> ApprovalOutcome:
    if isinstance(event, PermissionGrantedEvent):
        return ApprovalOutcome(
            request, True, event.data.scope, event.data.decided_by, None, event.ts
        )
    return ApprovalOutcome(
        request, False, "once", event.data.decided_by, event.data.reason, event.ts
    )


def _default_reason(request: ApprovalRequest, decided_by: str | None) -> str | None:
    when = _when(request.expires_at)
    if decided_by == TIMEOUT:
        return f"no answer before {when}; an unanswered request counts as denied"
    if decided_by == EXPIRED:
        return f"no answer before {when} (found overdue on start); counts as denied"
    if decided_by == CANCELLED:
        return "the call waiting for this answer was cancelled"
    return None


def _when(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _not_found(request_id: str) -> NotFoundError:
    return NotFoundError(
        f"there is no permission request {request_id!r}",
        hint="list the open requests with pending()",
        request_id=request_id,
    )


def _conflict(outcome: ApprovalOutcome) -> ConflictError:
    req = outcome.request
    what = f"permission request {req.request_id} ({req.tool})"
    at = _when(outcome.decided_at)
    if outcome.approved:
        by = f" by {outcome.decided_by}" if outcome.decided_by else ""
        text = f"{what} was already granted ({outcome.scope}){by} at {at}"
    elif outcome.timed_out:
        text = f"{what} expired at {_when(req.expires_at)} without an answer and was refused"
    elif outcome.decided_by == CANCELLED:
        text = f"{what} was withdrawn at {at}: the call waiting for it was cancelled"
    else:
        by = f" by {outcome.decided_by}" if outcome.decided_by else ""
        text = f"{what} was already denied{by} at {at}"
    return ConflictError(
        text + "; an answer cannot be changed",
        hint="the model can call the tool again, which asks anew",
        request_id=req.request_id,
        status="granted" if outcome.approved else "denied",
        decided_by=outcome.decided_by,
    )


_ANSWER_VALUE = (str, int, float, bool, type(None))
_MAX_PROBLEMS = 3


def _schema_checker(schema: dict[str, Any]) -> Any:
    """A validator of ``schema``; `InvalidInputError` when it is not a JSON schema of an
    object."""
    from jsonschema import (  # type: ignore[import-untyped]
        Draft202012Validator,
        FormatChecker,
        SchemaError,
    )
    from jsonschema.validators import validator_for  # type: ignore[import-untyped]

    if schema.get("type", "object") != "object":
        raise InvalidInputError(
            f"a question's schema must describe an object, not {schema.get('type')!r}"
        )
    try:
        kind = validator_for(schema, default=Draft202012Validator)
        kind.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise InvalidInputError(
            f"a question's schema is not a valid JSON schema (at {where}: {exc.message})"
        ) from None
    return kind(schema, format_checker=FormatChecker())


def _checked_content(
    request_id: str, schema: dict[str, Any], content: Mapping[str, Any] | None
) -> dict[str, Any]:
    """``content`` (absent: empty) if it matches ``schema`` and holds only flat values (text,
    numbers, booleans, null, lists of text), as MCP answers do; `InvalidInputError` naming
    the problems otherwise."""
    if content is not None and not isinstance(content, Mapping):
        raise InvalidInputError(
            f"the answer to {request_id} must be an object of field values",
            field="content",
        )
    answer = dict(content or {})
    problems = []
    for name, value in answer.items():
        flat = isinstance(value, _ANSWER_VALUE) or (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        )
        if not flat:
            problems.append(f"{name}: must be text, a number, true/false, null or a list of text")
    errors = sorted(_schema_checker(schema).iter_errors(answer), key=lambda e: list(e.path))
    for error in errors:
        where = ".".join(str(p) for p in error.absolute_path)
        problems.append(f"{where}: {error.message}" if where else error.message)
    if problems:
        more = len(problems) - _MAX_PROBLEMS
        raise InvalidInputError(
            f"the answer to {request_id} does not match its questions: "
            + "; ".join(problems[:_MAX_PROBLEMS])
            + (f" (and {more} more)" if more > 0 else ""),
            hint="answer every required field with a value of its type",
            field="content",
        )
    return answer
