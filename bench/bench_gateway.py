"""What the gateway adds to an agent run: ``POST /v1/chat/completions`` through a real uvicorn
server against the same run in process (``app.runtime.run``).

The run is the agent benchmark's task (``bench_agents.py``): "What is 2+3? Use the add tool",
two model calls and one ``add`` call, against its zero-latency fake OpenAI server in a
subprocess, configured as the provider ``fake`` (type openai). One `App` (SQLite event log on
a temporary home) serves both rows: the gateway on 127.0.0.1 (uvicorn, as ``promptline
serve`` runs it) with an httpx keep-alive client in the same event loop, and the runtime called
directly. Rounds interleave the rows (alternating which goes first), after a warm-up, until
``--rounds`` or ``--seconds`` is reached:

    python bench/bench_gateway.py [--rounds N] [--seconds S] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

import bench_agents  # noqa: E402 - the fake server and the task live there

TARGET_P50_MS = 2.0
TARGET_P99_MS = 10.0
AGENT = "bench"


@dataclass(frozen=True)
class Budget:
    warmup: int = 50  # runs of each row before anything is measured
    rounds: int = 2000  # measured rounds (each: one run of each row)
    seconds: float = 60.0  # the measured phase stops early past this


QUICK = Budget(warmup=10, rounds=200, seconds=10.0)

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
    tools: [add]
tools:
  add: allow
agent:
  default_mode: act
  stream_enabled: false
gateway:
  rate_limit_per_minute: 100000000
"""


def _add(a: int, b: int) -> int:
    """Add two integers and return the sum."""
    return a + b


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100), nearest rank."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[int]:
    """The gateway of ``app`` on a free port of 127.0.0.1, served as `promptline serve` does
    (its socket, its uvicorn settings, its frozen start-up heap); yields the port."""
    import uvicorn

    from promptline.gateway.app import create_gateway
    from promptline.gateway.server import _frozen_heap, _listen, _server

    sock = _listen("127.0.0.1", 0)
    config = uvicorn.Config(
        create_gateway(app), lifespan="off", log_level="warning", access_log=False
    )
    server = _server(config)
    try:
        with _frozen_heap():
            serving = asyncio.create_task(server.serve(sockets=[sock]))
            try:
                while not server.started:
                    if serving.done():
                        serving.result()  # raises what stopped it
                    await asyncio.sleep(0.01)
                yield sock.getsockname()[1]
            finally:
                server.should_exit = True
                await serving
    finally:
        sock.close()


async def measure(base_url: str, budget: Budget) -> tuple[dict[str, list[float]], int]:
    """Latencies (ms) of each row, and the runs done in all (warm-up included)."""
    import httpx

    from promptline.app import build_app
    from promptline.config import load_settings
    from promptline.security.auth import KeyStore
    from promptline.tools import tool

    home = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    config = home / "config.yaml"
    config.write_text(
        CONFIG.format(model=bench_agents.MODEL, base_url=base_url, agent=AGENT), encoding="utf-8"
    )
    settings = load_settings(config, environ={"PROMPTLINE_HOME": str(home)})
    async with build_app(settings) as app:
        app.tools.register(tool(name="add", read_only=True, inline=True)(_add))
        runtime = await app.start_runtime()
        keys = KeyStore(app.state, clock=app.clock)
        _, key = await keys.create("bench")
        principal = (await keys.authenticate(key)).principal
        agent = runtime.agent(AGENT)
        body = {
            "model": f"agent/{AGENT}",
            "messages": [{"role": "user", "content": bench_agents.PROMPT}],
        }

        async def in_process() -> str:
            result = await runtime.run(bench_agents.PROMPT, agent=agent, principal=principal)
            if not result.ok:
                raise RuntimeError(f"run {result.status}: {result.error}")
            return result.text

        async with (
            served(app) as port,
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            ) as client,
        ):

            async def through_gateway() -> str:
                response = await client.post("/v1/chat/completions", json=body)
                if response.status_code != 200:
                    raise RuntimeError(f"gateway answered {response.status_code}: {response.text}")
                return str(response.json()["choices"][0]["message"]["content"])

            rows: dict[str, Callable[[], Awaitable[str]]] = {
                "in process": in_process,
                "gateway": through_gateway,
            }
            for _ in range(budget.warmup):
                for run in rows.values():
                    await _checked(run)
            latencies: dict[str, list[float]] = {name: [] for name in rows}
            order = list(rows)
            deadline = time.perf_counter() + budget.seconds
            for n in range(budget.rounds):
                if time.perf_counter() > deadline:
                    break
                for name in order if n % 2 == 0 else reversed(order):
                    started = time.perf_counter()
                    await _checked(rows[name])
                    latencies[name].append((time.perf_counter() - started) * 1000)
    runs = budget.warmup * len(rows) + sum(len(v) for v in latencies.values())
    return latencies, runs


