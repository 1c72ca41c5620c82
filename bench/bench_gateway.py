"""What the gateway adds to a request, before and after: ``POST /v1/chat/completions`` through
``promptline serve`` against the same request sent straight to the provider, and the
throughput of ``POST /v1/sessions/{id}/messages?wait=true`` against the runtime's own runs/s.

The provider is a zero-latency fake OpenAI server in a subprocess (the agent benchmark's,
``bench_agents.py``, answering every chat completion with one fixed text). The agent
``bench`` has no tools: one run is one model call, every event written to SQLite.

Two gateways run as server processes, each ``promptline serve`` (its CLI, its logging, its
event loop and HTTP parser) on a home of its own: BEFORE, the tree of ``--before`` (a git
revision, exported with ``git archive`` and put first on ``PYTHONPATH``), and AFTER, this
tree. Beside each, a runtime process of the same tree and config runs the same task in
process (``app.runtime.run``), which gives the runtime's own runs/s.

Latency (one keep-alive connection per row, the same hand-written HTTP/1.1 client for every
row, requests one at a time): each round sends one request to each row, in a rotating
order, after a warm-up. Rows: direct to the provider, BEFORE's gateway and AFTER's gateway;
then (not interleaved) each tree's run in process, in its runtime process. BEFORE runs as it
was installed, without uvloop and httptools (uvicorn would pick httptools up by itself).
Throughput: each round runs ``--clients`` concurrent clients, each
with a session of its own, for ``--window`` seconds against each gateway, and the same
concurrency of runs in each runtime process, in a rotating order.

``--profile`` then serves another gateway of each tree, samples it with py-spy (cProfile
without py-spy) while it answers ``--profile-requests`` chat completions and prints the
profile's top entries. ``--callgrind N`` then counts, with valgrind's callgrind, the CPU
instructions of N chat completions in a gateway process of each tree, and of N runs in a
runtime process of each tree (what the gateway adds is the difference):

    python bench/bench_gateway.py [--quick] [--before REV] [--rounds N] [--seconds S]
                                  [--clients N] [--window S] [--tput-rounds N]
                                  [--profile] [--profile-requests N] [--callgrind N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import orjson  # noqa: E402

import bench_agents  # noqa: E402 - the fake server lives there

BEFORE = "8f94a7e"
TARGET_ADDED_P50_MS = 1.0
TARGET_TPUT_RATIO = 0.5
AGENT = "bench"
MODEL = bench_agents.MODEL
PROMPT = "Say hello"
FINAL = "Hello from the fake provider."


@dataclass(frozen=True)
class Budget:
    warmup: int = 100  # requests to each row before anything is measured
    rounds: int = 2000  # latency rounds (one request to each row)
    seconds: float = 90.0  # the latency phase stops early past this
    clients: int = 16  # concurrent clients (and runs) for the throughput
    window: float = 3.0  # seconds each throughput row runs in a round
    tput_rounds: int = 5
    profile_requests: int = 3000


QUICK = Budget(warmup=20, rounds=300, seconds=15.0, window=1.5, tput_rounds=2, profile_requests=500)

CONFIG = """\
models:
  default: fake/{model}
  providers:
    fake:
      type: openai
      base_url: "{base_url}"
      api_key: bench
      models: [{model}]
agents:
  {agent}:
    model: fake/{model}
    tools: []
agent:
  default_mode: act
  stream_enabled: false
gateway:
  rate_limit_per_minute: 100000000
"""


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100), nearest rank."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


# --- the fake provider: one fixed answer ------------------------------------------------------

_ANSWER = bench_agents._completion(
    {"role": "assistant", "content": FINAL, "refusal": None},
    "stop",
    {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
)


def _answer(body: bytes, stats: dict[str, int]) -> bytes:
    try:
        doc = orjson.loads(body)
        doc["messages"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return bench_agents._response("400 Bad Request", b'{"error":{"message":"bad body"}}')
    stats["calls"] += 1
    return bench_agents._response("200 OK", _ANSWER)


class Provider(bench_agents.Server):
    """The fake provider's process (``--fake FD``)."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.port = self.sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        fd = self.sock.fileno()
        self.proc = subprocess.Popen([sys.executable, __file__, "--fake", str(fd)], pass_fds=[fd])


