"""The event log: pages of it over REST, a session's live tail over SSE, and subscriptions
over the WebSocket; the live ones resume after a disconnect from the last seq delivered."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING

from promptline.client.models import Page, items_of
from promptline.client.sse_streams import session_tail
from promptline.core.events import Event, parse_event

if TYPE_CHECKING:
    from promptline.client.async_client import AsyncPromptLine
    from promptline.client.subscription import Subscription

__all__ = ["Events"]


class Events:
    """``client.events``: what happened, and what happens."""

    def __init__(self, client: AsyncPromptLine) -> None:
        self._client = client
        self._http = client.http

    async def list(
        self,
        *,
        session_id: str | None = None,
        run_id: str | None = None,
        types: Iterable[str] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Event]:
        """One page of stored events (of the sessions and runs the caller may see), oldest
        first; ``next_cursor`` continues after the page's last one."""
        params = {
            "session_id": session_id,
            "run_id": run_id,
            "types": ",".join(types) if types is not None else None,
            "limit": limit,
            "cursor": cursor,
        }
        answer = await self._http.request("GET", "/v1/events", params=params)
        items = [parse_event(item, lenient=True) for item in items_of(answer)]
        next_cursor = answer.get("next_cursor") if isinstance(answer, dict) else None
        return Page[Event](
            items=items, next_cursor=None if next_cursor is None else str(next_cursor)
        )

    def tail(self, session_id: str, *, from_seq: int | None = None) -> AsyncIterator[Event]:
        """The session's events after ``from_seq`` (None: from now on) over Server-Sent
        Events, for as long as you read; a cut stream is reopened where it stopped."""
        return session_tail(self._http, session_id, from_seq=from_seq, backoff=self._client.backoff)

    async def subscribe(self, session_id: str, *, from_seq: int | None = None) -> Subscription:
        """The session's events after ``from_seq`` (None: from now on) over the client's
        WebSocket; it resumes after a disconnect with no gap and no duplicate. Close it (or
        use ``async with``) when done."""
        connection = await self._client.websocket()
        return await connection.subscribe(session_id, from_seq=from_seq)
