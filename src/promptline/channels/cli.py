"""The CLI channel: one message per line read from a stream (a terminal, a pipe), each
answer written back as text. ``promptline chat`` is the full REPL; this is the channel form,
routed like every other channel (the conversation continues across invocations)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TextIO

from promptline.channels.base import InboundMessage, MessageSink, OutboundMessage
from promptline.core.errors import InvalidInputError

__all__ = ["CliChannel"]


class CliChannel:
    """Lines from ``reader`` become messages of ``user_id`` in ``thread_id``; answers go to
    ``out``. `done` is set when the input ends and every answer is written."""

    name = "cli"

    def __init__(
        self,
        reader: asyncio.StreamReader,
        out: TextIO,
        *,
        user_id: str = "local",
        thread_id: str = "terminal",
    ) -> None:
        self._reader = reader
        self._out = out
        self.user_id = user_id
        self.thread_id = thread_id
        self.done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, sink: MessageSink) -> None:
        """Read lines until the input ends, answering each in turn."""

        async def read() -> None:
            try:
                while line := await self._reader.readline():
                    try:
                        message = InboundMessage.of(
                            "cli", self.user_id, line.decode(), thread_id=self.thread_id
                        )
                    except InvalidInputError:
                        continue  # an empty line asks nothing
                    await sink(message)
            finally:
                self.done.set()

        self._task = asyncio.get_running_loop().create_task(read())

    async def deliver(self, message: OutboundMessage) -> None:
        """Write the answer (errors marked as such)."""
        prefix = "error: " if message.error else ""
        self._out.write(f"{prefix}{message.text}\n")
        self._out.flush()

    async def stop(self) -> None:
        """Stop reading."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.done.set()
