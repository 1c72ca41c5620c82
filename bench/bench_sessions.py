"""Cost of appending to one session as its history grows (target: flat from message 10 to 10,000).

For windows of appends starting at message 10, 1,000 and 10,000 of one session on SQLite,
prints the median and p90 time per `SessionManager.append_message` and the bytes the database
grows per append (file size with the WAL checkpointed, before and after the window). The
history between windows is filled through the log and `recover`, which projects it with
the same code as live appends, only faster.

With ``--runs``, instead: what the session record costs an agent run. One in-process run of
the default assistant (the offline ``scripted/demo`` model, SQLite) with and without a
session, in this tree and in ``--before`` (a git revision, exported to a temporary folder
and run in a child process), interleaved: runs per second and callgrind instructions per run.

    python bench/bench_sessions.py --runs [--before REV] [--rounds N] [--no-callgrind]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from promptline.core.events import MessageReceived, MessageReceivedEvent
from promptline.core.messages import Message
from promptline.events.bus import InProcessEventBus
from promptline.events.factory import create_event_store
from promptline.events.protocols import EventStore
from promptline.sessions import Principal, SessionManager
from promptline.storage.database import create_engine
from promptline.storage.migrate import upgrade

WINDOW = 100
STARTS = (10, 1_000, 10_000)
FILL_BATCH = 1_000
TEXT = (
    "Could you summarise the quarterly report and list the three largest cost items, "
    "with a short note on each? Keep it under a hundred words, please."
)
FLAT_RATIO = 1.5  # the 10,000th-message window may be at most this much slower than the 10th

USER = Principal(tenant_id="bench", user_id="bench")


async def _checkpointed_size(engine: AsyncEngine, path: Path) -> int:
    async with engine.connect() as conn:
        await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        await conn.commit()
    return _file_sizes(path)


def _file_sizes(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


async def _fill(manager: SessionManager, store: EventStore, sid: str, upto: int, have: int) -> int:
    """Add messages through the log (batched) and project them with `recover`."""
    while have < upto:
        count = min(FILL_BATCH, upto - have)
        events = [
            MessageReceivedEvent(
                stream=sid,
                session_id=sid,
                tenant_id=USER.tenant_id,
                user_id=USER.user_id,
                data=MessageReceived(message=Message(role="user", content=f"{TEXT} #{have + i}")),
            )
            for i in range(count)
        ]
        await store.append_batch(events)
        await manager.recover()
        have += count
    return have


async def run() -> list[tuple[int, float, float, float]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        engine = create_engine(f"sqlite+aiosqlite:///{path}")
        await upgrade(engine)
        store = create_event_store(engine)
        bus = InProcessEventBus(store)
        manager = SessionManager(engine, bus, store=store, default_ttl=None)
        session = await manager.create(USER, channel="bench", context={"k": "v" * 2000})
        have = 0
        for start in STARTS:
            have = await _fill(manager, store, session.id, start, have)
            before = await _checkpointed_size(engine, path)
            times = []
            for i in range(WINDOW):
                message = Message(role="user", content=f"{TEXT} #{have + i}")
                t0 = time.perf_counter()
                await manager.append_message(session.id, message, USER)
                times.append((time.perf_counter() - t0) * 1000)
            have += WINDOW
            after = await _checkpointed_size(engine, path)
            p90 = sorted(times)[int(WINDOW * 0.9)]
            rows.append((start, statistics.median(times), p90, (after - before) / WINDOW))
        got = await manager.get(session.id, USER, history_limit=1)
        assert got.message_count == have, (got.message_count, have)
        await bus.close()
        await engine.dispose()
    return rows


# --- what the session record costs a run ----------------------------------------------------

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BEFORE = "560ea8d"
"""The revision before the session record left the run's critical path."""


