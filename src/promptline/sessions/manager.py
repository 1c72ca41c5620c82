"""`SessionManager`: create, read, append to, update, expire, export, import and search sessions.

Every change is an event published on the session's stream first; the ``sessions`` and
``session_messages`` tables are a projection of those events, written right after and
repaired from the log when a process died in between (`recover`).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from promptline.core.clock import Clock, SystemClock, to_micros
from promptline.core.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    PromptLineError,
)
from promptline.core.events import (
    Event,
    MessageReceived,
    MessageReceivedEvent,
    MessageSent,
    MessageSentEvent,
    SessionCreated,
    SessionCreatedEvent,
    SessionExpired,
    SessionExpiredEvent,
    SessionUpdated,
    SessionUpdatedEvent,
)
from promptline.core.ids import new_id
from promptline.core.messages import Message
from promptline.core.names import MAX_CHANNEL
from promptline.events.protocols import EventBus, EventFilter, EventStore
from promptline.sessions.checkpoint import Watermark, read_checkpoint, write_checkpoint
from promptline.sessions.export import export_document, parse_document
from promptline.sessions.limits import SessionLimits
from promptline.sessions.locks import KeyedLocks
from promptline.sessions.models import (
    PermissionSet,
    Principal,
    SearchHit,
    Session,
    SessionStatus,
    ToolRef,
)
from promptline.sessions.projection import (
    DELETED_REASON,
    SESSION_EVENT_TYPES,
    SessionHead,
    fold,
    head_from_row,
)
from promptline.sessions.search import query_words, search_messages
from promptline.sessions.tables import (
    FULL_COLUMNS,
    NewMessage,
    StaleHeadError,
    load_head,
    load_heads,
    load_history,
    write_head,
)
from promptline.sessions.validation import (
    MAX_SESSION_ID,
    check_json_object,
    check_message,
    check_name,
    check_permissions,
    check_sandbox,
    check_tools,
    check_when,
)
from promptline.storage.database import translate_error, write_transaction
from promptline.storage.schema import sessions as sessions_table

DEFAULT_TTL = timedelta(days=30)
"""How long a session lives when neither the call nor the manager says otherwise."""

_READ_PAGE = 500
"""Events read from the log per query while catching up or recovering."""

_CATCH_UP_ATTEMPTS = 5
"""How often a catch-up retries after another writer projected the same session first."""

_STATUSES = ("active", "expired")

_log = logging.getLogger(__name__)


class SessionManager:
    """Sessions of every tenant and user, kept as a projection of the event log.

    Writes publish an event on the session's stream (stream = session id) and then project
    it; in one process the writes of one session are serialized. Reads and writes check the
    `Principal`: a user reaches only its own sessions (in its own tenant), an admin every
    session of every tenant. What cannot be seen does not exist (`NotFoundError`).

    ``store`` defaults to the event store of ``engine`` (the log the bus appends to);
    ``default_ttl`` of None makes sessions live until an update gives them an expiry.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        bus: EventBus,
        *,
        clock: Clock = SystemClock(),
        default_ttl: timedelta | None = DEFAULT_TTL,
        store: EventStore | None = None,
        limits: SessionLimits = SessionLimits(),
    ) -> None:
        if default_ttl is not None:
            _check_ttl(default_ttl, "default_ttl")
        if store is None:
            from promptline.events.factory import create_event_store

            store = create_event_store(engine)
        self._engine = engine
        self._bus = bus
        self._store = store
        self._clock = clock
        self._default_ttl = default_ttl
        self._limits = limits
        self._locks = KeyedLocks()
        self._watermark = Watermark()
        self._pending: dict[str, int] = {}
        """Sessions the projector is to bring up to date, with the watermark floor each holds."""
        self._projector: asyncio.Task[None] | None = None
        self._batch: dict[str, int] = {}
        """The sessions the projector is applying right now."""
        self.admit: Callable[[Principal], Awaitable[None]] | None = None
        """Called as a session is created or imported (with its owner), before anything of
        it is written: raises to refuse it (the quotas of its user and tenant)."""

    @property
    def limits(self) -> SessionLimits:
        """The size limits this manager enforces."""
        return self._limits

    # -- creating and changing ------------------------------------------------------------

    async def create(
        self,
        principal: Principal,
        *,
        channel: str,
        context: dict[str, Any] | None = None,
        tools: Sequence[ToolRef | dict[str, Any] | str] | None = None,
        permissions: PermissionSet | dict[str, str] | None = None,
        metadata: dict[str, Any] | None = None,
        ttl: timedelta | None = None,
        session_id: str | None = None,
        sandbox: str | None = None,
    ) -> Session:
        """Open a session owned by ``principal``'s tenant and user; publishes ``session_created``.

        ``ttl`` overrides the manager's ``default_ttl``. ``session_id`` (letters, digits,
        ``_ . : @ -``, at most 64) is for callers that key sessions themselves; an id in use
        raises `ConflictError`. ``sandbox`` is the session's own sandbox (see
        `Session.sandbox`); who may choose it is the caller's business (the gateway asks for
        the scope ``sessions:sandbox``).
        """
        principal = _check_principal(principal)
        channel = check_name(channel, "channel", max_length=MAX_CHANNEL)
        limit = self._limits.max_field_bytes
        context = check_json_object({} if context is None else context, "context", max_bytes=limit)
        metadata = check_json_object(
            {} if metadata is None else metadata, "metadata", max_bytes=limit
        )
        refs = check_tools([] if tools is None else tools, max_bytes=limit)
        rules = check_permissions(
            PermissionSet() if permissions is None else permissions, max_bytes=limit
        )
        if ttl is not None:
            _check_ttl(ttl, "ttl")
        if sandbox is not None:
            sandbox = check_sandbox(sandbox)
        ttl = ttl if ttl is not None else self._default_ttl
        sid = new_id("ses_") if session_id is None else _check_new_id(session_id)
        if self.admit is not None:
            await self.admit(principal)
        now = self._clock.now()
        event = SessionCreatedEvent(
            stream=sid,
            session_id=sid,
            tenant_id=principal.tenant_id,
            user_id=principal.user_id,
            ts=now,
            data=SessionCreated(
                channel=channel,
                expires_at=None if ttl is None else now + ttl,
                context=context,
                tools=[ref.model_dump() for ref in refs],
                permissions=rules.model_dump(),
                metadata=metadata,
                sandbox=sandbox,
            ),
        )
        async with self._locks.hold(sid):
            if session_id is not None:
                # A fresh id (a ULID made here) is nobody's yet: no reads to prove it. Either
                # way, the publish expects an empty stream and fails on a taken one.
                await self._ensure_unused(sid, importing=False)
            head = await self._write(None, [event], expected_seq=0, importing=False)
        assert head is not None
        return head.to_session()

    async def count_active(self, tenant_id: str, user_id: str | None = None) -> int:
        """The sessions of ``tenant_id`` (of its user ``user_id``, when given) that are
        neither deleted nor expired (nor past their expiry time)."""
        t = sessions_table.c
        now = to_micros(self._clock.now())
        conditions: builtins.list[Any] = [
            t.status == "active",
            t.tenant_id == tenant_id,
            or_(t.expires_at.is_(None), t.expires_at > now),
        ]
        if user_id is not None:
            conditions.append(t.user_id == user_id)
        query = select(func.count()).select_from(sessions_table).where(*conditions)
        await self._flush_pending()
        async with self._reading("counting sessions") as conn:
            return int((await conn.execute(query)).scalar_one())

    async def append_message(
        self,
        session_id: str,
        message: Message | dict[str, Any],
        principal: Principal,
        *,
        channel: str | None = None,
    ) -> Message:
        """Add ``message`` to the end of the session's history and return it.

        Publishes ``message_received`` for a user message and ``message_sent`` for any other
        role. Costs the same however long the history is. An expired session refuses
        (`ConflictError`); so does a message over ``limits.max_message_bytes``.
        """
        principal = _check_principal(principal)
        msg, _ = check_message(message, max_bytes=self._limits.max_message_bytes)
        if channel is not None:
            channel = check_name(channel, "channel", max_length=MAX_CHANNEL)
        async with self._locks.hold(_check_id(session_id)):
            head = await self._visible_head(session_id, principal)
            self._ensure_writable(head)
            event: Event
            if msg.role == "user":
                event = MessageReceivedEvent(
                    **self._envelope(head), data=MessageReceived(message=msg, channel=channel)
                )
            else:
                event = MessageSentEvent(
                    **self._envelope(head), data=MessageSent(message=msg, channel=channel)
                )
            await self._write(head, [event])
        return msg

    async def update(
        self,
        session_id: str,
        principal: Principal,
        *,
        context: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        tools: Sequence[ToolRef | dict[str, Any] | str] | None = None,
        permissions: PermissionSet | dict[str, str] | None = None,
        expires_at: datetime | None = None,
        sandbox: str | None = None,
    ) -> Session:
        """Replace the given fields (None leaves a field as it is); publishes ``session_updated``.

        ``sandbox`` ``none`` takes back the session's own choice (it then tightens nothing).

        Returns the record without its history. An expired session refuses (`ConflictError`).
        """
        principal = _check_principal(principal)
        limit = self._limits.max_field_bytes
        data = SessionUpdated(
            context=None
            if context is None
            else check_json_object(context, "context", max_bytes=limit),
            metadata=None
            if metadata is None
            else check_json_object(metadata, "metadata", max_bytes=limit),
            tools=None
            if tools is None
            else [r.model_dump() for r in check_tools(tools, max_bytes=limit)],
            permissions=None
            if permissions is None
            else check_permissions(permissions, max_bytes=limit).model_dump(),
            expires_at=None if expires_at is None else check_when(expires_at, "expires_at"),
            sandbox=None if sandbox is None else check_sandbox(sandbox),
        )
        async with self._locks.hold(_check_id(session_id)):
            head = await self._visible_head(session_id, principal)
            if data != SessionUpdated():
                self._ensure_writable(head)
                await self._write(head, [SessionUpdatedEvent(**self._envelope(head), data=data)])
        return await self.get(session_id, principal, history_limit=0)

    async def expire_due(self, *, limit: int = 1000) -> builtins.list[str]:
        """Expire active sessions whose ``expires_at`` has come (at most ``limit`` per call).

        Publishes ``session_expired`` for each and returns their ids. Expired sessions keep
        all their data and stay readable, exportable and searchable.
        """
        limit = _check_limit(limit, "limit", maximum=100_000)
        now = self._clock.now()
        t = sessions_table.c
        query = (
            select(t.id)
            .where(t.status == "active", t.expires_at.is_not(None), t.expires_at <= to_micros(now))
            .order_by(t.expires_at, t.id)
            .limit(limit)
        )
        async with self._reading("finding sessions due to expire") as conn:
            due = builtins.list((await conn.execute(query)).scalars())
        expired: builtins.list[str] = []
        for sid in due:
            async with self._locks.hold(sid):
                async with self._reading(f"reading session {sid!r}") as conn:
                    head = await load_head(conn, sid)
                if head is None or head.status != "active" or not self._is_due(head):
                    continue  # changed since the query: extended, or expired by someone else
                event = SessionExpiredEvent(**self._envelope(head), data=SessionExpired())
                await self._write(head, [event])
            expired.append(sid)
        return expired

    async def delete(self, session_id: str, principal: Principal) -> None:
        """Delete a session the principal may see; `NotFoundError` otherwise.

        The log stays append-only: this publishes ``session_expired`` with reason
        ``deleted``, which the projection folds into status ``deleted``. From then on the
        session is invisible to every read (`get`, `list`, `search`, `export`; the same
        `NotFoundError` as an unknown id) and refuses every write; its events stay in the
        log (audit, replay) and its id stays taken. Runs already in flight are not stopped
        here (the gateway cancels them).
        """
        principal = _check_principal(principal)
        async with self._locks.hold(_check_id(session_id)):
            head = await self._visible_head(session_id, principal)
            event = SessionExpiredEvent(
                **self._envelope(head), data=SessionExpired(reason=DELETED_REASON)
            )
            await self._write(head, [event])

    # -- reading --------------------------------------------------------------------------

    async def get(
        self,
        session_id: str,
        principal: Principal,
        *,
        history_limit: int | None = None,
        project: bool = True,
    ) -> Session:
        """The session with its history (only the latest ``history_limit`` messages if set).

        The history has every message the log holds for the session (what a run recorded a
        moment ago included: what the record lacks yet is read from the log, and the
        projector is asked to bring the record up to date; with ``project`` False, not: a
        caller that will call `project_later` anyway, as the runtime does as a run ends).
        `NotFoundError` when it does not exist or ``principal`` may not see it.
        """
        principal = _check_principal(principal)
        if history_limit is not None:
            history_limit = _check_limit(history_limit, "history_limit", minimum=0)
        sid = _check_id(session_id)
        async with self._reading(f"reading session {sid!r}", snapshot=True) as conn:
            head = await self._visible_head(sid, principal, conn=conn, full=True)
            history = (
                [] if history_limit == 0 else await load_history(conn, head.id, limit=history_limit)
            )
        if history_limit != 0 or sid in self._pending or sid in self._batch:
            # Runs write to the log first; the record catches up after them (the projector).
            # A reader that saw a run's end in the log must find its messages here too: what
            # the record lacks yet is folded in from the log (the record itself is left to
            # the projector). A read of the head alone does so when the record is known to
            # lag (a session pending here).
            later = await self._stream_after(sid, head.last_seq)
            if later:
                _, added = _fold_all(head, later)
                if head.status == "deleted":
                    raise _not_found(sid)
                history.extend(m.message for m in added)
                if history_limit is not None and len(history) > history_limit:
                    del history[: len(history) - history_limit]
                if project:
                    self.project_later(sid)
        if head.status == "active" and self._is_due(head):
            # Past its time but not swept yet: it takes nothing more, so it reads as expired.
            head.status = "expired"
        return head.to_session(history)

    async def list(
        self,
        principal: Principal,
        *,
        user_id: str | None = None,
        tenant_id: str | None = None,
        channel: str | None = None,
        status: SessionStatus | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> builtins.list[Session]:
        """Sessions ``principal`` may see, newest first, without their histories (deleted ones
        never appear).

        Filters: ``user_id`` and ``tenant_id`` (an admin's choice; a user may only name
        itself and its tenant), ``channel``, ``status``. Pages: pass the id of the last
        session of a page as ``before``.
        """
        principal = _check_principal(principal)
        limit = _check_limit(limit, "limit", maximum=1000)
        t = sessions_table.c
        conditions: builtins.list[Any] = [t.status != "deleted"]
        for name, value in (("user_id", user_id), ("tenant_id", tenant_id)):
            if value is not None and not isinstance(value, str):
                raise InvalidInputError(
                    f"{name} must be a string, not {type(value).__name__}",
                    hint=f"pass a {name.replace('_id', '')} id, or leave it out",
                    field=name,
                )
        if not principal.admin:
            for name, value, own in (
                ("user", user_id, principal.user_id),
                ("tenant", tenant_id, principal.tenant_id),
            ):
                if principal.tenant_admin and name == "user":
                    continue  # a tenant's admin may list any user of its tenant
                if value is not None and value != own:
                    raise PermissionDeniedError(
                        f"only an admin may list another {name}'s sessions",
                        hint=f"leave {name}_id out to list your own sessions",
                        **{f"{name}_id": value},
                    )
            tenant_id = principal.tenant_id
            if not principal.tenant_admin:
                user_id = principal.user_id
        if tenant_id is not None:
            conditions.append(t.tenant_id == tenant_id)
        if user_id is not None:
            conditions.append(t.user_id == user_id)
        if channel is not None:
            conditions.append(t.channel == check_name(channel, "channel", max_length=MAX_CHANNEL))
        if status is not None:
            if status not in _STATUSES:
                raise InvalidInputError(
                    f"status must be 'active' or 'expired', not {status!r}",
                    hint="leave status out to list both",
                    field="status",
                )
            conditions.append(t.status == status)
        await self._flush_pending()
        async with self._reading("listing sessions") as conn:
            if before is not None:
                cursor = await self._visible_head(_check_id(before), principal, conn=conn)
                created = to_micros(cursor.created_at)
                conditions.append(
                    or_(t.created_at < created, and_(t.created_at == created, t.id < cursor.id))
                )
            query = (
                select(*FULL_COLUMNS)
                .where(*conditions)
                .order_by(t.created_at.desc(), t.id.desc())
                .limit(limit)
            )
            rows = (await conn.execute(query)).mappings().all()
        return [head_from_row(row).to_session() for row in rows]

    async def search(
        self,
        principal: Principal,
        query: str,
        *,
        session_id: str | None = None,
        limit: int = 20,
    ) -> builtins.list[SearchHit]:
        """Messages holding every word of ``query`` (any order, any case), best match first.

        Only sessions ``principal`` may see are searched; ``session_id`` narrows to one.
        """
        principal = _check_principal(principal)
        words = query_words(query)
        limit = _check_limit(limit, "limit", maximum=1000)
        await self._flush_pending()
        async with self._reading("searching messages") as conn:
            if session_id is not None:
                await self._visible_head(_check_id(session_id), principal, conn=conn)
            return await search_messages(
                conn,
                words,
                tenant_id=None if principal.admin else principal.tenant_id,
                user_id=None if principal.admin or principal.tenant_admin else principal.user_id,
                session_id=session_id,
                limit=limit,
            )

    # -- export and import ----------------------------------------------------------------

    async def export(self, session_id: str, principal: Principal) -> dict[str, Any]:
        """The session as a ``promptline.session`` version 1 document (see `import_`)."""
        return export_document(await self.get(session_id, principal))

    async def import_(
        self, document: Any, principal: Principal, *, as_new_id: bool = False
    ) -> Session:
        """Store an exported session in this database, as events (so the log stays the truth).

        The session joins ``principal``'s tenant; a non-admin may import only its own
        sessions. With ``as_new_id`` it gets a fresh id instead of the document's.
        `FormatVersionError` for another format or version, `InvalidInputError` naming a
        field of the wrong shape, `ConflictError` for an id in use; nothing is stored then.
        """
        principal = _check_principal(principal)
        if not isinstance(as_new_id, bool):
            raise InvalidInputError(
                "as_new_id must be True or False", hint="pass as_new_id=True", field="as_new_id"
            )
        parsed = parse_document(document)
        record = parsed.session
        user_id = _check_user_id(record.user_id)
        if not (principal.admin or principal.tenant_admin) and user_id != principal.user_id:
            raise PermissionDeniedError(
                f"this document is a session of user {user_id!r}; you may import only your own",
                hint="ask an admin to import it",
                user_id=user_id,
            )
        limits = self._limits
        channel = check_name(record.channel, "session.channel", max_length=MAX_CHANNEL)
        context = check_json_object(
            record.context, "session.context", max_bytes=limits.max_field_bytes
        )
        metadata = check_json_object(
            record.metadata, "session.metadata", max_bytes=limits.max_field_bytes
        )
        refs = check_tools(record.tools, max_bytes=limits.max_field_bytes)
        rules = check_permissions(record.permissions, max_bytes=limits.max_field_bytes)
        if len(parsed.history) > limits.max_import_messages:
            raise InvalidInputError(
                f"history has {len(parsed.history):,} messages, over the import limit of "
                f"{limits.max_import_messages:,}",
                hint="raise SessionLimits.max_import_messages",
                field="history",
            )
        for index, message in enumerate(parsed.history):
            try:
                check_message(message, max_bytes=limits.max_message_bytes)
            except InvalidInputError as exc:
                raise InvalidInputError(
                    f"history.{index}: {exc.message}", hint=exc.hint, field=f"history.{index}"
                ) from None
        sid = new_id("ses_") if as_new_id else _check_new_id(record.id, field="session.id")
        if self.admit is not None:
            # A new session of its owner, as `create` makes.
            await self.admit(Principal(tenant_id=principal.tenant_id, user_id=user_id))
        now = self._clock.now()
        envelope = {
            "stream": sid,
            "session_id": sid,
            "tenant_id": principal.tenant_id,
            "user_id": user_id,
        }
        events: builtins.list[Event] = [
            # The creation event carries the original creation time: it is what the
            # session's created_at is projected from.
            SessionCreatedEvent(
                **envelope,
                ts=record.created_at,
                data=SessionCreated(
                    channel=channel,
                    expires_at=record.expires_at,
                    context=context,
                    tools=[ref.model_dump() for ref in refs],
                    permissions=rules.model_dump(),
                    metadata=metadata,
                ),
            )
        ]
        for message in parsed.history:
            if message.role == "user":
                events.append(
                    MessageReceivedEvent(**envelope, ts=now, data=MessageReceived(message=message))
                )
            else:
                events.append(
                    MessageSentEvent(**envelope, ts=now, data=MessageSent(message=message))
                )
        if record.status != "active":
            events.append(
                SessionExpiredEvent(**envelope, ts=now, data=SessionExpired(reason="imported"))
            )
        async with self._locks.hold(sid):
            await self._ensure_unused(sid, importing=True)
            await self._write(None, events, expected_seq=0, importing=True)
        return await self.get(sid, principal)

    async def refresh(self, session_id: str) -> bool:
        """Apply the events of the session's stream that the stored record does not reflect
        yet (written by others than this manager, such as the agent runtime, which records a
        run's messages in a few batches). True if anything changed."""
        sid = _check_id(session_id)
        async with self._locks.hold(sid):
            return await self._catch_up(sid)

    def project_later(self, session_id: str) -> None:
        """Have the projector bring the session's record up to the end of its stream soon.

        For writers of the session's stream other than this manager (the agent runtime
        records a run's messages itself): the run need not wait for the record. `get` folds
        in from the log what the record lacks meanwhile; `list`, `search` and
        `count_active` wait for the sessions pending here; `drain` (at shutdown) waits for
        all of them; after a crash `recover` catches up from the checkpoint, which does not
        pass a pending session's events.
        """
        sid = _check_id(session_id)
        if sid not in self._pending:
            self._pending[sid] = self._watermark.begin()
        if self._projector is None or self._projector.done():
            self._projector = asyncio.get_running_loop().create_task(
                self._project_pending(), name="session projector"
            )

    async def drain(self) -> None:
        """Wait until the projector has applied every session pending in this process."""
        while self._projector is not None and not self._projector.done():
            await asyncio.shield(self._projector)

    async def _flush_pending(self) -> None:
        """Before reading the records of many sessions: let the pending ones land first."""
        if self._pending or (self._projector is not None and not self._projector.done()):
            await self.drain()

    async def _project_pending(self) -> None:
        """The projector: applies the pending sessions in batches until none is left."""
        await asyncio.sleep(0)  # let the runs ending in this same moment join the batch
        while self._pending:
            batch = self._batch = self._pending
            self._pending = {}
            projected = False
            try:
                await self._project_batch(batch)
                projected = True
            except Exception:
                # Their floors stay pinned: the checkpoint does not pass their events, and
                # `get` still reads them from the log; `recover` applies them at next start.
                _log.exception("projecting %d sessions failed", len(batch))
            finally:
                self._batch = {}
                for floor in batch.values():
                    self._watermark.end(floor, projected=projected)

    async def _project_batch(self, floors: dict[str, int]) -> None:
        """Bring the records of the sessions of ``floors`` (id: watermark floor) up to the
        end of their streams: the streams are read first, with no transaction open, then
        one write transaction applies all of them (each row locked and checked as
        `_catch_up` does) and stores the checkpoint once. A session whose row moved
        meanwhile is caught up on its own afterwards."""
        async with self._reading("reading sessions to project") as conn:
            found = await load_heads(conn, builtins.list(floors))
        seen = {sid: found.get(sid) for sid in floors}
        streams: dict[str, builtins.list[Event]] = {}
        retry: builtins.list[str] = []
        for sid, head in seen.items():
            if head is None:
                retry.append(sid)  # no record yet: its creation is `_catch_up`'s case
                continue
            later = await self._stream_after(sid, head.last_seq)
            if later:
                streams[sid] = later
        if streams:
            try:
                retry += await self._write_batch(seen, streams, floors, set(retry))
            except StaleHeadError:
                retry += streams
            except SQLAlchemyError as exc:
                raise translate_error(exc, what="projecting sessions") from exc
        for sid in retry:
            async with self._locks.hold(sid):
                await self._catch_up(sid)

    async def _write_batch(
        self,
        seen: dict[str, SessionHead | None],
        streams: dict[str, builtins.list[Event]],
        floors: dict[str, int],
        left: builtins.set[str],
    ) -> builtins.list[str]:
        """One write transaction for a projector's batch; returns the sessions it left for
        `_catch_up` (their rows moved since ``seen`` was read). The checkpoint it stores
        stays below the events of those and of ``left``."""
        moved: builtins.list[str] = []
        async with write_transaction(self._engine) as conn:
            for sid, events in streams.items():
                head = await load_head(conn, sid, for_update=True)
                expected = seen[sid]
                if head is None or expected is None or head.last_seq != expected.last_seq:
                    moved.append(sid)
                    continue
                previous = head.last_seq
                head, messages = _fold_all(head, events)
                if head is not None and head.last_seq != previous:
                    await write_head(conn, head, previous_seq=previous, messages=messages)
            done = [floor for sid, floor in floors.items() if sid not in left and sid not in moved]
            checkpoint = self._watermark.safe(own_floors=done)
            if checkpoint is not None:
                await write_checkpoint(conn, checkpoint, self._clock)
        return moved

    async def _stream_after(self, sid: str, seq: int) -> builtins.list[Event]:
        """The events of the session's stream after ``seq``, all of them."""
        events: builtins.list[Event] = []
        while True:
            page = await self._store.read_stream(sid, from_seq=seq, limit=_READ_PAGE)
            events.extend(page)
            if len(page) < _READ_PAGE:
                return events
            seq = page[-1].seq

    # -- recovery -------------------------------------------------------------------------

    async def recover(self, *, full: bool = False) -> builtins.list[str]:
        """Apply the session events the projection missed; run it at startup, before serving.

        Reads the log after the stored checkpoint (from the start with ``full``) and brings
        every session with events there up to the end of its stream, in seq order; already
        applied events are skipped. Returns the ids of the sessions that changed.
        """
        pinned = self._watermark.pinned()
        self._watermark.paused = True
        changed: builtins.list[str] = []
        try:
            if full:
                position = 0
            else:
                async with self._reading("reading the session checkpoint") as conn:
                    position = await read_checkpoint(conn)
            end = await self._store.last_position()
            wanted = EventFilter(types=SESSION_EVENT_TYPES)
            while True:
                page = await self._store.read_all(wanted, from_position=position, limit=_READ_PAGE)
                streams = dict.fromkeys(event.stream_name for event in page)
                for sid in streams:
                    async with self._locks.hold(sid):
                        if await self._catch_up(sid):
                            changed.append(sid)
                if page:
                    position = page[-1].position
                if len(page) < _READ_PAGE:
                    break
        finally:
            self._watermark.paused = False
        self._watermark.saw(max(end, position))
        self._watermark.release(pinned)
        checkpoint = self._watermark.safe()
        if checkpoint is not None:
            try:
                async with write_transaction(self._engine) as conn:
                    await write_checkpoint(conn, checkpoint, self._clock)
            except SQLAlchemyError as exc:
                raise translate_error(exc, what="storing the session checkpoint") from exc
        return changed

    # -- internals ------------------------------------------------------------------------

    def _envelope(self, head: SessionHead) -> dict[str, Any]:
        # Events name the session's owner, so a user's events can be found by user_id
        # whoever (the user or an admin) caused them.
        return {
            "stream": head.id,
            "session_id": head.id,
            "tenant_id": head.tenant_id,
            "user_id": head.user_id,
            "ts": self._clock.now(),
        }

    def _is_due(self, head: SessionHead) -> bool:
        return head.expires_at is not None and head.expires_at <= self._clock.now()

    def _ensure_writable(self, head: SessionHead) -> None:
        if head.status == "expired" or self._is_due(head):
            when = f" at {head.expires_at.isoformat()}" if head.expires_at else ""
            raise ConflictError(
                f"session {head.id!r} expired{when}; it keeps its history but takes no "
                "more changes",
                hint="create a new session (this one stays readable and exportable)",
                session_id=head.id,
                reason="expired",
            )

    async def _ensure_unused(self, sid: str, *, importing: bool) -> None:
        async with self._reading(f"reading session {sid!r}") as conn:
            exists = await load_head(conn, sid) is not None
        if exists or await self._store.last_seq(sid) > 0:
            raise _id_in_use(sid, importing=importing)

    async def _visible_head(
        self,
        session_id: str,
        principal: Principal,
        *,
        conn: AsyncConnection | None = None,
        full: bool = False,
    ) -> SessionHead:
        if conn is None:
            async with self._reading(f"reading session {session_id!r}") as own:
                head = await load_head(own, session_id, full=full)
        else:
            head = await load_head(conn, session_id, full=full)
        if head is None or head.status == "deleted" or not _may_see(principal, head):
            raise _not_found(session_id)
        return head

    async def _write(
        self,
        head: SessionHead | None,
        events: builtins.list[Event],
        *,
        expected_seq: int | None = None,
        importing: bool = False,
    ) -> SessionHead | None:
        """Publish events of one session (its lock held) and project them.

        ``expected_seq=0`` makes the publish fail if the stream exists (a new session).
        """
        floor = self._watermark.begin()
        published = False
        projected = False
        try:
            try:
                if len(events) == 1:
                    stored = [await self._bus.publish(events[0], expected_seq=expected_seq)]
                else:
                    expected = None
                    if expected_seq is not None:
                        expected = {events[0].stream_name: expected_seq}
                    stored = await self._bus.publish_batch(events, expected_seqs=expected)
            except ConflictError as exc:
                if expected_seq == 0:
                    # Another process took the id between our check and the publish.
                    raise _id_in_use(events[0].stream_name, importing=importing) from exc
                raise
            published = True
            self._watermark.saw(stored[-1].position)
            sid = stored[0].stream_name
            result: SessionHead | None
            expected_first = 1 if head is None else head.last_seq + 1
            if stored[0].seq != expected_first:
                # Another process wrote to the stream since `head` was read: apply its
                # events and ours in seq order.
                await self._catch_up(sid, own_floor=floor)
                async with self._reading(f"reading session {sid!r}") as conn:
                    result = await load_head(conn, sid, full=head is None)
            else:
                try:
                    result = await self._apply(head, stored, own_floor=floor)
                except StaleHeadError:
                    await self._catch_up(sid, own_floor=floor)
                    async with self._reading(f"reading session {sid!r}") as conn:
                        result = await load_head(conn, sid, full=head is None)
            projected = True
            return result
        finally:
            self._watermark.end(floor, projected=projected or not published)

    async def _catch_up(self, sid: str, *, own_floor: int | None = None) -> bool:
        """Bring the stored session up to the end of its stream; True if anything was applied.

        The stream is read first, with no transaction open; then one write transaction
        locks the session's row (SQLite: the database write lock) and applies what the row
        does not reflect yet, so no other projector can move the row meanwhile. Reading
        inside that transaction would hold a pooled connection (and the lock) while waiting
        for a second one: with many runs ending at once, the pool runs dry.
        """
        for _ in range(_CATCH_UP_ATTEMPTS):
            try:
                async with self._reading(f"reading session {sid!r}") as conn:
                    seen = await load_head(conn, sid)
                events = await self._stream_after(sid, 0 if seen is None else seen.last_seq)
                if not events:
                    return False
                async with write_transaction(self._engine) as conn:
                    head = await load_head(conn, sid, for_update=True)
                    current = 0 if head is None else head.last_seq
                    if current < (0 if seen is None else seen.last_seq):
                        continue  # the row went back (a re-created session): read again
                    pending = [e for e in events if e.seq > current]
                    if not pending:
                        return False  # another projector applied them meanwhile
                    if pending[0].seq != current + 1:
                        continue  # the row moved past what was read: read again
                    previous = None if head is None else head.last_seq
                    head, messages = _fold_all(head, pending)
                    changed = head is not None and head.last_seq != previous
                    if changed:
                        assert head is not None
                        await write_head(conn, head, previous_seq=previous, messages=messages)
                        head.changed.clear()
                        checkpoint = self._watermark.safe(own_floor=own_floor)
                        if checkpoint is not None:
                            await write_checkpoint(conn, checkpoint, self._clock)
                return changed
            except StaleHeadError:
                # Two processes created the same session's row at once; the other won.
                continue
            except SQLAlchemyError as exc:
                raise translate_error(exc, what=f"bringing session {sid!r} up to date") from exc
        raise ConflictError(
            f"session {sid!r} kept changing while its projection was being brought up to date",
            hint="retry; if it persists, another process is writing to this session heavily",
            session_id=sid,
        )

    async def _apply(
        self, head: SessionHead | None, events: Sequence[Event], *, own_floor: int | None
    ) -> SessionHead | None:
        """Fold ``events`` into ``head`` and store the result in one transaction.

        Optimistic: if another writer moved the row since ``head`` was read, this raises
        `StaleHeadError` and stores nothing; `_catch_up` then does it under a lock.
        """
        previous = None if head is None else head.last_seq
        head, messages = _fold_all(head, events)
        if head is None or head.last_seq == previous:
            return head
        try:
            async with write_transaction(self._engine) as conn:
                await write_head(conn, head, previous_seq=previous, messages=messages)
                checkpoint = self._watermark.safe(own_floor=own_floor)
                if checkpoint is not None:
                    await write_checkpoint(conn, checkpoint, self._clock)
        except (StaleHeadError, PromptLineError):
            raise
        except SQLAlchemyError as exc:
            raise translate_error(exc, what=f"storing session {head.id!r}") from exc
        head.changed.clear()
        return head

    @contextlib.asynccontextmanager
    async def _reading(
        self, what: str, *, snapshot: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        """A connection for reads; with ``snapshot`` all its reads see one moment."""
        try:
            async with self._engine.connect() as conn:
                if snapshot and conn.dialect.name == "postgresql":
                    conn = await conn.execution_options(isolation_level="REPEATABLE READ")
                yield conn
        except SQLAlchemyError as exc:
            raise translate_error(exc, what=what) from exc


def _fold_all(
    head: SessionHead | None, events: Sequence[Event]
) -> tuple[SessionHead | None, builtins.list[NewMessage]]:
    """Fold events into a head; returns it and the history rows they add."""
    messages: builtins.list[NewMessage] = []
    for event in events:
        head, message = fold(head, event)
        if message is not None and head is not None:
            messages.append(
                NewMessage(
                    idx=head.message_count - 1,
                    seq=event.seq,
                    ts_micros=to_micros(event.ts),
                    message=message,
                )
            )
    return head, messages


def _id_in_use(sid: str, *, importing: bool) -> ConflictError:
    return ConflictError(
        f"session id {sid!r} is already in use",
        hint="import with as_new_id=True to give the session a new id"
        if importing
        else "leave session_id out to get a fresh id",
        session_id=sid,
    )


def _not_found(session_id: str) -> NotFoundError:
    return NotFoundError(
        f"no session {session_id!r}",
        hint="check the id; a session of another user or tenant is not visible",
        session_id=session_id,
    )


def _may_see(principal: Principal, head: SessionHead) -> bool:
    if principal.admin:
        return True
    if head.tenant_id != principal.tenant_id:
        return False
    return principal.tenant_admin or head.user_id == principal.user_id


def _check_principal(principal: Any) -> Principal:
    if not isinstance(principal, Principal):
        raise InvalidInputError(
            f"principal must be a Principal, not {type(principal).__name__}",
            hint="pass Principal(tenant_id=..., user_id=...) for the caller",
            field="principal",
        )
    return principal


def _check_id(session_id: Any) -> str:
    """A session id to look up: any string (an unknown one is simply not found)."""
    if not isinstance(session_id, str):
        raise InvalidInputError(
            f"session_id must be a string, not {type(session_id).__name__}",
            hint="pass the id a create() returned, e.g. 'ses_01J...'",
            field="session_id",
        )
    return session_id


def _check_new_id(session_id: Any, *, field: str = "session_id") -> str:
    return check_name(session_id, field, max_length=MAX_SESSION_ID)


def _check_user_id(user_id: str) -> str:
    if not user_id or len(user_id) > 255:
        raise InvalidInputError(
            "session.user_id must be 1 to 255 characters",
            hint="fix session.user_id in the document",
            field="session.user_id",
        )
    return user_id


def _check_ttl(ttl: Any, field: str) -> None:
    if not isinstance(ttl, timedelta) or ttl <= timedelta(0):
        raise InvalidInputError(
            f"{field} must be a positive timedelta, not {ttl!r}",
            hint="pass e.g. timedelta(days=30)",
            field=field,
        )


def _check_limit(value: Any, field: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        wanted = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
        raise InvalidInputError(
            f"{field} must be an integer {wanted}, not {value!r}",
            hint=f"pass e.g. {field}=20",
            field=field,
        )
    return value
