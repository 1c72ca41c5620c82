"""Sessions on a `LocalDatabase`, as the local operator: what the CLI's session commands do
when the full app is not needed.

Each function does what `SessionManager` does for the same call (the same checks, events,
fold and rows: `fold` of `promptline.sessions.projection` is the one set of rules), or answers
None when it cannot do exactly that here: the session is unknown, deleted or expired (the
full path raises the error that says so), or its record lags behind the log (the full path
brings it up to date first). Nothing is written before that decision, so the caller can then
run the full path instead.

A write appends its event and projects it in one transaction, so the record never lags
behind what this path wrote.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from promptline.core.clock import Clock, SystemClock, to_micros
from promptline.core.errors import ConflictError
from promptline.core.events import (
    Event,
    MessageReceived,
    MessageReceivedEvent,
    MessageSent,
    MessageSentEvent,
    SessionCreated,
    SessionCreatedEvent,
)
from promptline.core.ids import new_id
from promptline.core.messages import Message
from promptline.core.names import MAX_CHANNEL
from promptline.sessions.limits import SessionLimits
from promptline.sessions.models import PermissionSet, Principal, SearchHit, Session
from promptline.sessions.projection import (
    JSON_FIELDS,
    SESSION_EVENT_TYPES,
    SessionHead,
    fold,
    head_from_row,
)
from promptline.sessions.search import indexed_text, query_words, search_hit, search_query
from promptline.sessions.validation import (
    check_json_object,
    check_message,
    check_name,
    check_permissions,
    check_tools,
    encode_json,
)
from promptline.storage.local import LocalDatabase, complete

__all__ = ["append_message", "create", "read", "search"]

CHECKPOINT_NAME = "sessions"
"""The projection checkpoint's row (``promptline.sessions.checkpoint.CHECKPOINT_NAME``; a
test holds the two equal: that module loads SQLAlchemy)."""

MAX_PENDING_STREAMS = 100
"""Past this many sessions with events after the checkpoint, a search leaves checking them
to the full path (which brings them up to date)."""

_SCALARS = (
    "id, tenant_id, user_id, channel, status, created_at, updated_at, expires_at, "
    "message_count, last_seq, sandbox"
)
_FULL = _SCALARS + ", context, tools, permissions, metadata"


def create(
    db: LocalDatabase,
    owner: Principal,
    *,
    channel: str,
    ttl: timedelta,
    limits: SessionLimits | None = None,
    clock: Clock | None = None,
) -> Session | None:
    """A new session of ``owner`` (`SessionManager.create` with its defaults, ``default_ttl``
    being ``ttl``), or None when the full path must make it."""
    limits = limits or SessionLimits()
    clock = clock or SystemClock()
    channel = check_name(channel, "channel", max_length=MAX_CHANNEL)
    limit = limits.max_field_bytes
    context = check_json_object({}, "context", max_bytes=limit)
    metadata = check_json_object({}, "metadata", max_bytes=limit)
    refs = check_tools([], max_bytes=limit)
    rules = check_permissions(PermissionSet(), max_bytes=limit)
    sid = new_id("ses_")
    now = clock.now()
    event = SessionCreatedEvent(
        stream=sid,
        session_id=sid,
        tenant_id=owner.tenant_id,
        user_id=owner.user_id,
        ts=now,
        data=SessionCreated(
            channel=channel,
            expires_at=now + ttl,
            context=context,
            tools=[ref.model_dump() for ref in refs],
            permissions=rules.model_dump(),
            metadata=metadata,
        ),
    )
    with db.writing() as conn:
        if _load_head(conn, sid) is not None or complete(db.events.last_seq(sid)) > 0:
            return None  # the id is taken: the full path says so
        try:
            stored = complete(db.events.append(event, expected_seq=0))
        except ConflictError:
            return None
        head = _project(db, None, stored, clock)
    return head.to_session()


def append_message(
    db: LocalDatabase,
    session_id: str,
    message: Message,
    *,
    limits: SessionLimits | None = None,
    clock: Clock | None = None,
) -> Message | None:
    """Add ``message`` to the session's history as the local operator
    (`SessionManager.append_message`), or None when the full path must."""
    limits = limits or SessionLimits()
    clock = clock or SystemClock()
    msg, _ = check_message(message, max_bytes=limits.max_message_bytes)
    with db.writing() as conn:
        head = _load_head(conn, session_id)
        if head is None or head.status != "active" or _is_due(head, clock.now()):
            return None
        if complete(db.events.last_seq(head.id)) != head.last_seq:
            return None
        envelope: dict[str, Any] = {
            "stream": head.id,
            "session_id": head.id,
            "tenant_id": head.tenant_id,
            "user_id": head.user_id,
            "ts": clock.now(),
        }
        event: Event
        if msg.role == "user":
            event = MessageReceivedEvent(**envelope, data=MessageReceived(message=msg))
        else:
            event = MessageSentEvent(**envelope, data=MessageSent(message=msg))
        stored = complete(db.events.append(event, expected_seq=head.last_seq))
        _project(db, head, stored, clock)
    return msg


def read(db: LocalDatabase, session_id: str, *, clock: Clock | None = None) -> Session | None:
    """The session with its whole history, as the local operator reads it
    (`SessionManager.get`), or None when the full path must read it."""
    now = (clock or SystemClock()).now()
    with db.reading() as conn:
        head = _load_head(conn, session_id, full=True)
        if head is None or head.status == "deleted":
            return None
        if complete(db.events.last_seq(head.id)) > head.last_seq:
            return None
        rows = conn.execute(
            "SELECT message FROM session_messages WHERE session_id = ? ORDER BY idx", (head.id,)
        ).fetchall()
    history = [Message.model_validate_json(row[0]) for row in rows]
    if head.status == "active" and _is_due(head, now):
        head.status = "expired"  # past its time but not swept yet, as `get` says
    return head.to_session(history)


def search(
    db: LocalDatabase, query: str, *, session_id: str | None, limit: int
) -> list[SearchHit] | None:
    """Messages holding every word of ``query``, as the local operator searches them
    (`SessionManager.search`), or None when the full path must search."""
    words = query_words(query)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        return None  # the full path refuses it, naming the limit
    with db.reading() as conn:
        if not _projection_is_current(db):
            return None
        if session_id is not None:
            head = _load_head(conn, session_id)
            if head is None or head.status == "deleted":
                return None
        sql, params = search_query(
            "sqlite", words, tenant_id=None, user_id=None, session_id=session_id, limit=limit
        )
        cursor = conn.execute(sql, params)
        names = [column[0] for column in cursor.description]
        return [search_hit(dict(zip(names, row, strict=True))) for row in cursor.fetchall()]


# -- the projection, in the SQL of `promptline.sessions.tables` ---------------------------------


def _project(
    db: LocalDatabase, head: SessionHead | None, stored: Event, clock: Clock
) -> SessionHead:
    """Fold the event just appended into the record and store it (the caller's transaction);
    advance the checkpoint when nothing before the event is left unprojected."""
    previous = None if head is None else head.last_seq
    head, message = fold(head, stored)
    assert head is not None, "an event on a record, or the one that opens it"
    assert head.last_seq == stored.seq, "the event follows the record"
    _write_head(db, head, previous_seq=previous)
    if message is not None:
        db.conn.execute(
            "INSERT INTO session_messages (session_id, idx, seq, role, text, created_at, message)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                head.id,
                head.message_count - 1,
                stored.seq,
                message.role,
                indexed_text(message.text),
                to_micros(stored.ts),
                message.model_dump_json(),
            ),
        )
    # The checkpoint says every session event up to it is projected. Under the write lock,
    # if it reached the event before this one, this one is projected too: move it on. Else
    # another writer's events lie between, and `recover` covers them from where it stands.
    if _checkpoint(db) >= stored.position - 1:
        db.conn.execute(
            "INSERT INTO projection_checkpoints (name, position, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET position = excluded.position,"
            " updated_at = excluded.updated_at",
            (CHECKPOINT_NAME, stored.position, to_micros(clock.now())),
        )
    head.changed.clear()
    return head


def _checkpoint(db: LocalDatabase) -> int:
    row = db.conn.execute(
        "SELECT position FROM projection_checkpoints WHERE name = ?", (CHECKPOINT_NAME,)
    ).fetchone()
    return 0 if row is None else int(row[0])


def _write_head(db: LocalDatabase, head: SessionHead, *, previous_seq: int | None) -> None:
    scalars: dict[str, Any] = {
        "status": head.status,
        "updated_at": to_micros(head.updated_at),
        "expires_at": None if head.expires_at is None else to_micros(head.expires_at),
        "message_count": head.message_count,
        "last_seq": head.last_seq,
        "sandbox": head.sandbox,
    }
    for name in JSON_FIELDS:
        if name in head.changed:
            scalars[name] = _json_column(head, name)
    if previous_seq is None:
        row = {
            "id": head.id,
            "tenant_id": head.tenant_id,
            "user_id": head.user_id,
            "channel": head.channel,
            "created_at": to_micros(head.created_at),
            **scalars,
        }
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        cursor = db.conn.execute(
            f"INSERT INTO sessions ({columns}) VALUES ({marks}) ON CONFLICT (id) DO NOTHING",
            tuple(row.values()),
        )
    else:
        assignments = ", ".join(f"{name} = ?" for name in scalars)
        cursor = db.conn.execute(
            f"UPDATE sessions SET {assignments} WHERE id = ? AND last_seq = ?",
            (*scalars.values(), head.id, previous_seq),
        )
    if cursor.rowcount != 1:
        # Another writer moved the record under the same lock: impossible, so stop here
        # (the transaction rolls back) rather than write a record that does not add up.
        raise RuntimeError(f"session {head.id!r} changed while it was being written")


def _json_column(head: SessionHead, name: str) -> str:
    value: Any = getattr(head, name)
    if name == "tools":
        value = [ref.model_dump() for ref in (value or [])]
    elif name == "permissions":
        value = (value or PermissionSet()).model_dump()
    elif value is None:
        value = {}
    return encode_json(value).decode()


def _load_head(conn: Any, session_id: str, *, full: bool = False) -> SessionHead | None:
    if "\x00" in session_id:
        return None  # no stored id holds NUL
    columns = _FULL if full else _SCALARS
    cursor = conn.execute(f"SELECT {columns} FROM sessions WHERE id = ?", (session_id,))
    row = cursor.fetchone()
    if row is None:
        return None
    names = [column[0] for column in cursor.description]
    return head_from_row(dict(zip(names, row, strict=True)))


def _is_due(head: SessionHead, now: datetime) -> bool:
    return head.expires_at is not None and head.expires_at <= now


def _projection_is_current(db: LocalDatabase) -> bool:
    """True when every session's record reflects its whole stream, as `recover` leaves them.

    Only sessions with session events after the checkpoint can lag; past a handful of them
    the full path (whose start-up recovery brings them up to date) is asked instead.
    """
    conn = db.conn
    checkpoint = _checkpoint(db)
    types = sorted(SESSION_EVENT_TYPES)
    streams = conn.execute(
        f"SELECT DISTINCT stream FROM events WHERE position > ? AND type IN "
        f"({', '.join('?' for _ in types)}) LIMIT ?",
        (checkpoint, *types, MAX_PENDING_STREAMS + 1),
    ).fetchall()
    if len(streams) > MAX_PENDING_STREAMS:
        return False
    for (stream,) in streams:
        head = _load_head(conn, stream)
        if head is None:
            # A stream without a record is current unless it opens a session (a run without
            # one writes its messages to a stream of its own, which no record reflects).
            created = conn.execute(
                "SELECT 1 FROM events WHERE stream = ? AND type = 'session_created' LIMIT 1",
                (stream,),
            ).fetchone()
            if created is not None:
                return False
            continue
        last = conn.execute("SELECT max(seq) FROM events WHERE stream = ?", (stream,)).fetchone()
        if head.last_seq < int(last[0] or 0):
            return False
    return True
