"""Sessions over REST: create, list, read, delete, export, import, search, and messages (sent
and left to run, waited for, or streamed)."""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

from promptline.client.models import (
    Mode,
    Page,
    QueueMode,
    Run,
    SearchHit,
    Session,
    StartedRun,
    items_of,
)
from promptline.client.run_stream import RunStream
from promptline.client.sse_streams import message_events

if TYPE_CHECKING:
    from promptline.client.async_client import AsyncPromptLine
    from promptline.core.events import Event

__all__ = ["Mode", "QueueMode", "Sessions"]


class Sessions:
    """``client.sessions``: the caller's sessions."""

    def __init__(self, client: AsyncPromptLine) -> None:
        self._client = client
        self._http = client.http

    async def create(
        self,
        *,
        agent: str | None = None,
        channel: str | None = None,
        context: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        ttl_secs: float | None = None,
        sandbox: str | None = None,
    ) -> Session:
        """A new session of the caller (``channel`` defaults to ``http`` on the server).
        ``sandbox`` gives it a sandbox of its own (a key with the scope ``sessions:sandbox``,
        an operator's or an admin's; others are refused)."""
        body = _body(
            agent=agent,
            channel=channel,
            context=context,
            metadata=metadata,
            ttl_secs=ttl_secs,
            sandbox=sandbox,
        )
        return Session.model_validate(await self._http.request("POST", "/v1/sessions", json=body))

    async def list(
        self,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        user_id: str | None = None,
        channel: str | None = None,
        status: str | None = None,
    ) -> Page[Session]:
        """One page of the sessions the caller may see, newest first."""
        params = {
            "limit": limit,
            "cursor": cursor,
            "user_id": user_id,
            "channel": channel,
            "status": status,
        }
        answer = await self._http.request("GET", "/v1/sessions", params=params)
        return Page[Session].model_validate(answer)

    async def iterate(
        self,
        *,
        page_size: int | None = None,
        user_id: str | None = None,
        channel: str | None = None,
        status: str | None = None,
    ) -> AsyncIterator[Session]:
        """Every session the caller may see, page after page."""
        cursor: str | None = None
        while True:
            page = await self.list(
                limit=page_size, cursor=cursor, user_id=user_id, channel=channel, status=status
            )
            for session in page.items:
                yield session
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def get(self, session_id: str, *, history_limit: int | None = None) -> Session:
        """The session with its history (only the latest ``history_limit`` messages when
        given; 0 for none)."""
        answer = await self._http.request(
            "GET", f"/v1/sessions/{session_id}", params={"history_limit": history_limit}
        )
        return Session.model_validate(answer)

    async def set_sandbox(self, session_id: str, sandbox: str) -> Session:
        """Give the session a sandbox of its own (``auto``, ``none``, ``process``,
        ``bubblewrap`` or ``docker``; the scope ``sessions:sandbox``). It only tightens: its
        commands run in the strongest of it, its channel's and its agent's sandbox."""
        answer = await self._http.request(
            "PUT", f"/v1/sessions/{session_id}/sandbox", json={"sandbox": sandbox}
        )
        return Session.model_validate(answer)

    async def delete(self, session_id: str) -> None:
        """End the session and hide it from lists and reads (its events stay in the log)."""
        await self._http.request("DELETE", f"/v1/sessions/{session_id}")

    async def export(self, session_id: str) -> dict[str, Any]:
        """The session as an export document (give it to `import_` to copy it)."""
        answer: dict[str, Any] = await self._http.request(
            "GET", f"/v1/sessions/{session_id}/export"
        )
        return answer

    async def import_(self, document: Mapping[str, Any], *, as_new_id: bool = False) -> Session:
        """Store an exported session (under a fresh id with ``as_new_id``)."""
        body = {"document": document, "as_new_id": as_new_id}
        answer = await self._http.request("POST", "/v1/sessions/import", json=body)
        return Session.model_validate(answer)

    async def search(
        self, query: str, *, session_id: str | None = None, limit: int | None = None
    ) -> builtins.list[SearchHit]:
        """Messages holding every word of ``query``, best match first."""
        params = {"q": query, "session_id": session_id, "limit": limit}
        answer = await self._http.request("GET", "/v1/sessions/search", params=params)
        return [SearchHit.model_validate(item) for item in items_of(answer)]

    # -- messages ------------------------------------------------------------------------------

    async def send(
        self,
        session_id: str,
        content: str,
        *,
        agent: str | None = None,
        model: str | None = None,
        mode: Mode | None = None,
        queue_mode: QueueMode | None = None,
    ) -> StartedRun:
        """Add a user message and start the run that answers it; returns at once."""
        body = _message(content, agent, model, mode, queue_mode)
        answer = await self._http.request("POST", f"/v1/sessions/{session_id}/messages", json=body)
        return StartedRun.model_validate(answer)

    async def send_and_wait(
        self,
        session_id: str,
        content: str,
        *,
        agent: str | None = None,
        model: str | None = None,
        mode: Mode | None = None,
        queue_mode: QueueMode | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpx enforces it on the request
    ) -> Run:
        """Send a message and wait (at most ``timeout`` seconds; None: as long as it takes)
        for the run to end; its record. A run waiting for an approval waits here too."""
        body = _message(content, agent, model, mode, queue_mode)
        answer = await self._http.request(
            "POST",
            f"/v1/sessions/{session_id}/messages",
            params={"wait": True},
            json=body,
            timeout=timeout,
        )
        return Run.model_validate(answer)

    def stream(
        self,
        session_id: str,
        content: str,
        *,
        agent: str | None = None,
        model: str | None = None,
        mode: Mode | None = None,
        queue_mode: QueueMode | None = None,
        via: Literal["sse", "websocket"] = "sse",
    ) -> RunStream:
        """Send a message and read its run's events as they happen::

            async with client.sessions.stream(session_id, "hello") as run:
                async for text in run.text():
                    print(text, end="")

        Over ``sse`` (the default) a cut stream is read on from the session's log; over
        ``websocket`` the client's shared connection carries it, and resumes it.
        """
        if via == "websocket":
            return self._stream_websocket(
                session_id, content, agent=agent, model=model, mode=mode, queue_mode=queue_mode
            )
        body = _message(content, agent, model, mode, queue_mode)
        client = self._client

        async def opener() -> tuple[AsyncIterator[Event], str | None]:
            stop = contextlib.AsyncExitStack()
            frames = await stop.enter_async_context(
                self._http.stream(
                    "POST",
                    f"/v1/sessions/{session_id}/messages",
                    params={"stream": True},
                    json=body,
                )
            )
            source = message_events(
                frames, self._http, session_id, backoff=client.backoff, stop=stop
            )
            return source, None

        return RunStream(opener, session_id=session_id, cancel=client.runs.cancel)

    def _stream_websocket(
        self,
        session_id: str,
        content: str,
        *,
        agent: str | None,
        model: str | None,
        mode: Mode | None,
        queue_mode: QueueMode | None,
    ) -> RunStream:
        client = self._client

        async def opener() -> tuple[AsyncIterator[Event], str | None]:
            connection = await client.websocket()
            inner = connection.stream(
                session_id, content, agent=agent, model=model, mode=mode, queue_mode=queue_mode
            )
            await inner.start()
            return inner, inner.run_id

        return RunStream(opener, session_id=session_id, cancel=client.runs.cancel)


def _message(
    content: str,
    agent: str | None,
    model: str | None,
    mode: Mode | None,
    queue_mode: QueueMode | None,
) -> dict[str, Any]:
    return _body(content=content, agent=agent, model=model, mode=mode, queue_mode=queue_mode)


def _body(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}
