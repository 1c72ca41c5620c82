"""What MCP adds to an agent run: the ``assistant`` tool called over ``/mcp`` (Streamable HTTP,
the official ``mcp`` client) against the same run through REST
``POST /v1/sessions/{id}/messages?wait=true`` (an httpx keep-alive client).

The server is ``promptline serve`` in a subprocess, on a temporary home with the offline
scripted model (``scripted/demo``: one model call, no tool), so the rows differ only in the
protocol. Every measured call answers one message in a fresh session (made through REST
before the clock starts), so each row does the same work. Rows take turns, after a warm-up:

- ``rest``: ``POST /v1/sessions/{id}/messages?wait=true``;
- ``mcp``: ``tools/call assistant {task, session_id}``, the client's default protocol
  (2026-07-28: one self-contained POST per call);
- ``mcp-session``: the same over a handshake-era MCP session (``Mcp-Session-Id``), as most
  clients in the field connect.

    python bench/bench_mcp_server.py [--calls N] [--seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

CONFIG = """\
models:
  default: scripted/demo
agent:
  default_mode: act
gateway:
  rate_limit_per_minute: 100000000
"""
WARMUP = 10
"""Calls of each row before anything is measured."""
ROWS = ("rest", "mcp", "mcp-session")


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100), nearest rank."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def gateway(home: Path) -> Iterator[tuple[str, str]]:
    """``promptline serve`` on ``home`` (a free port of 127.0.0.1); yields its URL and a key."""
    import httpx

    env = {**os.environ, "PROMPTLINE_HOME": str(home), "NO_COLOR": "1"}
    cli = [sys.executable, "-m", "promptline.cli.main"]
    made = subprocess.run(
        [*cli, "keys", "create", "--user", "bench", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    key = json.loads(made.stdout)["key"]
    port = _free_port()
    server = subprocess.Popen(
        [*cli, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("promptline serve did not start (its errors are above)")
            time.sleep(0.05)
        yield base, key
    finally:
        server.terminate()
        server.wait(timeout=30)


Call = Callable[[str], Awaitable[str]]
"""``call(session_id) -> answer``: one measured call."""


@contextlib.asynccontextmanager
async def callers(base: str, key: str) -> AsyncIterator[tuple[dict[str, Call], Call]]:
    """The rows' calls, and ``new_session() -> id`` (REST, not measured)."""
    import httpx
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {key}"}
    timeout = httpx2.Timeout(30.0, read=120.0)
    async with contextlib.AsyncExitStack() as stack:
        rest = await stack.enter_async_context(
            httpx.AsyncClient(base_url=base, headers=headers, timeout=120.0)
        )
        clients = {}
        for row, mode in (("mcp", "auto"), ("mcp-session", "legacy")):
            http = await stack.enter_async_context(
                httpx2.AsyncClient(headers=headers, timeout=timeout)
            )
            transport = streamable_http_client(f"{base}/mcp", http_client=http)
            clients[row] = await stack.enter_async_context(Client(transport, mode=mode))

        async def new_session(_: str = "") -> str:
            answer = await rest.post("/v1/sessions", json={"channel": "bench"})
            answer.raise_for_status()
            session_id: str = answer.json()["id"]
            return session_id

        async def via_rest(session_id: str) -> str:
            answer = await rest.post(
                f"/v1/sessions/{session_id}/messages?wait=true", json={"content": "hello"}
            )
            answer.raise_for_status()
            record = answer.json()
            if record["status"] != "completed":
                raise RuntimeError(f"run {record['status']}")
            return str(record["output"])

        def via_mcp(client: Client) -> Call:
            async def call(session_id: str) -> str:
                result = await client.call_tool(
                    "assistant", {"task": "hello", "session_id": session_id}
                )
                if result.is_error:
                    raise RuntimeError(result.content[0].text)  # type: ignore[union-attr]
                return str(result.structured_content["answer"])  # type: ignore[index]

            return call

        rows: dict[str, Call] = {"rest": via_rest}
        rows.update({row: via_mcp(client) for row, client in clients.items()})
        yield rows, new_session


async def measure(base: str, key: str, calls: int, seconds: float) -> dict[str, list[float]]:
    """Latencies (ms) of each row: ``calls`` each, or fewer once ``seconds`` have passed."""
    async with callers(base, key) as (rows, new_session):
        for call in rows.values():
            for _ in range(WARMUP):
                await call(await new_session())
        times: dict[str, list[float]] = {row: [] for row in ROWS}
        stop = time.monotonic() + seconds
        for index in range(calls):
            if time.monotonic() > stop:
                break
            order = ROWS[index % len(ROWS) :] + ROWS[: index % len(ROWS)]
            for row in order:
                session_id = await new_session()
                started = time.perf_counter()
                await rows[row](session_id)
                times[row].append((time.perf_counter() - started) * 1000)
        return times


def report(times: dict[str, list[float]]) -> str:
    lines = [
        "| row | calls | median ms | p99 ms | mean ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for row, values in times.items():
        lines.append(
            f"| {row} | {len(values)} | {statistics.median(values):.2f} | "
            f"{percentile(values, 99):.2f} | {statistics.fmean(values):.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="measured calls per row")
    parser.add_argument("--seconds", type=float, default=60.0, help="bound of the measuring")
    args = parser.parse_args()
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        (home / "config.yaml").write_text(CONFIG, encoding="utf-8")
        with gateway(home) as (base, key):
            times = asyncio.run(measure(base, key, args.calls, args.seconds))
    print(report(times))
    print(f"\n(total {time.monotonic() - began:.1f} s; server: promptline serve, scripted/demo)")


if __name__ == "__main__":
    main()
