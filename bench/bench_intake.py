"""What durable intake costs: the latency of a message's acknowledgement, and the agent loop's
CPU instructions per run against a build without it.

Acknowledgement: ``POST /v1/sessions/{id}/messages`` answers 202 once the message and its run
are in the log (one transaction). Timed through a real uvicorn server (as ``promptline serve``
runs it) on SQLite and, when ``PROMPTLINE_TEST_POSTGRES_URL`` names a server, PostgreSQL, next
to the same intake called in process (``runtime.submit``). Each message goes to a session of its
own and its run (the offline ``scripted/demo`` model) is let finish before the next is timed, so
a run's work never lands on a measured acknowledgement; rows interleave, round after round.

Instructions: the agent benchmark's task (``bench/agent_task_promptline.py``: two model calls
and one tool call against the zero-latency fake OpenAI server of ``bench_agents.py``), counted
by callgrind for N1 and N2 runs in fresh processes, (I(N2) - I(N1)) / (N2 - N1), once with this
tree's ``src/`` and once with ``--before`` (a git revision, exported to a temporary folder):

    python bench/bench_intake.py [--quick] [--before REV] [--no-callgrind]
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
from collections.abc import Awaitable, Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if __name__ == "__main__" and "--work" not in sys.argv:
    sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(HERE))

import callgrind  # noqa: E402 - beside this script

BEFORE = "bb2e3a4^"
"""The last revision before durable intake (the commit that brought it, minus one)."""
DURABILITY_BUDGET = 0.10
"""Durable intake may cost at most this much more CPU per run."""

CONFIG = """\
models:
  default: scripted/demo
agent:
  default_mode: act
  stream_enabled: false
