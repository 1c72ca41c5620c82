"""Pages of a list: ``{"items": [...], "next_cursor": "..." | null}``, read with ``?limit``
and ``?cursor`` (the previous page's ``next_cursor``).

A cursor is opaque to clients: each list says what it is made of (a session id, a log
position), and a malformed one is a 422, never a 500.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field

from promptline.core.errors import InvalidInputError

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "Cursor", "Limit", "Page", "page_of", "position_cursor"]

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list."""

    items: list[T]
    next_cursor: str | None = Field(
        description="Pass it as `cursor` to read the next page; null on the last page."
    )


Limit = Annotated[
    int, Query(ge=1, le=MAX_LIMIT, description=f"At most this many items (1..{MAX_LIMIT}).")
]
"""The ``limit`` query parameter (default: `DEFAULT_LIMIT`)."""

Cursor = Annotated[
    str | None,
    Query(min_length=1, max_length=255, description="The `next_cursor` of the previous page."),
]
"""The ``cursor`` query parameter."""


def page_of(items: Sequence[T], limit: int, cursor_of: Callable[[T], str]) -> dict[str, object]:
    """A page from up to ``limit + 1`` items read in order: the first ``limit`` of them, and
    a cursor after the last one shown when there was more to read."""
    shown = list(items[:limit])
    more = len(items) > limit
    return {"items": shown, "next_cursor": cursor_of(shown[-1]) if more and shown else None}


def position_cursor(cursor: str | None) -> int:
    """A cursor that holds a position of the event log (0 without a cursor)."""
    if cursor is None:
        return 0
    if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > 18:
        raise InvalidInputError(
            f"cursor {cursor!r} is not one this list gave",
            hint="pass the next_cursor of the previous page, or leave cursor out",
            field="cursor",
        )
    return int(cursor)
