"""Which async HTTP client the model providers share: a bare asyncio floor, httpx and aiohttp.

A zero-latency local server (uvicorn + Starlette, in a subprocess) answers an OpenAI-style chat
completion and a 200-chunk SSE stream, so the figures are the clients' own cost:

    python bench/bench_http_client.py        # callgrind rows need valgrind on PATH
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import callgrind  # beside this script

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

CHUNKS = 200
SEQ_WARMUP, SEQ_N = 50, 400
CONCURRENT, CONCURRENT_ROUNDS = 200, 7
STREAM_WARMUP, STREAM_N = 5, 40
POOL = 100  # connections per host, the same for every client
IMPORT_RUNS = 11
CALLGRIND_N = (10, 60)
PATH = "/v1/chat/completions"

REQUEST = (
    b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello."}],"stream":false}'
)
STREAM_REQUEST = REQUEST.replace(b'"stream":false', b'"stream":true')
COMPLETION = (
    b'{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,'
    b'"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant",'
    b'"content":"Hello! How can I help you today?"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":9,"completion_tokens":9,"total_tokens":18}}'
)


def sse_chunk(i: int) -> bytes:
    """One OpenAI-style ``chat.completion.chunk`` event."""
    return (
        b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,'
        b'"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"tok%d "},'
        b'"finish_reason":null}]}\n\n' % i
    )


# --- the server (runs in its own process) ------------------------------------------------------


def serve(fd: int) -> None:
    """Answer on the already listening socket ``fd`` until killed."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    events = [sse_chunk(i) for i in range(CHUNKS)] + [b"data: [DONE]\n\n"]

    async def body() -> AsyncIterator[bytes]:
        for event in events:
            yield event

    async def completions(request: Request) -> Response:
        if b'"stream":true' in await request.body():
            return StreamingResponse(body(), media_type="text/event-stream")
        return Response(COMPLETION, media_type="application/json")

    app = Starlette(routes=[Route(PATH, completions, methods=["POST"])])
    config = uvicorn.Config(app, log_level="warning", access_log=False, loop="asyncio")
    # socket(fileno=) keeps the real address family: uvicorn's own fd= option assumes a Unix
    # socket, so asyncio would leave Nagle on and every answer would wait for a delayed ACK.
    asyncio.run(uvicorn.Server(config).serve(sockets=[socket.socket(fileno=fd)]))


