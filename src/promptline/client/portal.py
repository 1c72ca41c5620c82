"""An event loop in a thread of its own, so blocking code can call the async client (the
sync `PromptLine` is the async client driven through one of these)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

__all__ = ["Portal"]

T = TypeVar("T")


class Portal:
    """Runs coroutines on a private loop (a daemon thread) and waits for their results."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="promptline-client", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coroutine`` on the loop and return its result (or raise its error).
        Interrupting the wait (Ctrl-C) cancels it."""
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("the sync client cannot be called from its own loop")
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no result within {timeout} s") from None
        except BaseException:
            future.cancel()
            raise

    def iterate(self, iterator: AsyncIterator[T]) -> Iterator[T]:
        """The items of an async iterator, one blocking step at a time. Leaving the loop
        early closes an async generator (as ``async for`` would not, but nobody could read
        it on), never an iterator object such as a run's stream, which may be read on."""
        try:
            while True:
                item = self.call(_next(iterator))
                if item is _END:
                    return
                yield item
        finally:
            if inspect.isasyncgen(iterator) and self.loop.is_running():
                self.call(iterator.aclose())

    def close(self) -> None:
        """Stop the loop and its thread (after the loop's own clean-up)."""
        if not self.loop.is_running():
            return

        async def shutdown() -> None:
            await self.loop.shutdown_asyncgens()

        self.call(shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


_END: Any = object()


async def _next(iterator: AsyncIterator[T]) -> T:
    try:
        return await iterator.__anext__()
    except StopAsyncIteration:
        return _END  # type: ignore[no-any-return]
