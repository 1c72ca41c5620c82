"""What failover costs: 1,000 chat completions through the router over HTTP, with two healthy
deployments, then with one of the two answering every request with HTTP 500.

The fake OpenAI servers run in a subprocess (so they do not share the client's interpreter):

    python bench/bench_failover.py
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

REQUESTS = 1000
WARMUP = 50
MODEL = "gpt-4o-mini"


def serve() -> None:
    """Child process: two healthy fakes and one that answers 500 to everything, until stdin
    closes. An unscripted fake answers 500, so the failing one needs no script."""
    from contextlib import ExitStack

    from fakes.openai_server import FakeOpenAI, TextReply, running_fake_openai

    with ExitStack() as stack:
        fakes = [stack.enter_context(running_fake_openai(FakeOpenAI())) for _ in range(3)]
        for fake in fakes[:2]:
            fake.script(*[TextReply("Hello! How can I help you today?")] * (4 * REQUESTS))
        print(json.dumps([fake.base_url for fake in fakes]), flush=True)
        sys.stdin.read()


class Counting:
    """Wraps a provider to count the calls that failed (the failovers the router absorbed)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.failures = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def complete(self, request: object) -> object:
        try:
            return await self.inner.complete(request)  # type: ignore[attr-defined]
        except Exception:
            self.failures += 1
            raise


async def run(urls: list[str], *, threshold: int) -> list[float]:
    """Latencies (ms) of REQUESTS sequential calls over two deployments at ``urls``."""
    from promptline.core.clock import SystemClock
    from promptline.core.messages import Message
    from promptline.models.breaker import BreakerPolicy
    from promptline.models.http import SharedHttpTransport
    from promptline.models.openai_chat import OpenAIChatProvider
    from promptline.models.router import Deployment, ModelGroup, ModelRouter, RouterConfig
    from promptline.models.types import ModelRequest

    transport = SharedHttpTransport()
    providers = [
        Counting(
            OpenAIChatProvider("openai", base_url=url, api_key="sk-bench", transport=transport)
        )
        for url in urls
    ]
    group = ModelGroup(
        f"openai/{MODEL}",
        [Deployment(f"d{i}", p, MODEL) for i, p in enumerate(providers)],  # type: ignore[arg-type]
    )
    config = RouterConfig(breaker=BreakerPolicy(failure_threshold=threshold))
    request = ModelRequest(model=f"openai/{MODEL}", messages=[Message(role="user", content="Hi")])
    try:
        # Warm the connection pools through a throwaway router, so the measured one starts
        # with every breaker closed.
        warm = ModelRouter([group], config, clock=SystemClock())
        for _ in range(WARMUP):
            await warm.complete(request)
        for p in providers:
            p.failures = 0
        router = ModelRouter([group], config, clock=SystemClock())
        latencies = []
        for _ in range(REQUESTS):
            start = time.perf_counter()
            response = await router.complete(request)
            latencies.append((time.perf_counter() - start) * 1000)
            if not response.message.text:
                raise AssertionError("a request came back empty")
    finally:
        await transport.aclose()
    run.failures = sum(p.failures for p in providers)  # type: ignore[attr-defined]
    return latencies


def row(name: str, latencies: list[float], failures: int) -> str:
    q = statistics.quantiles(latencies, n=100)
    return (
        f"| {name} | {len(latencies)} | {failures} | {statistics.median(latencies):.2f} "
        f"| {q[94]:.2f} | {max(latencies):.2f} |"
    )


def main() -> int:
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        healthy_a, healthy_b, failing = json.loads(child.stdout.readline())
        scenarios = [
            ("two healthy", [healthy_a, healthy_b], 5),
            ("one failing, breaker on (5 failures, 30 s)", [failing, healthy_a], 5),
            ("one failing, breaker off", [failing, healthy_b], 10**9),
        ]
        print(f"{REQUESTS} sequential requests, round-robin over two deployments (ms)\n")
        print("| scenario | succeeded | failed calls absorbed | median | p95 | max |")
        print("|---|---:|---:|---:|---:|---:|")
        results = {}
        for name, urls, threshold in scenarios:
            latencies = asyncio.run(run(urls, threshold=threshold))
            results[name] = latencies
            print(row(name, latencies, run.failures))  # type: ignore[attr-defined]
        base = results["two healthy"]
        print()
        for name, latencies in list(results.items())[1:]:
            added_median = statistics.median(latencies) - statistics.median(base)
            added_p95 = (
                statistics.quantiles(latencies, n=100)[94] - statistics.quantiles(base, n=100)[94]
            )
            print(f"added latency, {name}: median {added_median:+.2f} ms, p95 {added_p95:+.2f} ms")
    finally:
        if child.stdin is not None:
            child.stdin.close()
        child.wait(timeout=30)
    return 0


if __name__ == "__main__":
    if "--serve" in sys.argv:
        serve()
    else:
        sys.exit(main())
