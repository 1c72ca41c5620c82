"""1,000 concurrent WebSocket clients against a real `promptline serve`, and what idle
connections and sessions cost the server.

Starts `promptline serve` (a process of its own, on a temporary home, loopback only, the
offline `scripted/demo` model streaming its answer in 20 deltas) and, with the client
library (`promptline.client`):

1. memory: the server's RSS before and after opening N idle WebSocket connections (with and
   without permessage-deflate), and before and after creating N sessions, divided by N;
2. throughput: N clients each connect, create a session and subscribe to it; then all send a
   message at once (``--in-flight K``: at most K runs at a time) and read the run's streamed
   events until ``run_completed``. Every run must complete with no error; prints messages/s
   (N over the time from the first send to the last ``run_completed``) and the p50/p99 of each
   message's latency (send to ``run_completed``, not counting a wait for an in-flight slot).

Bounded: N clients (default 1,000; ``--clients``), every phase under a time limit. The
process's open-files limit is raised (``resource.setrlimit``) to fit N sockets on both sides;
the script says when it does. Linux only (RSS is read from ``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import json
import os
import platform
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx

from promptline.client import AsyncPromptLine, WebSocketConnection

CLIENTS = 1_000
PHASE_SECS = 300.0
"""The longest any phase may take before the benchmark gives up."""
OPEN_CONCURRENCY = 200
"""Handshakes in flight at once while connections are opened."""
SETTLE_SECS = 1.0
"""Pause before reading the server's RSS, so that its allocations have settled."""
CONFIG = """\
models:
  default: scripted/demo
agent:
  default_mode: act
  stream_enabled: true
gateway:
  rate_limit_per_minute: 10000000
"""
"""The scripted demo model streams; the rate limit is out of the way (every client uses the
same key, and every request and control-plane call takes from its budget)."""

T = TypeVar("T")


def raise_open_files_limit(needed: int) -> str:
    """Raise the soft limit of open files to ``needed`` (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return f"open-files limit {soft} (enough)"
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return f"open-files limit raised from {soft} to {target} with resource.setrlimit"


def rss_bytes(pid: int) -> int:
    """The resident set size of process ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc: this benchmark needs Linux")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Gateway:
    """``promptline serve`` on a temporary home, as a process of its own."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "PROMPTLINE_HOME": str(home)}
        self.script = str(Path(sys.executable).parent / "promptline")
        self.process: subprocess.Popen[bytes] | None = None
        self.log = home / "serve.log"

    def make_key(self) -> str:
        done = subprocess.run(
            [self.script, "keys", "create", "--user", "bench", "--tenant", "bench", "--json"],
            env=self.env,
            capture_output=True,
            check=True,
            timeout=60,
        )
        key: str = json.loads(done.stdout)["key"]
        return key

    def launch(self) -> subprocess.Popen[bytes]:
        with self.log.open("wb") as log:
            return subprocess.Popen(
                [self.script, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log_tail(self, lines: int = 15) -> str:
        """The end of the server's output."""
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    async def start(self) -> None:
        self.process = self.launch()
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as probe:
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await probe.get("/healthz")).status_code == 200:
                        return
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("promptline serve did not start")
                await asyncio.sleep(0.1)

    @property
    def rss(self) -> int:
        assert self.process is not None
        if self.process.poll() is not None:
            raise SystemExit(
                f"promptline serve exited (code {self.process.returncode}); its last words:\n"
                + self.log_tail()
            )
        return rss_bytes(self.process.pid)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def bounded(what: str, work: Awaitable[T]) -> T:
    try:
        async with asyncio.timeout(PHASE_SECS):
            return await work
    except TimeoutError:
        raise SystemExit(f"{what} took more than {PHASE_SECS:.0f} s: gave up") from None


async def gather_limited(count: int, make: Callable[[int], Awaitable[T]], limit: int) -> list[T]:
    gate = asyncio.Semaphore(limit)

    async def one(i: int) -> T:
        async with gate:
            return await make(i)

    return await asyncio.gather(*(one(i) for i in range(count)))


async def settled_rss(gateway: Gateway) -> int:
    await asyncio.sleep(SETTLE_SECS)
    return gateway.rss


