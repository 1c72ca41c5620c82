"""One run's events as they happen, whether they come over SSE or the WebSocket: iterate the
events, or just the answer's text, until the run ends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from promptline.core.events import Event, LlmDeltaEvent, RunCompletedEvent

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["TERMINAL_TYPES", "RunStream"]

TERMINAL_TYPES = frozenset({"run_completed", "run_failed", "run_cancelled"})
"""The event types that end a run."""

Opener = Callable[[], Awaitable[tuple[AsyncIterator[Event], str | None]]]
"""Starts the run (or opens its stream): the event source, and the run id when known."""


class RunStream:
    """The events of one run, ending with its ``run_completed``, ``run_failed`` or
    ``run_cancelled`` (kept as `final`).

    It starts on ``async with`` (or the first iteration): errors such as an unknown session
    are raised there. `run_id` is known once started over the WebSocket, after the first
    event over SSE. Leaving early does not stop the run; `cancel` does.
    """

    def __init__(
        self,
        opener: Opener,
        *,
        session_id: str,
        cancel: Callable[[str], Awaitable[Any]],
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.session_id = session_id
        self.run_id: str | None = None
        self.final: Event | None = None
        """The event that ended the run, once seen."""
        self._opener = opener
        self._cancel = cancel
        self._close = close
        self._source: AsyncIterator[Event] | None = None
        self._done = False

    async def start(self) -> RunStream:
        """Start the run (once); later calls do nothing."""
        if self._source is None and not self._done:
            self._source, run_id = await self._opener()
            self.run_id = self.run_id or run_id
        return self

    def __aiter__(self) -> RunStream:
        return self

    async def __anext__(self) -> Event:
        if self._done:
            raise StopAsyncIteration
        source = (await self.start())._source
        if source is None:
            raise StopAsyncIteration
        while True:
            try:
                event = await source.__anext__()
            except StopAsyncIteration:
                await self.aclose()
                raise
            if self.run_id is None and event.run_id is not None:
                self.run_id = event.run_id
            if event.run_id != self.run_id:
                continue  # another run of the same session
            if event.type in TERMINAL_TYPES:
                self.final = event
                await self.aclose()
            return event

    async def text(self) -> AsyncIterator[str]:
        """The answer's text as the model writes it (the text of every ``llm_delta``)."""
        async for event in self:
            if isinstance(event, LlmDeltaEvent) and event.data.text:
                yield event.data.text

    async def wait(self) -> Event:
        """Read the rest of the run; the event that ended it."""
        async for _ in self:
            pass
        if self.final is None:
            raise RuntimeError("the run's stream ended before the run did")
        return self.final

    @property
    def output(self) -> str:
        """The final answer's text ("" until the run completed, or when it did not)."""
        if isinstance(self.final, RunCompletedEvent) and self.final.data.output is not None:
            return self.final.data.output.text
        return ""

    async def cancel(self, reason: str = "cancelled by the client") -> None:
        """Cancel the run in the gateway (its stream then ends with ``run_cancelled``)."""
        await self.start()
        if self.run_id is None:
            raise RuntimeError("the run id is not known yet: read the first event first")
        await self._cancel(self.run_id)

    async def aclose(self) -> None:
        """Stop reading (the run goes on)."""
        if self._done:
            return
        self._done = True
        source, self._source = self._source, None
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()
        if self._close is not None:
            await self._close()

    async def __aenter__(self) -> RunStream:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
