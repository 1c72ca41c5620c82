"""Full-text search over session messages: SQLite FTS5 or PostgreSQL tsvector, same query rules.

A query is split into words (letters and digits); a message matches when it holds every word,
in any order, ignoring case. Nothing in the query is syntax, so no input can make it fail.

The index holds each message's `indexed_text`; the message itself is stored whole beside it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from promptline.core.errors import InvalidInputError
from promptline.core.messages import Message
from promptline.sessions.models import SearchHit

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

MAX_QUERY_CHARS = 1000
MAX_QUERY_WORDS = 32
_WORD = re.compile(r"\w+")

_SQLITE = """
SELECT m.session_id, m.idx, m.message,
       snippet(session_messages_fts, 0, '[', ']', '…', 16) AS snippet,
       -bm25(session_messages_fts) AS rank
FROM session_messages_fts
JOIN session_messages AS m ON m.id = session_messages_fts.rowid
JOIN sessions AS s ON s.id = m.session_id
WHERE session_messages_fts MATCH :match AND s.status <> 'deleted' {where}
ORDER BY rank DESC, m.session_id, m.idx
LIMIT :limit
"""

_POSTGRES = """
SELECT m.session_id, m.idx, m.message,
       ts_headline('simple', m.text, q.query,
                   'StartSel=[, StopSel=], MaxWords=24, MinWords=8') AS snippet,
       ts_rank(m.tsv, q.query) AS rank
FROM session_messages AS m
JOIN sessions AS s ON s.id = m.session_id
CROSS JOIN (SELECT plainto_tsquery('simple', :match) AS query) AS q
WHERE m.tsv @@ q.query AND s.status <> 'deleted' {where}
ORDER BY rank DESC, m.session_id, m.idx
LIMIT :limit
"""


def indexed_text(text: str) -> str:
    """The form of a message's text the search index holds: U+0000 (NUL) becomes a space.

    PostgreSQL text cannot hold NUL at all, and SQLite's text functions stop at it (its
    snippets come out garbled), so both index the same text with NUL as a word break: the
    words on either side stay findable and snippets show a space there. The message (its
    JSON, where NUL is the escape ``\\u0000``) keeps every character.
    """
    return text.replace("\x00", " ")


def query_words(query: Any) -> list[str]:
    """The words of a search query; refuses a query with none, or one too long."""
    if not isinstance(query, str):
        raise InvalidInputError(
            f"a search query must be a string, not {type(query).__name__}",
            hint="pass the words to look for, e.g. 'invoice march'",
            field="query",
        )
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidInputError(
            f"the search query is {len(query)} characters long, over {MAX_QUERY_CHARS}",
            hint="search for a few distinctive words",
            field="query",
        )
    words = _WORD.findall(query)
    if not words:
        raise InvalidInputError(
            "the search query has no words to look for",
            hint="give at least one word of letters or digits",
            field="query",
        )
    if len(words) > MAX_QUERY_WORDS:
        raise InvalidInputError(
            f"the search query has {len(words)} words, over {MAX_QUERY_WORDS}",
            hint="search for a few distinctive words",
            field="query",
        )
    return words


async def search_messages(
    conn: AsyncConnection,
    words: list[str],
    *,
    tenant_id: str | None,
    user_id: str | None,
    session_id: str | None,
    limit: int,
) -> list[SearchHit]:
    """Messages holding every word, best first; ``tenant_id``/``user_id``, unless None, narrow
    to that tenant's or user's sessions."""
    from sqlalchemy import text

    sql, params = search_query(
        conn.dialect.name,
        words,
        tenant_id=tenant_id,
        user_id=user_id,
        session_id=session_id,
        limit=limit,
    )
    result = await conn.execute(text(sql), params)
    return [search_hit(row._mapping) for row in result]


def search_query(
    dialect: str,
    words: list[str],
    *,
    tenant_id: str | None,
    user_id: str | None,
    session_id: str | None,
    limit: int,
) -> tuple[str, dict[str, Any]]:
    """The search's SQL for ``dialect`` (``sqlite`` or ``postgresql``) with its named
    parameters; each row it yields is made a hit by `search_hit`."""
    params: dict[str, Any] = {"limit": limit}
    where = ""
    if tenant_id is not None:
        where += " AND s.tenant_id = :tenant"
        params["tenant"] = tenant_id
    if user_id is not None:
        where += " AND s.user_id = :user"
        params["user"] = user_id
    if session_id is not None:
        where += " AND m.session_id = :session"
        params["session"] = session_id
    if dialect == "postgresql":
        sql = _POSTGRES
        params["match"] = " ".join(words)
    else:
        sql = _SQLITE
        # Each word becomes an FTS5 string ("..."), so operators and column filters in the
        # user's text are plain words; juxtaposed strings mean AND.
        params["match"] = " ".join('"' + w.replace('"', '""') + '"' for w in words)
    return sql.format(where=where), params


def search_hit(row: Mapping[Any, Any]) -> SearchHit:
    """A hit from a row of `search_query`."""
    return SearchHit(
        session_id=row["session_id"],
        idx=int(row["idx"]),
        message=Message.model_validate_json(row["message"]),
        snippet=row["snippet"],
        rank=None if row["rank"] is None else float(row["rank"]),
    )