async def _checked(run: Callable[[], Awaitable[str]]) -> None:
    answer = await run()
    if answer != bench_agents.FINAL:
        raise RuntimeError(f"unexpected answer {answer!r}")


def print_table(latencies: dict[str, list[float]]) -> None:
    """The table: each row's p50 and p99, and what the gateway adds (the difference of the
    percentiles) against the targets."""
    inner, outer = latencies["in process"], latencies["gateway"]
    p50 = {name: percentile(values, 50) for name, values in latencies.items()}
    p99 = {name: percentile(values, 99) for name, values in latencies.items()}
    added = (p50["gateway"] - p50["in process"], p99["gateway"] - p99["in process"])
    met = added[0] <= TARGET_P50_MS and added[1] <= TARGET_P99_MS
    paired = statistics.median(o - i for o, i in zip(outer, inner, strict=True))
    target = f"p50 ≤ {TARGET_P50_MS:g} ms, p99 ≤ {TARGET_P99_MS:g} ms"
    print("| row | p50 (ms) | p99 (ms) | target | met |")
    print("|---|---:|---:|---|---|")
    print(
        f"| in process, `app.runtime.run` | {p50['in process']:.2f} | {p99['in process']:.2f} | | |"
    )
    gateway = "gateway, `POST /v1/chat/completions`"
    print(f"| {gateway} | {p50['gateway']:.2f} | {p99['gateway']:.2f} | | |")
    print(
        f"| added by the gateway | {added[0]:+.2f} | {added[1]:+.2f} | {target} |"
        f" {'yes' if met else 'no'} |"
    )
    print(f"\nmedian of the per-round differences (gateway - in process): {paired:+.2f} ms")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for a smoke test")
    parser.add_argument("--rounds", type=int, help="measured rounds at most")
    parser.add_argument("--seconds", type=float, help="time for the measured rounds at most")
    args = parser.parse_args(argv)
    budget = QUICK if args.quick else Budget()
    if args.rounds is not None:
        budget = dataclasses.replace(budget, rounds=args.rounds)
    if args.seconds is not None:
        budget = dataclasses.replace(budget, seconds=args.seconds)

    server = bench_agents.Server()
    started = time.perf_counter()
    try:
        timeout = budget.seconds + 120
        latencies, runs = asyncio.run(asyncio.wait_for(measure(server.base_url, budget), timeout))
        calls, tool_results = asyncio.run(bench_agents.server_stats(server.base_url))
    finally:
        server.stop()
    if (calls, tool_results) != (2 * runs, runs):
        print(f"the fake server saw {calls} calls ({tool_results} with a tool result) for {runs}")
        return 1
    measured = len(latencies["gateway"])
    print(
        f"Python {sys.version.split()[0]}; one agent run (2 model calls, 1 tool call, every event"
        f" in SQLite) per request; {measured} interleaved rounds after {budget.warmup} warm-up"
        f" runs per row; {time.perf_counter() - started:.0f} s\n"
    )
    print_table(latencies)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
