"""How a session's events fold into its record, and that fold as a pure in-memory projection.

`fold` is the one set of rules; the database projection (`SessionTables`) and the in-memory
`SessionProjection` both use it, so a session rebuilt from the log alone equals the stored one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from promptline.core.clock import from_micros
from promptline.core.errors import NotFoundError
from promptline.core.events import (
    Event,
    SessionCreatedEvent,
    SessionExpiredEvent,
    SessionUpdatedEvent,
    conversation_message,
)
from promptline.core.messages import Message
from promptline.core.sandbox import SANDBOX_CHOICES, SandboxChoice
from promptline.sessions.models import (
    DEFAULT_TENANT,
    PermissionSet,
    Session,
    SessionStatus,
    ToolRef,
)

SESSION_EVENT_TYPES = frozenset(
    {
        "session_created",
        "session_updated",
        "session_expired",
        "message_received",
        "message_sent",
        "run_started",
        "run_steered",
    }
)
"""The event types that change a session record; any other event only moves ``last_seq``."""

JSON_FIELDS = ("context", "tools", "permissions", "metadata")

DELETED_REASON = "deleted"
"""The ``session_expired`` reason that deletes a session (status ``deleted``) rather than
just closing it."""


@dataclass(slots=True)
class SessionHead:
    """A session record without its history: what folding one more event needs.

    The JSON fields are ``None`` when not loaded (the database projection never needs their
    old values: an update replaces a field whole); ``changed`` names the fields a fold set.
    """

    id: str
    tenant_id: str
    user_id: str
    channel: str
    status: SessionStatus
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    message_count: int
    last_seq: int
    context: dict[str, Any] | None = None
    tools: list[ToolRef] | None = None
    permissions: PermissionSet | None = None
    metadata: dict[str, Any] | None = None
    sandbox: str | None = None
    changed: set[str] = field(default_factory=set)

    def to_session(self, history: list[Message] | None = None) -> Session:
        """The record as a `Session` (JSON fields must be loaded)."""
        return Session(
            id=self.id,
            tenant_id=self.tenant_id,
            user_id=self.user_id,
            channel=self.channel,
            status=self.status,
            context=self.context or {},
            history=history or [],
            tools=self.tools or [],
            permissions=self.permissions or PermissionSet(),
            created_at=self.created_at,
            updated_at=self.updated_at,
            expires_at=self.expires_at,
            metadata=self.metadata or {},
            sandbox=sandbox_of(self.sandbox),
            message_count=self.message_count,
            last_seq=self.last_seq,
        )


def fold(head: SessionHead | None, event: Event) -> tuple[SessionHead | None, Message | None]:
    """Apply one event of a session's stream to its head (in place when there is one).

    Returns the head (a new one for ``session_created``) and the message the event adds to
    the history, if any. Idempotent: an event at or below ``last_seq`` changes nothing.
    Events before the session's creation are ignored (there is nothing to apply them to).
    """
    if head is not None and event.seq <= head.last_seq:
        return head, None
    if head is None:
        if isinstance(event, SessionCreatedEvent):
            return _created(event), None
        return None, None
    head.last_seq = event.seq
    message = conversation_message(event)
    if message is not None:
        head.message_count += 1
        head.updated_at = event.ts
    elif isinstance(event, SessionUpdatedEvent):
        data = event.data
        if data.expires_at is not None:
            head.expires_at = data.expires_at
            head.changed.add("expires_at")
        if data.context is not None:
            head.context = dict(data.context)
            head.changed.add("context")
        if data.tools is not None:
            head.tools = tools_of(data.tools)
            head.changed.add("tools")
        if data.permissions is not None:
            head.permissions = permissions_of(data.permissions)
            head.changed.add("permissions")
        if data.metadata is not None:
            head.metadata = dict(data.metadata)
            head.changed.add("metadata")
        if data.sandbox is not None:
            head.sandbox = sandbox_of(data.sandbox)
        head.updated_at = event.ts
    elif isinstance(event, SessionExpiredEvent):
        head.status = "deleted" if event.data.reason == DELETED_REASON else "expired"
        head.updated_at = event.ts
    return head, message


def _created(event: SessionCreatedEvent) -> SessionHead:
    data = event.data
    head = SessionHead(
        id=event.stream_name,
        tenant_id=event.tenant_id or DEFAULT_TENANT,
        user_id=event.user_id or "",
        channel=data.channel,
        status="active",
        created_at=event.ts,
        updated_at=event.ts,
        expires_at=data.expires_at,
        message_count=0,
        last_seq=event.seq,
        context=dict(data.context),
        tools=tools_of(data.tools),
        permissions=permissions_of(data.permissions),
        metadata=dict(data.metadata),
        sandbox=sandbox_of(data.sandbox),
    )
    head.changed.update(("created", *JSON_FIELDS))
    return head


def tools_of(raw: list[Any]) -> list[ToolRef]:
    """Tool references from an event; an entry that does not validate is left out.

    A projection must never stop on what is already in the log, so it is lenient here;
    the manager validates everything it writes.
    """
    refs = []
    for item in raw:
        try:
            refs.append(ToolRef.model_validate(item))
        except ValidationError:
            continue
    return refs


def sandbox_of(raw: str | None) -> SandboxChoice | None:
    """A session's sandbox from an event or a row. A projection must never stop on what is
    in the log, and a sandbox must never loosen: a value this release does not know (a newer
    writer's) reads as ``docker``, the strongest it knows."""
    if raw is None:
        return None
    for choice in SANDBOX_CHOICES:
        if raw == choice:
            return choice
    return "docker"


def permissions_of(raw: dict[str, Any]) -> PermissionSet:
    """A permission set from an event; rules that do not validate are left out."""
    rules = raw.get("rules", {})
    if not isinstance(rules, dict):
        return PermissionSet()
    valid = {k: v for k, v in rules.items() if isinstance(k, str) and v in ("allow", "ask", "deny")}
    return PermissionSet(rules=valid)


class SessionProjection:
    """Sessions and their full histories, built in memory from events alone.

    A `Projection` for `promptline.events.replay.replay`: ``replay(store, projection,
    stream=session_id)`` rebuilds one session; without ``stream`` it rebuilds them all.
    """

    def __init__(self) -> None:
        self._heads: dict[str, SessionHead] = {}
        self._histories: dict[str, list[Message]] = {}

    def apply(self, event: Event) -> None:
        """Fold one event into the session of its stream."""
        if event.type not in SESSION_EVENT_TYPES and event.stream_name not in self._heads:
            return
        stream = event.stream_name
        head, message = fold(self._heads.get(stream), event)
        if head is None:
            return
        if stream not in self._heads:
            self._heads[stream] = head
            self._histories[stream] = []
        if message is not None:
            self._histories[stream].append(message)

    @property
    def session_ids(self) -> list[str]:
        """Ids of the sessions seen so far, in order of creation in the log."""
        return list(self._heads)

    def session(self, session_id: str) -> Session:
        """The rebuilt session with its whole history."""
        head = self._heads.get(session_id)
        if head is None:
            raise NotFoundError(
                f"no session {session_id!r} in the events applied",
                hint="replay the session's stream (or the whole log) into this projection first",
                session_id=session_id,
            )
        return head.to_session(list(self._histories[session_id]))


def head_from_row(m: Mapping[Any, Any]) -> SessionHead:
    """A head from a ``sessions`` row: its scalar columns, and the JSON ones when the row has
    them (the SQLAlchemy projection and the CLI's `sqlite3` path read rows the same way)."""
    head = SessionHead(
        id=m["id"],
        tenant_id=m["tenant_id"],
        user_id=m["user_id"],
        channel=m["channel"],
        status=m["status"],
        created_at=from_micros(m["created_at"]),
        updated_at=from_micros(m["updated_at"]),
        expires_at=None if m["expires_at"] is None else from_micros(m["expires_at"]),
        message_count=int(m["message_count"]),
        last_seq=int(m["last_seq"]),
        sandbox=m.get("sandbox"),
    )
    if "context" in m:
        head.context = orjson.loads(m["context"])
        head.tools = tools_of(orjson.loads(m["tools"]))
        head.permissions = permissions_of(orjson.loads(m["permissions"]))
        head.metadata = orjson.loads(m["metadata"])
    return head