def run_work(mode: str, n: int, counted: bool) -> None:
    """In a child process: ``n`` runs of the default assistant, each in a fresh session
    (``session``) or alone (``alone``); prints the seconds they took. Under callgrind,
    counting starts after set-up and a warm-up."""
    import callgrind
    from promptline.app import build_app
    from promptline.config import load_settings

    async def go() -> None:
        with tempfile.TemporaryDirectory(prefix="bench-session-runs-") as home:
            settings = load_settings(None, environ={"PROMPTLINE_HOME": home})
            async with build_app(settings) as app:
                runtime = await app.start_runtime()
                principal = Principal(user_id="bench")
                session = mode == "session"

                async def once() -> None:
                    options: dict[str, object] = {}
                    if session:
                        created = await app.sessions.create(principal, channel="bench")
                        options = {"session_id": created.id, "principal": principal}
                    result = await runtime.run("hello", **options)
                    if result.status != "completed":
                        raise RuntimeError(f"run {result.status}: {result.error}")

                for _ in range(3):
                    await once()
                if counted:
                    callgrind.start_counting()
                started = time.perf_counter()
                for _ in range(n):
                    await once()
                print(time.perf_counter() - started)

    asyncio.run(go())


def _child(src: Path, mode: str, n: int) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--run-work", mode, str(n)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{HERE}"},
        timeout=600,
    )
    return float(out.stdout.strip().splitlines()[-1])


def runs_report(before: str, rounds: int, n: int, with_callgrind: bool) -> None:
    import callgrind

    with tempfile.TemporaryDirectory(prefix="bench-session-runs-before-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", before, "src"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        builds = {f"before ({before})": Path(tmp) / "src", "after (this tree)": ROOT / "src"}
        rows = [(build, mode) for build in builds for mode in ("alone", "session")]
        rates: dict[tuple[str, str], list[float]] = {row: [] for row in rows}
        for r in range(rounds):
            for build, mode in rows if r % 2 == 0 else reversed(rows):
                rates[build, mode].append(n / _child(builds[build], mode, n))
        counts: dict[tuple[str, str], float] = {}
        if with_callgrind:
            low, high = 5, 25
            for build, mode in rows:
                a, b = (
                    callgrind.count(
                        __file__,
                        ["--run-work", mode, str(k), "--counted"],
                        env={"PYTHONPATH": f"{builds[build]}{os.pathsep}{HERE}"},
                        timeout=1800,
                    )
                    for k in (low, high)
                )
                counts[build, mode] = (b - a) / (high - low)
    print(f"one in-process run of the default assistant (scripted/demo, SQLite), {n} runs x")
    print(f"{rounds} rounds, interleaved; runs/s median, instructions per run (callgrind)")
    print("| build | run | runs/s | instructions/run |")
    print("|---|---|---:|---:|")
    for build, mode in rows:
        counted = f"{counts[build, mode] / 1e6:.2f} M" if counts else "-"
        rate = statistics.median(rates[build, mode])
        print(f"| {build} | {mode} | {rate:,.0f} | {counted} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", action="store_true", help="what the session costs a run")
    parser.add_argument("--before", default=BEFORE, help="the revision to compare against")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (--runs)")
    parser.add_argument("--n", type=int, default=100, help="runs per round (--runs)")
    parser.add_argument("--no-callgrind", action="store_true", help="skip instruction counts")
    parser.add_argument("--run-work", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--counted", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_work:
        run_work(args.run_work[0], int(args.run_work[1]), args.counted)
        return 0
    if args.runs:
        runs_report(args.before, args.rounds, args.n, not args.no_callgrind)
        return 0
    rows = asyncio.run(run())
    print(f"appending to one session on SQLite, {WINDOW} appends per window")
    print(f"{'from message':>13}{'median ms':>11}{'p90 ms':>9}{'bytes/append':>14}")
    for start, median, p90, size in rows:
        print(f"{start:>13,}{median:>11.2f}{p90:>9.2f}{size:>14,.0f}")
    first, last = rows[0][1], rows[-1][1]
    flat = last <= first * FLAT_RATIO
    print(f"flat (10,000th window within {FLAT_RATIO}x of the 10th): {'yes' if flat else 'NO'}")
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
