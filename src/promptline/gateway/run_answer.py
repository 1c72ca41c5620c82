"""Follows one run on the event bus for a caller waiting on its answer: the answer's text as
the model streams it (tool-call rounds left out), the finish reason of the model call that
gave it, and the run's end."""

from __future__ import annotations

from collections.abc import AsyncIterator

from promptline.core.errors import SubscriberLagged
from promptline.core.events import Event, LlmDeltaEvent, LlmResultEvent
from promptline.events.protocols import EventBus, EventFilter, Subscription

__all__ = ["RUN_ENDINGS", "RunAnswer"]

RUN_ENDINGS = frozenset({"run_completed", "run_failed", "run_cancelled"})


class RunAnswer:
    """Subscribes to run ``run_id``'s events when made. Make it right after
    `Runtime.start_run` returns, with no ``await`` in between: the run's task is scheduled
    then but has not run, so none of its events is missed.

    ``deltas`` asks for the streamed text (`pieces` yields it); without, `wait` only learns
    the finish reason and the end. A subscriber that falls behind picks up again from the
    event log, so a slow reader loses nothing.
    """

    def __init__(self, bus: EventBus, run_id: str, *, deltas: bool) -> None:
        types = {"llm_result", *RUN_ENDINGS} | ({"llm_delta"} if deltas else set())
        self._bus = bus
        self._filter = EventFilter(run_id=run_id, types=frozenset(types))
        self._sub: Subscription = bus.subscribe(self._filter)
        self.ended = False
        """True once the run's end (completed, failed or cancelled) was seen."""
        self.closed = False
        """True once `close` was called (the reader left)."""
        self.finish_reason: str | None = None
        """The finish reason of the run's latest model call (the answer's, once it ended)."""
        self._last_call: str | None = None
        self._streamed: set[str] = set()  # model calls (their llm_command ids) with text sent
        self._tool_rounds: set[str] = set()  # model calls that asked for tools

    @property
    def answer_streamed(self) -> bool:
        """True when text of the model call that gave the answer was yielded by `pieces`
        (False when the model did not stream: the answer then has to be sent whole)."""
        return self._last_call is not None and self._last_call in self._streamed

    async def pieces(self) -> AsyncIterator[str]:
        """The text the run's model calls stream, as it comes, until the run ends (or
        `close`, or the bus closing). A call's text stops being passed on at its first
        tool-call fragment: the rounds that call tools are not part of the answer."""
        while not self.closed:
            try:
                async for event in self._sub:
                    text = self._take(event)
                    if text:
                        yield text
                    if self.ended:
                        return
                return  # closed: by `close`, or the bus is shutting down
            except SubscriberLagged as lag:
                await self._sub.close()
                self._sub = self._bus.subscribe(self._filter, from_position=lag.last_position)

    async def wait(self) -> None:
        """Read the run's events until it ends (or `close`, or the bus closing)."""
        async for _ in self.pieces():
            pass

    async def close(self) -> None:
        """Stop following (the run goes on); a `pieces` in progress ends."""
        self.closed = True
        await self._sub.close()

    def _take(self, event: Event) -> str:
        call = event.causation_id or ""
        if isinstance(event, LlmDeltaEvent):
            data = event.data
            if data.tool_call is not None:
                self._tool_rounds.add(call)
            elif data.text and call not in self._tool_rounds:
                self._streamed.add(call)
                return data.text
        elif isinstance(event, LlmResultEvent):
            self.finish_reason = event.data.finish_reason
            self._last_call = call
        elif event.type in RUN_ENDINGS:
            self.ended = True
        return ""
