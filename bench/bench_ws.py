"""1,000 concurrent WebSocket clients against a real `promptline serve`: how long they take,
what each costs the server's CPU, how long ``session.send`` waits for its acknowledgement,
BEFORE (a git revision, ``--before``) and AFTER (this tree), in one invocation.

Two servers run side by side, each a ``promptline serve`` process of its own on a fresh
temporary home (SQLite, loopback only, the offline ``scripted/demo`` model streaming its
answer in 19 deltas): AFTER from this tree's ``src/``, BEFORE from ``git archive REV src``
exported to a temporary folder (put first on ``PYTHONPATH``). Each gets a warm-up of a few
clients first. Then, round after round, the two take turns (the order alternates, so neither
always goes first on a machine that warms up or gets busier), and in each turn N clients of
the bench process (the client library, ``promptline.client``):

1. setup: each connects, creates a session (``session.create``) and subscribes to it from its
   ``last_seq`` (``events.subscribe``), ``--connecting`` (100) clients at a time;
2. runs: once all are ready, every client sends one message (``session.send``) at once and
   reads the run's events until its ``run_completed``.

The server's CPU is read from ``/proc/<pid>/stat`` (utime + stime) before and after each
phase, so the clients' own work, in this process, is not counted; divided by N it is the CPU
per client. ``session.send`` ack latency is from the send to its reply (the message and its
run are in the log by then); run latency from the send to the ``run_completed``. Every phase
is bounded (``--phase-secs``); what has not finished by then counts as an error. One server
runs at a time: two sets of 1,000 clients at once would only measure the two fighting over
the two cores. ``--idle-memory`` also measures the RSS of idle connections and sessions.

    python bench/bench_ws.py [--clients N] [--rounds R] [--before REV] [--quick]
                             [--only after|before] [--idle-memory] [--in-flight K]

Linux only (CPU and RSS are read from ``/proc``). The process's open-files limit is raised
(``resource.setrlimit``) to fit 2 x N sockets, and the script says when it does.
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
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

from promptline.client import AsyncPromptLine, WebSocketConnection
from promptline.client.subscription import Subscription

ROOT = Path(__file__).resolve().parent.parent
BEFORE = "8f94a7e"
"""The revision compared against by default."""
CLIENTS = 1_000
PHASE_SECS = 120.0
"""The longest any phase may take before the benchmark gives up on what is left."""
WARM_UP_CLIENTS = 20
CONNECTING = 100
"""Clients connecting, creating their session and subscribing at once: 1,000 handshakes at
once from one client process on 2 shared cores time out (the client's 10 s open timeout)
before the server is the bottleneck."""
OPEN_CONCURRENCY = 200
"""Handshakes in flight at once while idle connections are opened."""
SETTLE_SECS = 1.0
"""Pause before reading the server's RSS, so that its allocations have settled."""
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
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


def cpu_secs(pid: int) -> float:
    """User + system CPU time process ``pid`` has used so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the name may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Gateway:
    """``promptline serve`` on a temporary home, as a process of its own; ``src`` (a tree's
    ``src/`` folder) goes first on its ``PYTHONPATH`` when given."""

    def __init__(self, label: str, home: Path, src: Path | None = None) -> None:
        self.label = label
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "PROMPTLINE_HOME": str(home)}
        if src is not None:
            self.env["PYTHONPATH"] = str(src)
        self.command = [sys.executable, "-c", "from promptline.cli.main import main; main()"]
        self.process: subprocess.Popen[bytes] | None = None
        self.log = home / "serve.log"
        self.key = ""

    def make_key(self) -> None:
        done = subprocess.run(
            [*self.command, "keys", "create", "--user", "bench", "--tenant", "bench", "--json"],
            env=self.env,
            capture_output=True,
            check=True,
            timeout=60,
        )
        self.key = json.loads(done.stdout)["key"]

    def launch(self) -> subprocess.Popen[bytes]:
        with self.log.open("wb") as log:
            return subprocess.Popen(
                [*self.command, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def start(self) -> None:
        self.process = self.launch()
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as probe:
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await probe.get("/healthz")).status_code == 200:
                        return
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{self.label}: promptline serve did not start\n{self.tail()}")
                await asyncio.sleep(0.1)

    def tail(self, lines: int = 15) -> str:
        """The end of the server's output."""
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    @property
    def pid(self) -> int:
        assert self.process is not None
        if self.process.poll() is not None:
            raise SystemExit(
                f"{self.label}: promptline serve exited (code {self.process.returncode}); "
                f"its last words:\n{self.tail()}"
            )
        return self.process.pid

    @property
    def rss(self) -> int:
        return rss_bytes(self.pid)

    @property
    def cpu(self) -> float:
        return cpu_secs(self.pid)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def gather_limited(count: int, make: Callable[[int], Awaitable[T]], limit: int) -> list[T]:
    gate = asyncio.Semaphore(limit)

    async def one(i: int) -> T:
        async with gate:
            return await make(i)

    return await asyncio.gather(*(one(i) for i in range(count)))


# -- one client ------------------------------------------------------------------------------


class Client:
    """One client: its connection, session, subscription, and how its message went."""

    def __init__(self, url: str, key: str) -> None:
        self.client = AsyncPromptLine(url, key)
        self.connection: WebSocketConnection | None = None
        self.subscription: Subscription | None = None
        self.session_id = ""
        self.ack = 0.0
        self.latency = 0.0
        self.deltas = 0
        self.ended = ""

    async def prepare(self) -> None:
        """Connect, create a session, subscribe to it from its last seq."""
        self.connection = await self.client.connect().open()
        session = await self.connection.create_session()
        self.session_id = session.id
        self.subscription = await self.connection.subscribe(session.id, from_seq=session.last_seq)

    async def talk(self, start: asyncio.Event, gate: asyncio.Semaphore) -> None:
        """Send one message; read its run's events until the run ends."""
        assert self.connection is not None
        assert self.subscription is not None
        await start.wait()
        async with gate:
            began = time.perf_counter()
            started = await self.connection.send(self.session_id, "hello")
            self.ack = time.perf_counter() - began
            async for event in self.subscription:
                if event.run_id != started.run_id:
                    continue
                self.deltas += event.type == "llm_delta"
                if event.type in ("run_completed", "run_failed", "run_cancelled"):
                    self.ended = event.type
                    break
            self.latency = time.perf_counter() - began

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()
        await self.client.aclose()


# -- one turn: N clients against one server ------------------------------------------------


@dataclass
class Turn:
    """What one turn measured."""

    clients: int
    setup_secs: float = 0.0
    setup_cpu: float = 0.0
    run_secs: float = 0.0
    run_cpu: float = 0.0
    completed: int = 0
    errors: list[str] = field(default_factory=list)
    acks: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    deltas: list[int] = field(default_factory=list)
    rss: int = 0


async def settle(tasks: list[asyncio.Task[None]], limit: float) -> list[BaseException | None]:
    """Wait for ``tasks`` at most ``limit`` seconds; each one's error (a timeout for those
    not done by then)."""
    if tasks:
        await asyncio.wait(tasks, timeout=limit)
    late = [t for t in tasks if not t.done()]
    for task in late:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return [
        TimeoutError(f"not done within {limit:.0f} s")
        if t in late
        else (t.exception() if not t.cancelled() else TimeoutError("cancelled"))
        for t in tasks
    ]


async def turn(
    gateway: Gateway, count: int, in_flight: int, phase_secs: float, connecting: int
) -> Turn:
    """``count`` clients connect, create a session and subscribe (``connecting`` at a time);
    then all send at once."""
    result = Turn(count)
    clients = [Client(gateway.url, gateway.key) for _ in range(count)]
    loop = asyncio.get_running_loop()
    try:
        cpu, began = gateway.cpu, time.perf_counter()
        gate = asyncio.Semaphore(connecting)

        async def prepare(client: Client) -> None:
            async with gate:
                await client.prepare()

        prepared = await settle([loop.create_task(prepare(c)) for c in clients], phase_secs)
        result.setup_secs = time.perf_counter() - began
        result.setup_cpu = gateway.cpu - cpu
        result.errors += [describe(e) for e in prepared if e is not None]
        ready = [c for c, e in zip(clients, prepared, strict=True) if e is None]

        start, gate = asyncio.Event(), asyncio.Semaphore(in_flight)
        tasks = [loop.create_task(c.talk(start, gate)) for c in ready]
        await asyncio.sleep(0.5)  # every client waits at the start line
        cpu, began = gateway.cpu, time.perf_counter()
        start.set()
        outcomes = await settle(tasks, phase_secs)
        result.run_secs = time.perf_counter() - began
        result.run_cpu = gateway.cpu - cpu
        result.rss = gateway.rss
        result.errors += [describe(e) for e in outcomes if e is not None]
        for client, error in zip(ready, outcomes, strict=True):
            if error is not None:
                continue
            if client.ended != "run_completed":
                result.errors.append(f"the run ended with {client.ended or 'nothing'}")
                continue
            result.completed += 1
            result.acks.append(client.ack)
            result.latencies.append(client.latency)
            result.deltas.append(client.deltas)
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    return result


def describe(error: BaseException) -> str:
    """An error's type and the first line of its message, ids left out (so alike errors
    count as one)."""
    first = str(error).splitlines()[0] if str(error) else ""
    first = re.sub(r"\b(ses|run|req|evt|sub)_[0-9A-Za-z]{6,}", "<id>", first)[:120]
    return f"{type(error).__name__}: {first}"


def percentile(values: list[float], pct: float) -> float:
    """The ``pct``-th percentile, nearest rank (NaN for no values)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


# -- idle memory -----------------------------------------------------------------------------


async def settled_rss(gateway: Gateway) -> int:
    await asyncio.sleep(SETTLE_SECS)
    return gateway.rss


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


async def idle_memory(gateway: Gateway, count: int) -> dict[str, float]:
    """What idle connections (without, then with compression) and sessions cost, each
    measured on top of the previous ones."""
    opened: list[WebSocketConnection] = []
    async with AsyncPromptLine(gateway.url, gateway.key) as client:
        try:
            gc.collect()
            plain, more = await open_idle(client, gateway, count, compression=False)
            opened += more
            deflate, more = await open_idle(client, gateway, count, compression=True)
            opened += more
            session = await create_idle_sessions(client, gateway, count)
            return {"plain": plain, "deflate": deflate, "session": session}
        finally:
            await asyncio.gather(*(c.close() for c in opened))


# -- the run ---------------------------------------------------------------------------------


@contextlib.contextmanager
def gateways(before: str | None, only: str | None) -> Iterator[list[Gateway]]:
    """AFTER (this tree) and BEFORE (``before`` exported), each on a home of its own."""
    with tempfile.TemporaryDirectory(prefix="promptline-bench-ws-") as folder:
        base = Path(folder)
        made: list[Gateway] = []
        try:
            if before is not None and only != "after":
                tree = base / "before"
                tree.mkdir()
                archive = subprocess.run(
                    ["git", "-C", str(ROOT), "archive", before, "src"],
                    check=True,
                    capture_output=True,
                )
                subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
                made.append(
                    Gateway(f"BEFORE ({before})", home_in(base / "home-before"), tree / "src")
                )
            if only != "before":
                made.append(Gateway("AFTER", home_in(base / "home-after"), ROOT / "src"))
            yield made
        finally:
            for gateway in made:
                gateway.stop()


@contextlib.contextmanager
def profiled(gateway: Gateway, folder: Path | None, round_no: int) -> Iterator[Path | None]:
    """Sample the server with py-spy (``--format raw``: folded stacks) while the block runs;
    the file written, or None without ``folder`` (or in rounds after the first)."""
    if folder is None or round_no > 0:
        yield None
        return
    folder.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^a-z0-9]+", "-", gateway.label.lower()).strip("-")
    output = folder / f"{name}.txt"
    spy = str(Path(sys.executable).parent / "py-spy")
    options = [
        "--format",
        "raw",
        "--gil",
        "--nonblocking",
        "--rate",
        "250",
        "--output",
        str(output),
    ]
    sampler = subprocess.Popen(
        [spy, "record", *options, "--pid", str(gateway.pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield output
    finally:
        sampler.send_signal(signal.SIGINT)
        try:
            sampler.wait(timeout=60)
        except subprocess.TimeoutExpired:
            sampler.kill()
            sampler.wait()


def profile_top(path: Path, top: int) -> list[str]:
    """The ``top`` functions of a py-spy raw profile, by self samples, as a table."""
    if not path.exists():
        return [f"(no profile: {path} was not written; is py-spy installed and allowed?)"]
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [short_frame(f) for f in stack.split(";")]
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    lines = ["| function | self % | total % |", "|---|---:|---:|"]
    for frame, count in own.most_common(top):
        lines.append(
            f"| `{frame}` | {100 * count / samples:.1f} | {100 * total[frame] / samples:.1f} |"
        )
    return lines


def short_frame(frame: str) -> str:
    """``function (path/to/file.py:line)`` as ``function (package/file.py)``."""
    match = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame.strip())
    if match is None:
        return frame.strip()
    function, where = match.groups()
    parts = Path(where).parts
    for anchor in ("promptline", "site-packages"):
        if anchor in parts:
            parts = parts[parts.index(anchor) + (anchor == "site-packages") :]
            break
    else:
        parts = parts[-2:]
    return f"{function} ({'/'.join(parts)})"


def home_in(home: Path) -> Path:
    home.mkdir()
    (home / "config.yaml").write_text(CONFIG, encoding="utf-8")
    return home


def ms(secs: float) -> str:
    return f"{secs * 1000:,.1f} ms" if secs == secs else "-"


def table(turns: dict[str, list[Turn]], count: int) -> list[str]:
    """The issue's table: one column per server, medians over its rounds."""

    def med(values: list[float]) -> float:
        return sorted(values)[len(values) // 2] if values else float("nan")

    def row(name: str, value: Callable[[list[Turn]], str]) -> str:
        return f"| {name} | " + " | ".join(value(ts) for ts in turns.values()) + " |"

    def all_of(ts: list[Turn], pick: Callable[[Turn], list[float]]) -> list[float]:
        return [v for t in ts for v in pick(t)]

    lines = [
        "| measure | " + " | ".join(turns) + " |",
        "|---|" + "---:|" * len(turns),
        row("clients (rounds)", lambda ts: f"{count:,} ({len(ts)})"),
        row(
            "runs completed; errors",
            lambda ts: f"{sum(t.completed for t in ts):,}; {sum(len(t.errors) for t in ts)}",
        ),
        row(
            "total time, first send to last `run_completed`",
            lambda ts: f"{med([t.run_secs for t in ts]):,.2f} s",
        ),
        row(
            "runs/s",
            lambda ts: f"{med([t.completed / t.run_secs for t in ts if t.run_secs]):,.1f}",
        ),
        row(
            "`session.send` ack p50 (send to its reply)",
            lambda ts: ms(percentile(all_of(ts, lambda t: t.acks), 50)),
        ),
        row(
            "`session.send` ack p99",
            lambda ts: ms(percentile(all_of(ts, lambda t: t.acks), 99)),
        ),
        row(
            "send to `run_completed` p50",
            lambda ts: ms(percentile(all_of(ts, lambda t: t.latencies), 50)),
        ),
        row(
            "send to `run_completed` p99",
            lambda ts: ms(percentile(all_of(ts, lambda t: t.latencies), 99)),
        ),
        row(
            "`llm_delta` events a client received per run",
            lambda ts: f"{med([float(d) for t in ts for d in t.deltas]):.0f}",
        ),
        row(
            "server CPU per client: connect + session + subscribe",
            lambda ts: ms(med([t.setup_cpu / t.clients for t in ts])),
        ),
        row(
            "server CPU per client: the run (send to `run_completed`)",
            lambda ts: ms(med([t.run_cpu / t.clients for t in ts])),
        ),
        row(
            "**server CPU per client, in all**",
            lambda ts: ms(med([(t.setup_cpu + t.run_cpu) / t.clients for t in ts])),
        ),
        row(
            "connect + session + subscribe, wall",
            lambda ts: f"{med([t.setup_secs for t in ts]):,.2f} s",
        ),
        row(
            "server RSS after the turn (max)",
            lambda ts: f"{max(t.rss for t in ts) / 2**20:,.0f} MiB",
        ),
    ]
    return lines


async def main(args: argparse.Namespace) -> int:
    count: int = args.clients
    limit_note = raise_open_files_limit(4 * count + 512)  # the servers are started after this
    print(f"{count:,} clients a turn, {args.rounds} round(s); {limit_note}")
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()}")
    with gateways(args.before, args.only) as servers:
        for gateway in servers:
            gateway.make_key()
            await gateway.start()
        for gateway in servers:  # load the code, fill the caches
            warm = await turn(
                gateway, WARM_UP_CLIENTS, WARM_UP_CLIENTS, args.phase_secs, WARM_UP_CLIENTS
            )
            if warm.errors:
                print(f"{gateway.label}: the warm-up failed: {warm.errors[0]}\n{gateway.tail()}")
                return 1
        turns: dict[str, list[Turn]] = {g.label: [] for g in servers}
        profiles: dict[str, Path] = {}
        for round_no in range(args.rounds):
            order = servers if round_no % 2 == 0 else servers[::-1]
            for gateway in order:
                with profiled(gateway, args.profile, round_no) as output:
                    done = await turn(
                        gateway, count, args.in_flight or count, args.phase_secs, args.connecting
                    )
                if output is not None:
                    profiles.setdefault(gateway.label, output)
                turns[gateway.label].append(done)
                print(
                    f"round {round_no + 1}, {gateway.label}: {done.completed:,} runs in "
                    f"{done.run_secs:.2f} s, {len(done.errors)} errors, server CPU "
                    f"{(done.setup_cpu + done.run_cpu) / count * 1000:.1f} ms/client",
                    flush=True,
                )
        memory = {}
        if args.idle_memory:
            for gateway in servers:
                memory[gateway.label] = await idle_memory(gateway, count)
        tails = {g.label: g.tail() for g in servers}

    at_once = "all at once" if not args.in_flight else f"at most {args.in_flight} runs at once"
    print(f"\nEvery client sends {at_once}; medians over the rounds, percentiles over every run.\n")
    print("\n".join(table(turns, count)))
    if memory:
        print("\n| server RSS per idle thing | " + " | ".join(memory) + " |")
        print("|---|" + "---:|" * len(memory))
        for key, name in (
            ("plain", "WebSocket connection, no compression"),
            ("deflate", "WebSocket connection, permessage-deflate"),
            ("session", "session"),
        ):
            print(
                f"| {name} | "
                + " | ".join(f"{m[key] / 1024:,.1f} KiB" for m in memory.values())
                + " |"
            )
    for label, output in profiles.items():
        print(f"\n{label}: where the server's CPU went (py-spy, {output}), top functions by")
        print(
            "samples on the CPU in the function itself (self) and in it or what it called (total):"
        )
        print("\n".join(profile_top(output, args.profile_top)))
    failed = False
    for label, ts in turns.items():
        errors = collections.Counter(e for t in ts for e in t.errors)
        if errors:
            failed = True
            common = "; ".join(f"{n} x {kind}" for kind, n in errors.most_common(5))
            print(f"\n{label} FAILED: {sum(errors.values())} error(s): {common}")
            print(f"its server's last words:\n{tails[label]}")
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=CLIENTS, help="clients a turn (1000)")
    parser.add_argument("--rounds", type=int, default=2, help="turns of each server (2)")
    parser.add_argument("--before", default=BEFORE, help=f"revision to compare ({BEFORE})")
    parser.add_argument("--only", choices=("after", "before"), help="measure one server only")
    parser.add_argument("--quick", action="store_true", help="200 clients, one round")
    parser.add_argument(
        "--in-flight", type=int, default=0, help="at most this many runs at once (0: all)"
    )
    parser.add_argument("--phase-secs", type=float, default=PHASE_SECS, help="phase time limit")
    parser.add_argument(
        "--connecting",
        type=int,
        default=CONNECTING,
        help=f"clients connecting (and setting up) at once ({CONNECTING})",
    )
    parser.add_argument(
        "--idle-memory", action="store_true", help="also measure idle connections and sessions"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="sample each server's first measured turn with py-spy into this folder",
    )
    parser.add_argument("--profile-top", type=int, default=25, help="profile rows (25)")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.rounds = min(args.clients, 200), 1
    if not 1 <= args.clients <= 10_000 or args.rounds < 1:
        raise SystemExit("--clients must be between 1 and 10,000, --rounds at least 1")
    raise SystemExit(asyncio.run(main(args)))