# -- memory -----------------------------------------------------------------------------------


async def open_idle(
    client: AsyncPromptLine, gateway: Gateway, count: int, *, compression: bool
) -> tuple[float, list[WebSocketConnection]]:
    """Bytes of server RSS per open, idle WebSocket connection; the connections, still open
    (closing them first would let the next measure reuse their memory, and under-count)."""

    async def open_one(_: int) -> WebSocketConnection:
        return await client.connect(compression=compression).open()

    before = await settled_rss(gateway)
    opened = await gather_limited(count, open_one, OPEN_CONCURRENCY)
    after = await settled_rss(gateway)
    return (after - before) / count, opened


async def create_idle_sessions(client: AsyncPromptLine, gateway: Gateway, count: int) -> float:
    """Bytes of server RSS per idle session (created over REST, never used)."""
    before = await settled_rss(gateway)
    await gather_limited(count, lambda _: client.sessions.create(), 50)
    after = await settled_rss(gateway)
    return (after - before) / count


async def memory(client: AsyncPromptLine, gateway: Gateway, count: int) -> dict[str, float]:
    """What idle connections (without, then with compression) and sessions cost, each
    measured on top of the previous ones, after a warm-up."""
    opened: list[WebSocketConnection] = []
    try:
        for compression in (False, True):  # warm-up: load code, fill caches
            opened += (await open_idle(client, gateway, 20, compression=compression))[1]
        await create_idle_sessions(client, gateway, 20)
        gc.collect()
        plain, more = await open_idle(client, gateway, count, compression=False)
        opened += more
        deflate, more = await open_idle(client, gateway, count, compression=True)
        opened += more
        session = await create_idle_sessions(client, gateway, count)
        return {"plain": plain, "deflate": deflate, "session": session}
    finally:
        await asyncio.gather(*(c.close() for c in opened))


# -- throughput -------------------------------------------------------------------------------


class Bench:
    """One client: its connection, session and the latency of its message."""

    def __init__(self, url: str, key: str) -> None:
        self.client = AsyncPromptLine(url, key)
        self.connection: WebSocketConnection | None = None
        self.session_id = ""
        self.last_seq = 0
        self.latency = 0.0
        self.deltas = 0
        self.ended = ""

    async def prepare(self) -> None:
        self.connection = await self.client.connect().open()
        session = await self.connection.create_session()
        self.session_id, self.last_seq = session.id, session.last_seq

    async def talk(self, start: asyncio.Event, gate: asyncio.Semaphore) -> None:
        assert self.connection is not None
        await start.wait()
        async with gate:
            began = time.perf_counter()
            run = self.connection.stream(self.session_id, "hello", from_seq=self.last_seq)
            async for event in run:
                self.deltas += event.type == "llm_delta"
            self.latency = time.perf_counter() - began
        self.ended = run.final.type if run.final is not None else "no ending"

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()
        await self.client.aclose()


async def throughput(
    url: str, key: str, count: int, in_flight: int
) -> dict[str, float | int | str]:
    benches = [Bench(url, key) for _ in range(count)]
    began = time.perf_counter()
    prepared = await bounded(
        "connecting every client",
        asyncio.gather(*(b.prepare() for b in benches), return_exceptions=True),
    )
    setup_secs = time.perf_counter() - began
    errors = [r for r in prepared if isinstance(r, BaseException)]
    ready = [b for b, r in zip(benches, prepared, strict=True) if r is None]
    start = asyncio.Event()
    gate = asyncio.Semaphore(in_flight)
    tasks = [asyncio.ensure_future(b.talk(start, gate)) for b in ready]
    await asyncio.sleep(0.5)  # every client is waiting at the gate
    began = time.perf_counter()
    start.set()
    await asyncio.wait(tasks, timeout=PHASE_SECS)
    wall = time.perf_counter() - began
    unfinished = [t for t in tasks if not t.done()]
    for task in unfinished:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    outcomes = [
        TimeoutError(f"no run_completed within {PHASE_SECS:.0f} s")
        if t in unfinished
        else t.exception()
        for t in tasks
    ]
    errors += [r for r in outcomes if r is not None]
    completed = [b for b, r in zip(ready, outcomes, strict=True) if r is None]
    failed_runs = [b for b in completed if b.ended != "run_completed"]
    await asyncio.gather(*(b.close() for b in benches), return_exceptions=True)
    latencies = sorted(b.latency for b in completed)
    kinds = collections.Counter(f"{type(e).__name__}: {summary(e)}" for e in errors)
    first_error = "; ".join(f"{n} x {kind}" for kind, n in kinds.most_common(6))
    return {
        "clients": count,
        "completed": len(completed) - len(failed_runs),
        "errors": len(errors) + len(failed_runs),
        "unfinished": len(unfinished),
        "first_error": first_error,
        "setup_secs": setup_secs,
        "wall_secs": wall,
        "messages_per_sec": len(completed) / wall if wall else 0.0,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "deltas_per_run": statistics.median(b.deltas for b in completed) if completed else 0,
    }


