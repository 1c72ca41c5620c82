"""Follows one run on the event bus for a caller waiting on its answer: the answer's text as
the model streams it (tool-call rounds and ``<thinking>`` left out), the finish reason of the
model call that gave it, the run's other events if asked, and the run's end."""

from __future__ import annotations

from collections.abc import AsyncIterator

from promptline.core.errors import SubscriberLagged
from promptline.core.events import Event, LlmDeltaEvent, LlmResultEvent
from promptline.events.protocols import EventBus, EventFilter, Subscription
from promptline.runtime.records import RUN_ENDINGS

__all__ = ["RUN_ENDINGS", "RunAnswer", "ThinkingFilter"]


class RunAnswer:
    """Subscribes to run ``run_id``'s events when made. Make it right after
    `Runtime.start_run` returns, with no ``await`` in between: the run's task is scheduled
    then but has not run, so none of its events is missed.

    ``deltas`` asks for the streamed text (`pieces` yields it); without, `wait` only learns
    the finish reason and the end. ``everything`` follows every event of the run (`steps`
    yields them between the text). ``thinking`` (the agent's ``use_chain_of_thought``) takes
    ``<thinking>`` blocks out of the text as it streams, as the run takes them out of the
    answer. A subscriber that falls behind picks up again from the event log, so a slow
    reader loses nothing.
    """

    def __init__(
        self,
        bus: EventBus,
        run_id: str,
        *,
        deltas: bool,
        thinking: bool = False,
        everything: bool = False,
    ) -> None:
        types = {"llm_result", *RUN_ENDINGS} | ({"llm_delta"} if deltas else set())
        self._bus = bus
        self._filter = EventFilter(run_id=run_id, types=None if everything else frozenset(types))
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
        self._thinking = thinking
        self._filters: dict[str, ThinkingFilter] = {}  # per model call, with ``thinking``

    @property
    def answer_streamed(self) -> bool:
        """True when text of the model call that gave the answer was yielded by `pieces`
        (False when the model did not stream: the answer then has to be sent whole)."""
        return self._last_call is not None and self._last_call in self._streamed

    async def pieces(self) -> AsyncIterator[str]:
        """The text the run's model calls stream, as it comes, until the run ends (or
        `close`, or the bus closing). A call's text stops being passed on at its first
        tool-call fragment: the rounds that call tools are not part of the answer."""
        async for item in self.steps():
            if isinstance(item, str):
                yield item

    async def steps(self) -> AsyncIterator[str | Event]:
        """As `pieces`, with the run's other events (everything but its deltas, when made
        with ``everything``) in between, in the order they were recorded."""
        while not self.closed:
            try:
                async for event in self._sub:
                    text = self._take(event)
                    if text:
                        yield text
                    if not isinstance(event, LlmDeltaEvent):
                        yield event
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
        text = ""
        if isinstance(event, LlmDeltaEvent):
            data = event.data
            if data.tool_call is not None:
                self._tool_rounds.add(call)
            elif data.text and call not in self._tool_rounds:
                text = self._visible(call, data.text)
        elif isinstance(event, LlmResultEvent):
            self.finish_reason = event.data.finish_reason
            self._last_call = call
            kept = self._filters.pop(call, None)
            if kept is not None and call not in self._tool_rounds:
                text = kept.flush()
        elif event.type in RUN_ENDINGS:
            self.ended = True
        if text:
            self._streamed.add(call)
        return text

    def _visible(self, call: str, text: str) -> str:
        if not self._thinking:
            return text
        found = self._filters.get(call)
        if found is None:
            found = self._filters[call] = ThinkingFilter()
        return found.feed(text)


class ThinkingFilter:
    """Takes ``<thinking>...</thinking>`` blocks out of text that arrives in pieces (a tag
    may be split between pieces; an unclosed block hides the rest), and the blank space
    before the first visible text, as `promptline.runtime.prompt.split_reasoning` does."""

    OPEN = "<thinking>"
    CLOSE = "</thinking>"

    def __init__(self) -> None:
        self._inside = False
        self._held = ""  # the end of the text so far, if it may be the start of a tag
        self._shown = False

    def feed(self, text: str) -> str:
        """The visible part of ``text`` that can be passed on now."""
        buffer, self._held = self._held + text, ""
        out: list[str] = []
        while buffer:
            tag = self.CLOSE if self._inside else self.OPEN
            at = buffer.find(tag)
            if at >= 0:
                if not self._inside:
                    out.append(buffer[:at])
                buffer = buffer[at + len(tag) :]
                self._inside = not self._inside
                continue
            keep = _partial_tag(buffer, tag)
            if not self._inside:
                out.append(buffer[: len(buffer) - keep])
            self._held = buffer[len(buffer) - keep :]
            buffer = ""
        return self._show("".join(out))

    def flush(self) -> str:
        """What was held back at the end of the text (nothing inside a block)."""
        held, self._held = self._held, ""
        return "" if self._inside else self._show(held)

    def _show(self, text: str) -> str:
        if not self._shown:
            text = text.lstrip()
            self._shown = bool(text)
        return text


def _partial_tag(text: str, tag: str) -> int:
    """How many characters at the end of ``text`` could begin ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0