class Server:
    """The server subprocess; the socket listens before the process starts, so no polling."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.port: int = self.sock.getsockname()[1]
        fd = self.sock.fileno()
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", str(fd)], pass_fds=[fd])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.sock.close()


# --- the clients ---------------------------------------------------------------------------------


class Client(Protocol):
    async def call(self) -> bytes: ...
    async def stream(self) -> int: ...
    async def aclose(self) -> None: ...


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer


class RawClient:
    """The floor: HTTP/1.1 by hand over asyncio streams, keep-alive, a pool of ``POOL``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[_Conn] = []
        self.slots = asyncio.Semaphore(POOL)
        self.head = (
            f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\nAccept: */*\r\n"
        ).encode()

    async def _send(self, body: bytes) -> tuple[_Conn, dict[bytes, bytes]]:
        conn = (
            self.idle.pop()
            if self.idle
            else _Conn(*await asyncio.open_connection("127.0.0.1", self.port))
        )
        conn.writer.write(self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        head = await conn.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0].split(b" ", 2)[1] == b"200", lines[0]
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
        return conn, headers

    async def _chunks(self, conn: _Conn, headers: dict[bytes, bytes]) -> AsyncIterator[bytes]:
        if b"content-length" in headers:
            yield await conn.reader.readexactly(int(headers[b"content-length"]))
            return
        while True:  # chunked transfer encoding
            size = int((await conn.reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
            if size == 0:
                await conn.reader.readuntil(b"\r\n")
                return
            yield (await conn.reader.readexactly(size + 2))[:-2]

    async def call(self) -> bytes:
        async with self.slots:
            conn, headers = await self._send(REQUEST)
            body = b"".join([c async for c in self._chunks(conn, headers)])
            self.idle.append(conn)
            return body

    async def stream(self) -> int:
        from promptline.models.sse import aiter_sse

        async with self.slots:
            conn, headers = await self._send(STREAM_REQUEST)
            n = sum([1 async for _ in aiter_sse(self._chunks(conn, headers))])
            self.idle.append(conn)
            return n

    async def aclose(self) -> None:
        for conn in self.idle:
            conn.writer.close()
        self.idle.clear()


class HttpxClient:
    def __init__(self, port: int) -> None:
        import httpx

        self.url = f"http://127.0.0.1:{port}{PATH}"
        limits = httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
        self.client = httpx.AsyncClient(limits=limits, timeout=30)
        self.headers = {"Content-Type": "application/json"}

    async def call(self) -> bytes:
        r = await self.client.post(self.url, content=REQUEST, headers=self.headers)
        assert r.status_code == 200
        return r.content

    async def stream(self) -> int:
        from promptline.models.sse import aiter_sse

        req = self.client.stream("POST", self.url, content=STREAM_REQUEST, headers=self.headers)
        async with req as r:
            return sum([1 async for _ in aiter_sse(r.aiter_bytes())])

    async def aclose(self) -> None:
        await self.client.aclose()


class AiohttpClient:
    def __init__(self, port: int) -> None:
        import aiohttp

        self.url = f"http://127.0.0.1:{port}{PATH}"
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=POOL),
            timeout=aiohttp.ClientTimeout(total=30),
        )
        self.headers = {"Content-Type": "application/json"}

    async def call(self) -> bytes:
        async with self.session.post(self.url, data=REQUEST, headers=self.headers) as r:
            assert r.status == 200
            return await r.read()

    async def stream(self) -> int:
        from promptline.models.sse import aiter_sse

        async with self.session.post(self.url, data=STREAM_REQUEST, headers=self.headers) as r:
            return sum([1 async for _ in aiter_sse(r.content.iter_any())])

    async def aclose(self) -> None:
        await self.session.close()


CLIENTS: dict[str, Callable[[int], Client]] = {
    "asyncio (floor)": RawClient,
    "httpx": HttpxClient,
    "aiohttp": AiohttpClient,
}


# --- measurements --------------------------------------------------------------------------------


async def _timed(fn: Callable[[], Awaitable[Any]]) -> float:
    t0 = time.perf_counter()
    await fn()
    return time.perf_counter() - t0


async def measure(make: Callable[[int], Client], port: int) -> dict[str, float]:
    client = make(port)
    try:
        for _ in range(SEQ_WARMUP):
            await client.call()
        seq = sorted([await _timed(client.call) for _ in range(SEQ_N)])
        await asyncio.gather(*(client.call() for _ in range(CONCURRENT)))  # fill the pool

        async def burst() -> None:
            await asyncio.gather(*(client.call() for _ in range(CONCURRENT)))

        conc = [await _timed(burst) for _ in range(CONCURRENT_ROUNDS)]
        for _ in range(STREAM_WARMUP):
            assert await client.stream() == CHUNKS + 1
        streams = [await _timed(client.stream) for _ in range(STREAM_N)]
    finally:
        await client.aclose()
    return {
        "p50": statistics.median(seq) * 1e6,
        "p95": seq[int(len(seq) * 0.95)] * 1e6,
        "conc": statistics.median(conc) * 1e3,
        "stream": statistics.median(streams) * 1e3,
    }


def parser_rate() -> float:
    """Events per second for ``SseParser`` alone over a 200-chunk stream, one event per chunk."""
    from promptline.models.sse import SseParser

    chunks = [sse_chunk(i) for i in range(CHUNKS)] + [b"data: [DONE]\n\n"]
    rounds = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(50):
            parser = SseParser()
            n = sum(len(parser.feed(c)) for c in chunks)
            parser.close()
        rounds.append(time.perf_counter() - t0)
        assert n == CHUNKS + 1
    return 50 * (CHUNKS + 1) / statistics.median(rounds)


def import_ms(module: str) -> float:
    runs = []
    for _ in range(IMPORT_RUNS):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", module], check=True)
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs) * 1e3


# --- callgrind -----------------------------------------------------------------------------------


def work(clients: Mapping[str, Callable[[int], Any]], name: str, n: int, port: int) -> None:
    """Under callgrind: set up and warm ``name``'s client, then count ``n`` sequential calls."""

    async def run() -> None:
        client = clients[name](port)
        for _ in range(5):
            await client.call()
        callgrind.start_counting()
        for _ in range(n):
            await client.call()
        await client.aclose()

    asyncio.run(run())


def instructions(name: str, n: int, port: int, *, script: str = __file__) -> int:
    """CPU instructions of ``n`` calls by client ``name``, counted by running ``script
    --work name n port`` under callgrind (each bench script lists its own clients)."""
    return callgrind.count(script, ["--work", name, str(n), str(port)])


def main() -> None:
    server = Server()
    try:
        results = {name: asyncio.run(measure(make, server.port)) for name, make in CLIENTS.items()}
        floor = results["asyncio (floor)"]
        print(
            f"{'client':<17}{'call p50 µs':>12}{'p95 µs':>9}{'x floor':>8}"
            f"{'200 conc ms':>13}{'x floor':>8}{'stream ms':>11}{'x floor':>8}"
        )
        for name, r in results.items():
            print(
                f"{name:<17}{r['p50']:>12,.0f}{r['p95']:>9,.0f}{r['p50'] / floor['p50']:>8.2f}"
                f"{r['conc']:>13,.1f}{r['conc'] / floor['conc']:>8.2f}"
                f"{r['stream']:>11,.2f}{r['stream'] / floor['stream']:>8.2f}"
            )
        print(f"\nSseParser alone, {CHUNKS}-chunk stream: {parser_rate():,.0f} events/s")

        base = import_ms("pass")
        print(f"\n{f'import (median of {IMPORT_RUNS})':<24}{'ms':>8}{'minus python -c pass':>22}")
        for module in ("pass", "import httpx", "import aiohttp"):
            ms = import_ms(module)
            print(f"{module:<24}{ms:>8.1f}{ms - base:>22.1f}")

        if shutil.which("valgrind") is None:
            print("\nvalgrind not found: install it to count instructions per request")
            return
        n1, n2 = CALLGRIND_N
        print(f"\n{'client':<17}{'N1':>5}{'N2':>5}{'instructions / request':>25}")
        for name in CLIENTS:
            i1, i2 = instructions(name, n1, server.port), instructions(name, n2, server.port)
            print(f"{name:<17}{n1:>5}{n2:>5}{(i2 - i1) / (n2 - n1):>25,.0f}")
    finally:
        server.stop()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]))
    elif len(sys.argv) == 5 and sys.argv[1] == "--work":
        work(CLIENTS, sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
