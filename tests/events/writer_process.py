"""A separate OS process that appends events, for the multi-process tests of the event store.

Usage: ``python writer_process.py URL STREAM BATCH_SIZE BATCHES`` (``BATCHES`` 0 = forever).
It prints ``ready`` once connected, waits for a line on stdin, then appends, printing
``committed <last seq>`` after each batch has committed.
"""

from __future__ import annotations

import asyncio
import sys

from promptline.core.events import ErrorData, ErrorEvent
from promptline.events.factory import create_event_store
from promptline.storage.database import create_engine


async def main(url: str, stream: str, batch_size: int, batches: int) -> None:
    store = create_event_store(create_engine(url), owns_engine=True)
    try:
        await store.last_position()  # connect before saying ready
        print("ready", flush=True)
        sys.stdin.readline()
        done = 0
        while batches == 0 or done < batches:
            events = [
                ErrorEvent(stream=stream, data=ErrorData(code="load", message=str(i)))
                for i in range(batch_size)
            ]
            if batch_size == 1:
                stored = [await store.append(events[0])]
            else:
                stored = await store.append_batch(events)
            done += 1
            print(f"committed {stored[-1].seq}", flush=True)
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
