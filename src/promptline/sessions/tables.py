"""The session projection in the database: writing folded heads and messages, reading them back.

Appending a message is one ``INSERT`` into ``session_messages`` and one ``UPDATE`` of the
session's scalar columns; the history and the JSON fields are never read or rewritten for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from promptline.core.clock import to_micros
from promptline.core.messages import Message
from promptline.sessions.models import PermissionSet
from promptline.sessions.projection import (
    JSON_FIELDS,
    SessionHead,
    head_from_row,
)
from promptline.sessions.search import indexed_text
from promptline.sessions.validation import encode_json
from promptline.storage.schema import session_messages, sessions

SCALAR_COLUMNS = (
    sessions.c.id,
    sessions.c.tenant_id,
    sessions.c.user_id,
    sessions.c.channel,
    sessions.c.status,
    sessions.c.created_at,
    sessions.c.updated_at,
    sessions.c.expires_at,
    sessions.c.message_count,
    sessions.c.last_seq,
    sessions.c.sandbox,
)
FULL_COLUMNS = (
    *SCALAR_COLUMNS,
    sessions.c.context,
    sessions.c.tools,
    sessions.c.permissions,
    sessions.c.metadata,
)


class StaleHeadError(Exception):
    """The session row moved since it was read (another writer projected first); reload."""


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message a fold added: its place in the history and the event that carried it."""

    idx: int
    seq: int
    ts_micros: int
    message: Message


async def load_head(
    conn: AsyncConnection, session_id: str, *, full: bool = False, for_update: bool = False
) -> SessionHead | None:
    """The stored head of a session (with its JSON fields when ``full``), or None.

    ``for_update`` locks the row until the transaction ends (PostgreSQL; on SQLite the
    write transaction already holds the database's write lock).
    """
    if "\x00" in session_id:
        # No stored id holds NUL (ids are names), and PostgreSQL refuses it even in a query.
        return None
    columns = FULL_COLUMNS if full else SCALAR_COLUMNS
    query = select(*columns).where(sessions.c.id == session_id)
    if for_update:
        query = query.with_for_update()
    result = await conn.execute(query)
    row = result.first()
    return None if row is None else head_from_row(row._mapping)


async def load_heads(conn: AsyncConnection, session_ids: Sequence[str]) -> dict[str, SessionHead]:
    """The stored heads (without their JSON fields) of those of ``session_ids`` that exist,
    in one query."""
    wanted = [sid for sid in session_ids if "\x00" not in sid]
    if not wanted:
        return {}
    result = await conn.execute(select(*SCALAR_COLUMNS).where(sessions.c.id.in_(wanted)))
    heads = (head_from_row(row._mapping) for row in result)
    return {head.id: head for head in heads}


async def write_head(
    conn: AsyncConnection,
    head: SessionHead,
    *,
    previous_seq: int | None,
    messages: Sequence[NewMessage],
) -> None:
    """Store what folding moved ``head`` forward from ``previous_seq`` (None: a new session).

    The update is guarded by ``last_seq = previous_seq``, so two writers cannot both apply
    the same events; the loser gets `StaleHeadError` and its transaction must roll back.
    """
    scalars: dict[str, Any] = {
        "status": head.status,
        "updated_at": to_micros(head.updated_at),
        "expires_at": None if head.expires_at is None else to_micros(head.expires_at),
        "message_count": head.message_count,
        "last_seq": head.last_seq,
        "sandbox": head.sandbox,
    }
    json_values = {name: _json_column(head, name) for name in JSON_FIELDS if name in head.changed}
    if previous_seq is None:
        row = {
            "id": head.id,
            "tenant_id": head.tenant_id,
            "user_id": head.user_id,
            "channel": head.channel,
            "created_at": to_micros(head.created_at),
            **scalars,
            **json_values,
        }
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        result = await conn.execute(
            insert(sessions).values(row).on_conflict_do_nothing(index_elements=["id"])
        )
    else:
        result = await conn.execute(
            sessions.update()
            .where(sessions.c.id == head.id, sessions.c.last_seq == previous_seq)
            .values(**scalars, **json_values)
        )
    if result.rowcount != 1:
        raise StaleHeadError(head.id)
    if messages:
        await conn.execute(
            session_messages.insert(),
            [
                {
                    "session_id": head.id,
                    "idx": m.idx,
                    "seq": m.seq,
                    "role": m.message.role,
                    "text": indexed_text(m.message.text),
                    "created_at": m.ts_micros,
                    "message": m.message.model_dump_json(),
                }
                for m in messages
            ],
        )


def _json_column(head: SessionHead, name: str) -> str:
    value: Any = getattr(head, name)
    if name == "tools":
        value = [ref.model_dump() for ref in (value or [])]
    elif name == "permissions":
        value = (value or PermissionSet()).model_dump()
    elif value is None:
        value = {}
    return encode_json(value).decode()


async def load_history(
    conn: AsyncConnection, session_id: str, *, limit: int | None = None
) -> list[Message]:
    """The session's messages in order; with ``limit``, only the latest ``limit`` of them."""
    t = session_messages.c
    query = select(t.message).where(t.session_id == session_id)
    # The latest `limit` rows come off the (session_id, idx) index backwards, then flip.
    newest_first = query.order_by(t.idx.desc()).limit(limit)
    query = query.order_by(t.idx) if limit is None else newest_first
    bodies = (await conn.execute(query)).scalars().all()
    messages = [Message.model_validate_json(body) for body in bodies]
    if limit is not None:
        messages.reverse()
    return messages


async def count_messages(conn: AsyncConnection, session_id: str) -> int:
    """How many message rows the session has (a consistency check for tests and tools)."""
    t = session_messages.c
    query = select(func.count()).select_from(session_messages).where(t.session_id == session_id)
    return int((await conn.execute(query)).scalar_one())