# --- a small HTTP/1.1 keep-alive client (the same for every row) ------------------------------

_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.I)


class Client:
    """One keep-alive connection; `post` sends prebuilt bytes and returns (status, body)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> Client:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        assert self.reader is not None
        assert self.writer is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        match = _LENGTH.search(head)
        if match is None:
            raise RuntimeError(f"no Content-Length in {head[:200]!r}")
        body = await self.reader.readexactly(int(match.group(1)))
        return int(head[9:12]), body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()


def request(method: str, path: str, body: Any, key: str | None) -> bytes:
    data = orjson.dumps(body) if body is not None else b""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if key:
        lines.append(f"Authorization: Bearer {key}")
    if body is not None:
        lines.append("Content-Type: application/json")
    lines.append(f"Content-Length: {len(data)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


def chat_request(model: str, key: str | None) -> bytes:
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}]}
    return request("POST", "/v1/chat/completions", body, key)


def check_completion(status: int, body: bytes) -> None:
    if status != 200:
        raise RuntimeError(f"answered {status}: {body[:300]!r}")
    text = orjson.loads(body)["choices"][0]["message"]["content"]
    if text != FINAL:
        raise RuntimeError(f"unexpected answer {text!r}")


# --- the processes: gateways and runtimes of a tree -------------------------------------------

LAUNCHER = """\
import atexit, os, sys
out = os.environ.get("BENCH_PROFILE")
if out:
    import cProfile
    profile = cProfile.Profile()
    def _dump():
        profile.disable()
        profile.dump_stats(out)
    atexit.register(_dump)
    profile.enable()
from promptline.cli.main import main
sys.argv[0] = "promptline"
main()
"""


NO_FAST_SERVER = "raise ImportError('left out: BEFORE ran without it')\n"


def _env(src: Path, home: Path, *, before: bool = False) -> dict[str, str]:
    """The environment of a process of the tree at ``src``. ``before``: as BEFORE was
    installed, without httptools (uvicorn would pick it up by itself) nor uvloop."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTLINE")}
    path = str(src)
    if before:
        shim = home / "shim"
        for name in ("httptools", "uvloop"):
            (shim / name).mkdir(parents=True)
            (shim / name / "__init__.py").write_text(NO_FAST_SERVER, encoding="utf-8")
        path = f"{shim}{os.pathsep}{src}"
    env.update(PYTHONPATH=path, PROMPTLINE_HOME=str(home), COLUMNS="500", NO_COLOR="1")
    return env


def _home(base: Path, name: str, provider_url: str) -> Path:
    home = base / name
    home.mkdir(parents=True)
    (home / "config.yaml").write_text(
        CONFIG.format(model=MODEL, base_url=provider_url, agent=AGENT), encoding="utf-8"
    )
    return home