def summary(error: BaseException) -> str:
    """The first line of an error's message, ids left out (so alike errors count as one)."""
    first = str(error).splitlines()[0] if str(error) else ""
    return re.sub(r"\b(ses|run|req|evt|sub)_[0-9A-Z]{10,}", "<id>", first)[:120]


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, round(pct / 100 * len(values) + 0.5) - 1))
    return values[index]


# -- the run ----------------------------------------------------------------------------------


@contextlib.contextmanager
def gateway_on_temporary_home() -> Iterator[Gateway]:
    with tempfile.TemporaryDirectory(prefix="promptline-bench-ws-") as folder:
        home = Path(folder) / "home"
        home.mkdir()
        (home / "config.yaml").write_text(CONFIG, encoding="utf-8")
        gateway = Gateway(home)
        try:
            yield gateway
        finally:
            gateway.stop()


async def main(count: int, in_flight: int) -> int:
    limit_note = raise_open_files_limit(2 * count + 512)  # the server is started after this
    print(f"{count:,} clients; {limit_note} (the server inherits it)")
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()}")
    with gateway_on_temporary_home() as gateway:
        key = gateway.make_key()
        await gateway.start()
        async with AsyncPromptLine(gateway.url, key) as client:
            cost = await bounded("idle connections and sessions", memory(client, gateway, count))
        result = await throughput(gateway.url, key, count, in_flight)
        rss_after = gateway.rss
        server_log = gateway.log_tail()

    at_once = "all at once" if in_flight >= count else f"at most {in_flight} runs at once"
    rows = [
        ("clients, each connected with a session and a subscription", f"{count:,}"),
        ("connect + create a session + subscribe, every client", f"{result['setup_secs']:.2f} s"),
        (f"messages sent ({at_once}); runs completed", f"{count:,}; {result['completed']:,}"),
        (
            "errors (of which no answer within the time limit)",
            f"{result['errors']} ({result['unfinished']})",
        ),
        ("messages/s (first send to last `run_completed`)", f"{result['messages_per_sec']:,.0f}"),
        (
            f"latency p50, send to `run_completed` ({result['deltas_per_run']:.0f} deltas)",
            f"{result['p50_ms']:,.0f} ms",
        ),
        ("latency p99", f"{result['p99_ms']:,.0f} ms"),
        ("server RSS per idle WebSocket connection (no compression)", kib(cost["plain"])),
        ("server RSS per idle WebSocket connection (permessage-deflate)", kib(cost["deflate"])),
        ("server RSS per idle session", kib(cost["session"])),
        ("server RSS at the end", f"{rss_after / 2**20:,.0f} MiB"),
    ]
    print()
    print("| measure | value |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    if result["errors"]:
        print(f"\nFAILED: {result['errors']} error(s), the most common: {result['first_error']}")
        print(f"the server's last words:\n{server_log}")
        return 1
    return 0


def kib(value: float) -> str:
    return f"{value / 1024:,.1f} KiB"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=CLIENTS, help="how many (default 1000)")
    parser.add_argument(
        "--in-flight",
        type=int,
        default=0,
        help="at most this many runs at once (default 0: every client sends at once)",
    )
    args = parser.parse_args()
    if not 1 <= args.clients <= 10_000:
        raise SystemExit("--clients must be between 1 and 10,000")
    raise SystemExit(asyncio.run(main(args.clients, args.in_flight or args.clients)))