gateway:
  rate_limit_per_minute: 100000000
{state}"""


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100), nearest rank."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


# --- acknowledgement latency ---------------------------------------------------------------


async def _postgres_url() -> str | None:
    base = os.environ.get("PROMPTLINE_TEST_POSTGRES_URL")
    if not base:
        return None
    import asyncpg

    name = f"promptline_bench_{os.getpid()}"
    conn = await asyncpg.connect(base.replace("+asyncpg", ""), timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"{base.rsplit('/', 1)[0]}/{name}"


async def _drop_postgres(url: str) -> None:
    import asyncpg

    base = os.environ["PROMPTLINE_TEST_POSTGRES_URL"]
    conn = await asyncpg.connect(base.replace("+asyncpg", ""), timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await conn.close()


class Backend:
    """One gateway (its app, a live server, a client with a key) over one database."""

    def __init__(self, name: str, database: str | None) -> None:
        self.name = name
        self.database = database
        self.home = Path(tempfile.mkdtemp(prefix=f"bench-intake-{name}-"))

    async def __aenter__(self) -> Backend:
        import httpx

        from bench_gateway import served
        from promptline.app import build_app
        from promptline.config import load_settings
        from promptline.security.auth import KeyStore
        from promptline.sessions.models import Principal

        state = ""
        if self.database is not None:
            state = f'state:\n  backend: postgres\n  postgres_url: "{self.database}"\n'
        config = self.home / "config.yaml"
        config.write_text(CONFIG.format(state=state), encoding="utf-8")
        settings = load_settings(config, environ={"PROMPTLINE_HOME": str(self.home)})
        self._app = build_app(settings)
        self.app = await self._app.__aenter__()
        self.runtime = await self.app.start_runtime()
        _, key = await KeyStore(self.app.state, clock=self.app.clock).create("bench")
        self.principal = Principal(user_id="bench")
        self._served = served(self.app)
        port = await self._served.__aenter__()
        self.client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()
        await self._served.__aexit__(None, None, None)
        await self._app.__aexit__(None, None, None)

    async def session(self) -> str:
        return (await self.app.sessions.create(self.principal, channel="bench")).id

    async def over_rest(self, session_id: str) -> str:
        response = await self.client.post(
            f"/v1/sessions/{session_id}/messages", json={"content": "hello"}
        )
        if response.status_code != 202:
            raise RuntimeError(f"answered {response.status_code}: {response.text}")
        return str(response.json()["run_id"])

    async def in_process(self, session_id: str) -> str:
        accepted = await self.runtime.submit(
            "hello", session_id=session_id, principal=self.principal
        )
        return accepted.run_id


async def acknowledgements(rounds: int, warmup: int) -> dict[str, list[float]]:
    """Milliseconds to the acknowledgement, per row (backend x REST / in process)."""
    postgres = await _postgres_url()
    backends = [Backend("SQLite", None)]
    if postgres is not None:
        backends.append(Backend("PostgreSQL", postgres))
    timings: dict[str, list[float]] = {}
    try:
        opened = [await b.__aenter__() for b in backends]
        rows: list[tuple[str, Backend, Callable[[str], Awaitable[str]]]] = []
        for b in opened:
            rows += [
                (f"{b.name}, REST 202", b, b.over_rest),
                (f"{b.name}, in process", b, b.in_process),
            ]
        timings = {name: [] for name, _, _ in rows}
        for n in range(warmup + rounds):
            for name, backend, send in rows if n % 2 == 0 else reversed(rows):
                session_id = await backend.session()
                started = time.perf_counter()
                run_id = await send(session_id)
                elapsed = (time.perf_counter() - started) * 1000
                await backend.runtime.wait(run_id)  # its run does not weigh on the next one
                if n >= warmup:
                    timings[name].append(elapsed)
        for b in opened:
            await b.__aexit__(None, None, None)
    finally:
        if postgres is not None:
            await _drop_postgres(postgres)
    return timings


# --- instructions per run ------------------------------------------------------------------


def work(store: str, n: int, base_url: str) -> None:
    """Under callgrind: build the runner, warm it, switch counting on, then do ``n`` runs."""
    from agent_task_promptline import make_runner

    async def go() -> None:
        run, aclose = await make_runner(base_url, store=store)
        for _ in range(3):
            await run()
        callgrind.start_counting()
        for _ in range(n):
            await run()
        await aclose()

    asyncio.run(go())


def _instructions(src: Path, store: str, n: int, base_url: str) -> int:
    return callgrind.count(
        __file__,
        ["--work", store, str(n), base_url],
        env={"PYTHONPATH": f"{src}{os.pathsep}{HERE}"},
        timeout=1800,
    )


def instructions(before: str, ns: tuple[int, int]) -> dict[tuple[str, str], float]:
    """Instructions per run: (build, store) -> count, for this tree and ``before``."""
    import bench_agents

    server = bench_agents.Server()
    out: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-intake-before-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", before, "src"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        builds = {f"before ({before})": Path(tmp) / "src", "after (this tree)": ROOT / "src"}
        try:
            for build, src in builds.items():
                for store in ("memory", "sqlite"):
                    low, high = (_instructions(src, store, n, server.base_url) for n in ns)
                    out[build, store] = (high - low) / (ns[1] - ns[0])
        finally:
            server.stop()
    return out


# --- the report ----------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument("--before", default=BEFORE, help="the revision to compare against")
    parser.add_argument("--no-callgrind", action="store_true", help="skip the instructions")
    args = parser.parse_args()
    rounds, warmup = (100, 10) if args.quick else (1000, 50)

    timings = asyncio.run(acknowledgements(rounds, warmup))
    print(f"Acknowledgement of a message ({rounds} interleaved rounds, after {warmup} warm-up)\n")
    print("| row | p50 ms | p99 ms | mean ms |")
    print("|---|---:|---:|---:|")
    for name, values in timings.items():
        print(
            f"| {name} | {percentile(values, 50):.2f} | {percentile(values, 99):.2f} "
            f"| {statistics.fmean(values):.2f} |"
        )
    if args.no_callgrind:
        return 0
    ns = (2, 7) if args.quick else (5, 25)
    counted = instructions(args.before, ns)
    print(f"\nAgent loop, CPU instructions per run (callgrind, ({ns[1]} - {ns[0]}) runs)\n")
    print("| store | before | after | change | within +10% |")
    print("|---|---:|---:|---:|---|")
    worst = 0.0
    for store in ("memory", "sqlite"):
        before, after = (counted[build, store] for build, kind in counted if kind == store)
        change = after / before - 1
        worst = max(worst, change)
        print(
            f"| {store} | {before:,.0f} | {after:,.0f} | {change:+.1%} "
            f"| {'yes' if change <= DURABILITY_BUDGET else 'no'} |"
        )
    return 0 if worst <= DURABILITY_BUDGET else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--work":
        work(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        raise SystemExit(main())