class GatewayProcess:
    """``promptline serve --port 0`` of the tree at ``src`` on its own home; its port and the
    admin key its first start made."""

    def __init__(
        self,
        src: Path,
        home: Path,
        *,
        before: bool,
        profile: Path | None = None,
        prefix: list[str] | None = None,
    ) -> None:
        launcher = home / "launch.py"
        launcher.write_text(LAUNCHER, encoding="utf-8")
        env = _env(src, home, before=before)
        if profile is not None:
            env["BENCH_PROFILE"] = str(profile)
        self.log = home / "serve.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    *(prefix or []),
                    sys.executable,
                    str(launcher),
                    "--config",
                    str(home / "config.yaml"),
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + (600 if prefix else 120)
        self.port = 0
        for line in self.proc.stdout:
            found = re.search(rb"http://localhost:(\d+)", line)
            if found:
                self.port = int(found.group(1))
                break
            if time.monotonic() > deadline:
                break
        if not self.port:
            self.stop()
            raise RuntimeError(f"the gateway did not start: {self.log.read_text()[-2000:]}")
        self.key = (home / "admin.key").read_text().strip()
        self.stack = ""
        text = self.log.read_text(errors="replace")
        found_stack = re.search(r"event loop (\w+), HTTP (\w+)", text)
        self.stack = (
            f"{found_stack.group(1)}+{found_stack.group(2)}" if found_stack else "asyncio+h11"
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class RuntimeProcess:
    """This bench in ``--runtime`` mode under the tree at ``src``: one `App` of the same
    config, answering commands on its stdin (``lat N``, ``tput CLIENTS SECONDS``)."""

    def __init__(
        self, src: Path, home: Path, *, before: bool, prefix: list[str] | None = None
    ) -> None:
        self.proc = subprocess.Popen(
            [*(prefix or []), sys.executable, __file__, "--runtime", str(home / "config.yaml")],
            env=_env(src, home, before=before),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL if prefix else None,  # valgrind's own lines
        )
        self._ask("ready")

    def _ask(self, command: str) -> Any:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the runtime process died on {command!r}")
        return json.loads(line)

    def latencies(self, n: int) -> list[float]:
        found: list[float] = self._ask(f"lat {n}")
        return found

    def throughput(self, clients: int, seconds: float) -> float:
        runs, elapsed = self._ask(f"tput {clients} {seconds}")
        return float(runs) / float(elapsed)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._ask("quit")
        self.proc.wait(timeout=30)


def runtime_worker(config: str) -> None:
    """``--runtime CONFIG``: the in-process side (see `RuntimeProcess`)."""

    async def main() -> None:
        from promptline.app import build_app
        from promptline.config import load_settings
        from promptline.sessions.models import Principal

        settings = load_settings(Path(config))
        loop = asyncio.get_running_loop()
        async with build_app(settings) as app:
            runtime = await app.start_runtime()
            agent = runtime.agent(AGENT)
            principal = Principal(user_id="bench", tenant_id="default", admin=True)

            async def one(session_id: str | None = None) -> None:
                result = await runtime.run(
                    PROMPT, agent=agent, principal=principal, session_id=session_id
                )
                if not result.ok or result.text != FINAL:
                    raise RuntimeError(f"run {result.status}: {result.error} {result.text!r}")

            while True:
                line = await loop.run_in_executor(None, sys.stdin.readline)
                words = line.split()
                if not words or words[0] == "quit":
                    print("null", flush=True)
                    return
                if words[0] == "ready":
                    await one()
                    print("true", flush=True)
                elif words[0] == "lat":
                    out = []
                    for _ in range(int(words[1])):
                        started = time.perf_counter()
                        await one()
                        out.append((time.perf_counter() - started) * 1000)
                    print(json.dumps(out), flush=True)
                elif words[0] == "tput":
                    clients, seconds = int(words[1]), float(words[2])
                    # Fresh sessions each time, as the REST clients make theirs.
                    sessions = []
                    for _ in range(clients):
                        made = await app.sessions.create(principal, channel="http")
                        sessions.append(made.id)
                    done = 0
                    started = time.perf_counter()
                    stop_at = started + seconds

                    async def worker(session_id: str, stop_at: float) -> None:
                        nonlocal done
                        while time.perf_counter() < stop_at:
                            await one(session_id)
                            done += 1

                    await asyncio.gather(*(worker(s, stop_at) for s in sessions))
                    print(json.dumps([done, time.perf_counter() - started]), flush=True)

    asyncio.run(main())


# --- the measurements --------------------------------------------------------------------------


@dataclass
class Tree:
    label: str
    gateway: GatewayProcess
    runtime: RuntimeProcess


async def latencies(
    provider_port: int, trees: list[Tree], budget: Budget
) -> dict[str, list[float]]:
    """Milliseconds per request of each row, interleaved round by round."""
    direct = await Client(provider_port).open()
    rows: dict[str, Callable[[], Awaitable[None]]] = {}
    raw_direct = chat_request(MODEL, None).replace(b"POST /v1/chat", b"POST /v1/chat", 1)

    async def to_provider() -> None:
        check_completion(*await direct.send(raw_direct))

    rows["direct to the provider"] = to_provider
    clients = []
    for tree in trees:
        client = await Client(tree.gateway.port).open()
        clients.append(client)
        raw = chat_request(f"agent/{AGENT}", tree.gateway.key)

        async def through(client: Client = client, raw: bytes = raw) -> None:
            check_completion(*await client.send(raw))

        rows[f"gateway {tree.label}"] = through
    try:
        for _ in range(budget.warmup):
            for run in rows.values():
                await run()
        out: dict[str, list[float]] = {name: [] for name in rows}
        names = list(rows)
        deadline = time.perf_counter() + budget.seconds
        for n in range(budget.rounds):
            if time.perf_counter() > deadline:
                break
            shift = n % len(names)
            for name in names[shift:] + names[:shift]:
                started = time.perf_counter()
                await rows[name]()
                out[name].append((time.perf_counter() - started) * 1000)
    finally:
        for client in (direct, *clients):
            await client.close()
    return out


async def rest_throughput(tree: Tree, clients: int, seconds: float) -> float:
    """Runs/s of ``clients`` concurrent clients, each sending its session messages with
    ``?wait=true`` one after another for ``seconds``."""
    key = tree.gateway.key
    conns = [await Client(tree.gateway.port).open() for _ in range(clients)]
    try:
        raws = []
        for conn in conns:
            status, body = await conn.send(request("POST", "/v1/sessions", {"agent": AGENT}, key))
            if status != 201:
                raise RuntimeError(f"session: {status} {body[:300]!r}")
            sid = orjson.loads(body)["id"]
            raws.append(
                request("POST", f"/v1/sessions/{sid}/messages?wait=true", {"content": PROMPT}, key)
            )
        done = 0
        started = time.perf_counter()
        stop_at = started + seconds

        async def worker(conn: Client, raw: bytes) -> None:
            nonlocal done
            while time.perf_counter() < stop_at:
                status, body = await conn.send(raw)
                if status != 200 or orjson.loads(body)["status"] != "completed":
                    raise RuntimeError(f"message: {status} {body[:300]!r}")
                done += 1

        await asyncio.gather(*(worker(c, r) for c, r in zip(conns, raws, strict=True)))
        return done / (time.perf_counter() - started)
    finally:
        for conn in conns:
            await conn.close()


def throughputs(trees: list[Tree], budget: Budget) -> dict[str, list[float]]:
    """Runs/s of each row per round, rows in a rotating order."""
    rows: dict[str, Callable[[], float]] = {}
    for tree in trees:
        rows[f"REST wait {tree.label}"] = lambda t=tree: asyncio.run(
            rest_throughput(t, budget.clients, budget.window)
        )
        rows[f"runtime {tree.label}"] = lambda t=tree: t.runtime.throughput(
            budget.clients, budget.window
        )
    for run in rows.values():  # warm-up: sessions made, caches filled
        run()
    out: dict[str, list[float]] = {name: [] for name in rows}
    names = list(rows)
    for n in range(budget.tput_rounds):
        shift = n % len(names)
        for name in names[shift:] + names[:shift]:
            out[name].append(rows[name]())
    return out


PY_SPY = Path(sys.executable).with_name("py-spy")


def profile(
    src: Path, base: Path, name: str, provider_url: str, n: int, *, before: bool
) -> tuple[Path, str]:
    """A gateway of ``src`` sampled by py-spy (its CPU time, start-up left out) while it
    answers ``n`` chat completions, or, without py-spy, run under cProfile (start-up
    included); the output file and its kind ("py-spy" or "cprofile")."""
    home = _home(base, name, provider_url)
    sampled = PY_SPY.exists()
    out = home / ("profile.txt" if sampled else "profile.out")
    gateway = GatewayProcess(src, home, before=before, profile=None if sampled else out)
    spy = None
    try:

        async def go(count: int) -> None:
            client = await Client(gateway.port).open()
            raw = chat_request(f"agent/{AGENT}", gateway.key)
            for _ in range(count):
                check_completion(*await client.send(raw))
            await client.close()

        asyncio.run(go(50))  # warm
        if sampled:
            spy = subprocess.Popen(
                [
                    str(PY_SPY),
                    "record",
                    "--pid",
                    str(gateway.proc.pid),
                    "--rate",
                    "1000",
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--gil",
                    "--output",
                    str(out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)  # attached
        asyncio.run(go(n))
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        gateway.stop()
    return out, "py-spy" if sampled else "cprofile"


def print_profile(path: Path, kind: str, n: int, label: str, top: int = 20) -> None:
    """The profile's top entries: own time (the function itself) and, for PromptLine's and
    the web stack's functions, their time with what they call, in µs per request."""
    own: dict[str, float] = {}
    total: dict[str, float] = {}
    if kind == "py-spy":
        # Collapsed stacks, one a line: "frame;frame;... count", 1 sample = 1 ms of CPU.
        for line in path.read_text(encoding="utf-8").splitlines():
            stack, _, count = line.rpartition(" ")
            frames = [_short(f, lines=False) for f in stack.split(";")]
            ms = float(count)
            own[frames[-1]] = own.get(frames[-1], 0.0) + ms
            for frame in set(frames):
                total[frame] = total.get(frame, 0.0) + ms
        what = "py-spy samples of the thread holding the GIL (1 kHz) while answering"
    else:
        import pstats

        stats = pstats.Stats(str(path))
        for (file, line, func), row in stats.stats.items():  # type: ignore[attr-defined]
            frame = _short(f"{func} ({file}:{line})")
            own[frame] = own.get(frame, 0.0) + row[2] * 1000
            total[frame] = total.get(frame, 0.0) + row[3] * 1000
        what = "cProfile (start-up included) of"
    busy = sum(own.values())
    print(
        f"\nProfile of the gateway, {label}: {what} {n} requests; {busy / n * 1000:.0f} µs"
        " per request in all\n"
    )
    print("| own µs/req | with callees µs/req | function |")
    print("|---:|---:|---|")
    for frame, ms in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        print(f"| {ms / n * 1000:.1f} | {total.get(frame, 0.0) / n * 1000:.1f} | `{frame}` |")
    ours = ("promptline/", "fastapi/", "starlette/", "uvicorn/", "pydantic/")
    print(f"\nTheir callers, top {top} by time with callees (PromptLine and the web stack):\n")
    print("| with callees µs/req | function |")
    print("|---:|---|")
    inner = [kv for kv in total.items() if any(p in kv[0] for p in ours)]
    root = max((ms for frame, ms in inner if "AccessLog.__call__" in frame), default=0.0)
    # Below the request's layers of middleware, which each hold nearly all of its time.
    inner = [kv for kv in inner if kv[1] < 0.9 * root or not root]
    for frame, ms in sorted(inner, key=lambda kv: -kv[1])[:top]:
        print(f"| {ms / n * 1000:.1f} | `{frame}` |")


def _short(frame: str, *, lines: bool = True) -> str:
    """``func (/x/site-packages/pkg/mod.py:12)`` -> ``func (pkg/mod.py:12)`` (``func
    (pkg/mod.py)`` without ``lines``)."""
    if not lines:
        frame = re.sub(r":\d+\)$", ")", frame)
    for cut in ("/site-packages/", "/src/", "/lib/python3."):
        if cut in frame:
            head, _, tail = frame.partition(cut)
            name = head.rsplit("(", 1)[0]
            tail = tail.split("/", 1)[1] if cut == "/lib/python3." else tail
            return f"{name}({tail}"
    return frame


def _callgrind(out: Path) -> list[str]:
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]


def _counted(pid: int, out: Path, work: Callable[[], None]) -> int:
    """Instructions process ``pid`` (under `_callgrind`) runs while ``work`` runs: its
    counter switched on, then dumped."""
    subprocess.run(["callgrind_control", "-i", "on", str(pid)], check=True, capture_output=True)
    work()
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    totals = []
    for dump in out.parent.glob(out.name + ".*"):
        found = re.search(r"^(?:summary|totals): (\d+)", dump.read_text(), re.MULTILINE)
        if found:
            totals.append(int(found.group(1)))
    if not totals:
        raise RuntimeError(f"no callgrind dump beside {out}")
    return max(totals)


def instructions(
    src: Path, base: Path, name: str, provider_url: str, n: int, *, before: bool
) -> tuple[float, float]:
    """CPU instructions per chat completion in the gateway's process, and per run of the
    runtime in process (same tree, same config), each counted by callgrind over ``n``
    requests (runs) after a warm-up; the fake provider is not counted."""
    home = _home(base, f"{name}-gw", provider_url)
    out = home / "callgrind.out"
    gateway = GatewayProcess(src, home, before=before, prefix=_callgrind(out))
    try:

        async def go(count: int) -> None:
            client = await Client(gateway.port).open()
            raw = chat_request(f"agent/{AGENT}", gateway.key)
            for _ in range(count):
                check_completion(*await client.send(raw))
            await client.close()

        asyncio.run(go(30))
        per_request = _counted(gateway.proc.pid, out, lambda: asyncio.run(go(n))) / n
    finally:
        gateway.stop()
    home = _home(base, f"{name}-rt", provider_url)
    out = home / "callgrind.out"
    runtime = RuntimeProcess(src, home, before=before, prefix=_callgrind(out))
    try:
        runtime.latencies(30)
        per_run = _counted(runtime.proc.pid, out, lambda: runtime.latencies(n)) / n
    finally:
        runtime.stop()
    return per_request, per_run


def print_instructions(counts: dict[str, tuple[float, float]], n: int) -> None:
    print(f"\nCPU instructions (callgrind, {n} requests after a warm-up, millions per request):\n")
    print(
        "| tree | gateway process, per chat completion | runtime in process, per run |"
        " added by the gateway |"
    )
    print("|---|---:|---:|---:|")
    for label, (gateway, runtime) in counts.items():
        print(
            f"| {label} | {gateway / 1e6:.2f} M | {runtime / 1e6:.2f} M |"
            f" {(gateway - runtime) / 1e6:+.2f} M |"
        )


# --- the report ----------------------------------------------------------------------------


def print_latency(
    lat: dict[str, list[float]], labels: list[str], inproc: dict[str, list[float]]
) -> None:
    direct = lat["direct to the provider"]
    print("| row | p50 (ms) | p95 (ms) | p99 (ms) |")
    print("|---|---:|---:|---:|")
    for name, values in {**lat, **inproc}.items():
        print(
            f"| {name} | {percentile(values, 50):.2f} | {percentile(values, 95):.2f} |"
            f" {percentile(values, 99):.2f} |"
        )
    print()
    print(
        "| added by the gateway | p50 (ms) | p95 (ms) | p99 (ms) | p50 ratio |"
        " median of per-round differences (ms) | target | met |"
    )
    print("|---|---:|---:|---:|---:|---:|---|---|")
    for label in labels:
        values = lat[f"gateway {label}"]
        added = [percentile(values, q) - percentile(direct, q) for q in (50, 95, 99)]
        ratio = percentile(values, 50) / percentile(direct, 50)
        met = "yes" if added[0] <= TARGET_ADDED_P50_MS else "no"
        paired = statistics.median(g - d for g, d in zip(values, direct, strict=True))
        print(
            f"| {label} | {added[0]:+.2f} | {added[1]:+.2f} | {added[2]:+.2f} | {ratio:.2f}x |"
            f" {paired:+.2f} | p50 ≤ +{TARGET_ADDED_P50_MS:g} ms | {met} |"
        )


def print_throughput(tput: dict[str, list[float]], labels: list[str], clients: int) -> None:
    print(
        f"| {clients} concurrent clients | runs/s (median) | rounds | REST / runtime | target"
        " | met |"
    )
    print("|---|---:|---|---:|---|---|")
    for label in labels:
        rest = statistics.median(tput[f"REST wait {label}"])
        own = statistics.median(tput[f"runtime {label}"])
        ratio = rest / own
        met = "yes" if ratio >= TARGET_TPUT_RATIO else "no"
        each = ", ".join(f"{v:.0f}" for v in tput[f"runtime {label}"])
        print(f"| runtime in process, {label} | {own:.0f} | {each} | | | |")
        each = ", ".join(f"{v:.0f}" for v in tput[f"REST wait {label}"])
        print(
            f"| `messages?wait=true`, {label} | {rest:.0f} | {each} | {ratio:.2f} |"
            f" ≥ {TARGET_TPUT_RATIO:g} | {met} |"
        )


@contextlib.contextmanager
def before_tree(rev: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bench-gateway-before-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", rev, "src"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Path(tmp) / "src"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for a smoke test")
    parser.add_argument("--before", default=BEFORE, help=f"revision of BEFORE ({BEFORE})")
    parser.add_argument("--rounds", type=int, help="latency rounds at most")
    parser.add_argument("--seconds", type=float, help="time for the latency rounds at most")
    parser.add_argument("--clients", type=int, help="concurrent clients for the throughput")
    parser.add_argument("--window", type=float, help="seconds per throughput row per round")
    parser.add_argument("--tput-rounds", type=int, help="throughput rounds (0: none)")
    parser.add_argument("--profile", action="store_true", help="then profile each gateway")
    parser.add_argument("--profile-requests", type=int, help="requests sent to a profiled one")
    parser.add_argument("--profile-out", type=Path, help="keep the profiles in this folder")
    parser.add_argument(
        "--callgrind", type=int, metavar="N", help="then count instructions over N requests"
    )
    args = parser.parse_args(argv)
    budget = QUICK if args.quick else Budget()
    changes = {
        name: getattr(args, name)
        for name in ("rounds", "seconds", "clients", "window", "tput_rounds", "profile_requests")
        if getattr(args, name) is not None
    }
    import dataclasses

    budget = dataclasses.replace(budget, **changes)
    began = time.perf_counter()
    provider = Provider()
    procs: list[GatewayProcess | RuntimeProcess] = []
    try:
        with (
            before_tree(args.before) as before_src,
            tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp,
        ):
            base = Path(tmp)
            srcs = {f"BEFORE ({args.before})": before_src, "AFTER (this tree)": ROOT / "src"}
            trees = []
            for i, (label, src) in enumerate(srcs.items()):
                before = i == 0
                gateway = GatewayProcess(
                    src, _home(base, f"gw{i}", provider.base_url), before=before
                )
                procs.append(gateway)
                runtime = RuntimeProcess(
                    src, _home(base, f"rt{i}", provider.base_url), before=before
                )
                procs.append(runtime)
                trees.append(Tree(label, gateway, runtime))
            labels = [t.label for t in trees]
            lat = asyncio.run(latencies(provider.port, trees, budget))
            n = len(lat["direct to the provider"])
            inproc = {
                f"in process, `app.runtime.run`, {t.label}": t.runtime.latencies(min(n, 500))
                for t in trees
            }
            tput = throughputs(trees, budget) if budget.tput_rounds > 0 else {}
            stacks = ", ".join(f"{t.label}: {t.gateway.stack}" for t in trees)
            for proc in procs:
                proc.stop()
            procs.clear()
            print(
                f"Python {sys.version.split()[0]}; `POST /v1/chat/completions` (model"
                f" agent/{AGENT}, no tools, one model call, SQLite log); {n} interleaved rounds"
                f" after {budget.warmup} warm-up requests per row; servers: {stacks};"
                f" {time.perf_counter() - began:.0f} s\n"
            )
            print_latency(lat, labels, inproc)
            if tput:
                print(
                    f"\nThroughput: {budget.tput_rounds} rounds of {budget.window:g} s per row,"
                    f" {budget.clients} concurrent clients (sessions), rows in rotating order\n"
                )
                print_throughput(tput, labels, budget.clients)
            if args.profile:
                for i, (label, src) in enumerate(srcs.items()):
                    out, kind = profile(
                        src,
                        base,
                        f"prof{i}",
                        provider.base_url,
                        budget.profile_requests,
                        before=i == 0,
                    )
                    print_profile(out, kind, budget.profile_requests, label)
                    if args.profile_out is not None:
                        args.profile_out.mkdir(parents=True, exist_ok=True)
                        kept = f"{'before' if i == 0 else 'after'}-{out.name}"
                        shutil.copy(out, args.profile_out / kept)
            if args.callgrind:
                counts = {
                    label: instructions(
                        src, base, f"cg{i}", provider.base_url, args.callgrind, before=i == 0
                    )
                    for i, (label, src) in enumerate(srcs.items())
                }
                print_instructions(counts, args.callgrind)
    finally:
        for proc in procs:
            with contextlib.suppress(Exception):
                proc.stop()
        provider.stop()
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--fake"]:
        bench_agents.answer = _answer
        bench_agents.serve(int(sys.argv[2]))
    elif sys.argv[1:2] == ["--runtime"]:
        runtime_worker(sys.argv[2])
    else:
        raise SystemExit(main(sys.argv[1:]))
