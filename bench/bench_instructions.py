"""CPU instructions per operation on the event hot path, counted with valgrind's callgrind.

Wall time on a shared machine moves by 2x; instruction counts do not. Each operation runs
N1 and N2 times in separate processes; (I(N2) - I(N1)) / (N2 - N1) is the cost of one
operation with start-up and imports cancelled out.

    python bench/bench_instructions.py            # needs valgrind on PATH
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

import callgrind  # beside this script

OPS = {
    # name: (N1, N2, per-op unit)
    "encode_event": (200, 1200, "event"),
    "decode_event": (200, 1200, "event"),
    "sqlite_append_batch_100": (5, 25, "event"),
    "sqlite_read_stream": (2, 12, "event"),
    "memory_append": (1000, 6000, "event"),
}
READ_SIZE = 1000


def _message_event() -> object:
    from promptline.core.events import MessageReceived, MessageReceivedEvent
    from promptline.core.messages import Message

    return MessageReceivedEvent(
        session_id="ses_bench",
        user_id="alice",
        data=MessageReceived(message=Message(role="user", content="hello " * 20)),
    )


async def _sqlite_ops(op: str, n: int) -> None:
    from promptline.core.events import MessageReceived, MessageReceivedEvent
    from promptline.core.messages import Message
    from promptline.events.factory import create_event_store
    from promptline.storage.database import create_engine
    from promptline.storage.migrate import upgrade

    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(str(Path(tmp) / "bench.db"))
        await upgrade(engine)
        store = create_event_store(engine)

        def batch(stream: str) -> list[MessageReceivedEvent]:
            msg = Message(role="user", content="hello " * 20)
            return [
                MessageReceivedEvent(session_id=stream, data=MessageReceived(message=msg))
                for _ in range(100)
            ]

        if op == "sqlite_append_batch_100":
            await store.append_batch(batch("warm"))
            _instrument_from_here()
            for i in range(n):
                await store.append_batch(batch(f"s{i % 4}"))
        else:
            for _ in range(READ_SIZE // 100):
                await store.append_batch(batch("r"))
            await store.read_stream("r")
            _instrument_from_here()
            for _ in range(n):
                await store.read_stream("r")
        await store.close()
        await engine.dispose()


async def _memory_append(n: int) -> None:
    """Single-event appends to `InMemoryEventStore`; the events are built beforehand."""
    from promptline.core.events import MessageReceived, MessageReceivedEvent
    from promptline.core.messages import Message
    from promptline.events.memory import InMemoryEventStore

    store = InMemoryEventStore()
    msg = Message(role="user", content="hello " * 20)
    events = [
        MessageReceivedEvent(session_id=f"s{i % 4}", data=MessageReceived(message=msg))
        for i in range(n + 1)
    ]
    await store.append(events[0])
    _instrument_from_here()
    for event in events[1:]:
        await store.append(event)
    await store.close()


def _instrument_from_here() -> None:
    """Imports and set-up ran uninstrumented (fast); count from this point on."""
    callgrind.start_counting()


def work(op: str, n: int) -> None:
    """Run ``op`` ``n`` times (the process that valgrind watches)."""
    from promptline.core.events import decode_event, encode_event

    if op.startswith("sqlite"):
        asyncio.run(_sqlite_ops(op, n))
        return
    if op == "memory_append":
        asyncio.run(_memory_append(n))
        return
    event = _message_event()
    raw = encode_event(event)  # type: ignore[arg-type]
    decode_event(raw)
    _instrument_from_here()
    if op == "encode_event":
        for _ in range(n):
            encode_event(event)  # type: ignore[arg-type]
    else:
        for _ in range(n):
            decode_event(raw)


def count(op: str, n: int) -> int:
    return callgrind.count(__file__, ["--work", op, str(n)])


def main() -> None:
    if shutil.which("valgrind") is None:
        print("valgrind not found: install it (apt-get install valgrind) to count instructions")
        return
    print(f"{'operation':<26}{'N1':>6}{'N2':>6}{'instructions / ' + 'unit':>22}")
    for op, (n1, n2, unit) in OPS.items():
        i1, i2 = count(op, n1), count(op, n2)
        per = (i2 - i1) / (n2 - n1)
        if op == "sqlite_append_batch_100":
            per /= 100
        elif op == "sqlite_read_stream":
            per /= READ_SIZE
        print(f"{op:<26}{n1:>6}{n2:>6}{per:>16,.0f} / {unit}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--work":
        work(sys.argv[2], int(sys.argv[3]))
    else:
        main()
