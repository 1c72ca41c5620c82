"""The HTTP transports (aiohttp-based and hand-written HTTP/1.1) against real local servers:
answers, streams, keep-alive pooling, the per-host limit, timeouts and dropped connections
mapped to transport errors. Each behavioural test runs against both."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from fakes.openai_fixtures import openai_fake, openai_fake_server
from fakes.openai_server import FakeOpenAI, Hang, TextReply
from promptline.core.errors import ConfigError
from promptline.models.http import SharedHttpTransport
from promptline.models.http11 import Http11Transport
from promptline.models.transport import HttpTransport, TransportConnectError, TransportTimeout

__all__ = ["openai_fake", "openai_fake_server"]  # fixtures used by name below

JSON = {"content-type": "application/json"}
HELLO = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})


MakeTransport = Callable[..., HttpTransport]
TRANSPORTS: dict[str, MakeTransport] = {"aiohttp": SharedHttpTransport, "http11": Http11Transport}


@pytest.fixture(params=sorted(TRANSPORTS))
def make_transport(request: pytest.FixtureRequest) -> MakeTransport:
    """Each transport implementation in turn (keyword arguments as both constructors take)."""
    return TRANSPORTS[request.param]


@pytest.fixture
async def transport(make_transport: MakeTransport) -> AsyncIterator[HttpTransport]:
    shared = make_transport()
    yield shared
    await shared.aclose()


# --- a tiny HTTP/1.1 server whose connections a test can count and steer ----------------------

Handler = Callable[[asyncio.StreamWriter], Awaitable[None]]


@dataclass
class CountingServer:
    """Answers each request with ``handler``; counts connections and requests in flight."""

    handler: Handler
    connections: int = 0
    in_flight: int = 0
    most_in_flight: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode().split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                await reader.readexactly(length)
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
                try:
                    await self.handler(writer)
                finally:
                    self.in_flight -= 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def local_server() -> AsyncIterator[Callable[[Handler], Awaitable[CountingServer]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> CountingServer:
        state = CountingServer(handler)
        server = await asyncio.start_server(state.serve, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        state.url = f"http://127.0.0.1:{port}/"
        return state

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def ok(body: bytes = b"ok") -> Handler:
    async def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Custom: Yes\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()

    return answer


# --- answers and streams from the fake OpenAI server ------------------------------------------


async def test_request_returns_status_lowercase_headers_and_body(
    transport: HttpTransport, openai_fake: FakeOpenAI
) -> None:
    openai_fake.script(TextReply("Hello!"))

    answer = await transport.request(
        "POST",
        f"{openai_fake.base_url}/chat/completions",
        headers=JSON | {"Authorization": "Bearer k"},
        body=HELLO.encode(),
        timeout=5,
    )

    assert answer.status == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["x-request-id"].startswith("req_")
    assert json.loads(answer.body)["choices"][0]["message"]["content"] == "Hello!"
    sent = openai_fake.requests[0]
    assert sent.headers["authorization"] == "Bearer k"
    assert sent.raw_body == HELLO.encode()


async def test_error_status_is_an_answer_not_an_exception(
    transport: HttpTransport, openai_fake: FakeOpenAI
) -> None:
    answer = await transport.request(
        "GET", f"{openai_fake.base_url}/nowhere", headers={}, timeout=5
    )

    assert answer.status == 404
    assert "Invalid URL" in json.loads(answer.body)["error"]["message"]


async def test_stream_yields_the_event_stream_body(
    transport: HttpTransport, openai_fake: FakeOpenAI
) -> None:
    openai_fake.script(TextReply("one two three"))
    body = json.dumps({**json.loads(HELLO), "stream": True}).encode()

    async with transport.stream(
        "POST", f"{openai_fake.base_url}/chat/completions", headers=JSON, body=body, timeout=5
    ) as answer:
        status, kind = answer.status, answer.headers["content-type"]
        raw = b"".join([chunk async for chunk in answer.iter_bytes()])

    assert status == 200
    assert kind.startswith("text/event-stream")
    assert raw.count(b"data: ") == 6  # role, three words, finish, [DONE]
    assert raw.endswith(b"data: [DONE]\n\n")


async def test_hanging_request_times_out(transport: HttpTransport, openai_fake: FakeOpenAI) -> None:
    openai_fake.script(Hang())

    with pytest.raises(TransportTimeout, match=r"no answer within 0\.2 s"):
        await transport.request(
            "POST",
            f"{openai_fake.base_url}/chat/completions",
            headers=JSON,
            body=HELLO.encode(),
            timeout=0.2,
        )


# --- pooling ----------------------------------------------------------------------------------


async def test_sequential_requests_reuse_one_kept_alive_connection(
    transport: HttpTransport, local_server: Callable[[Handler], Awaitable[CountingServer]]
) -> None:
    server = await local_server(ok(b"pong"))

    answers = [await transport.request("GET", server.url, headers={}, timeout=5) for _ in range(5)]

    assert [a.body for a in answers] == [b"pong"] * 5
    assert answers[0].headers["x-custom"] == "Yes"
    assert server.connections == 1


async def test_connections_per_host_are_capped(
    make_transport: MakeTransport,
    local_server: Callable[[Handler], Awaitable[CountingServer]],
) -> None:
    both_busy = asyncio.Event()

    async def slow(writer: asyncio.StreamWriter) -> None:
        if server.in_flight == 2:
            both_busy.set()
        await server.release.wait()
        await ok()(writer)

    server = await local_server(slow)
    other = await local_server(ok())
    transport = make_transport(max_connections_per_host=2)
    try:
        calls = [
            asyncio.ensure_future(transport.request("GET", server.url, headers={}, timeout=5))
            for _ in range(5)
        ]
        await both_busy.wait()
        # The cap is per host: another host is served while the first one's pool is full.
        assert (await transport.request("GET", other.url, headers={}, timeout=5)).body == b"ok"
        server.release.set()
        answers = await asyncio.gather(*calls)
    finally:
        await transport.aclose()

    assert [a.status for a in answers] == [200] * 5
    assert server.most_in_flight == 2
    assert server.connections == 2


def test_pool_size_must_be_positive(make_transport: MakeTransport) -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        make_transport(max_connections_per_host=0)


async def test_closed_transport_opens_new_connections_on_next_use(
    transport: HttpTransport, local_server: Callable[[Handler], Awaitable[CountingServer]]
) -> None:
    server = await local_server(ok())

    await transport.request("GET", server.url, headers={}, timeout=5)
    await transport.aclose()
    await transport.request("GET", server.url, headers={}, timeout=5)

    assert server.connections == 2


# --- timeouts and broken connections ----------------------------------------------------------


async def test_stream_times_out_waiting_for_the_first_byte(
    transport: HttpTransport, local_server: Callable[[Handler], Awaitable[CountingServer]]
) -> None:
    async def silent(writer: asyncio.StreamWriter) -> None:
        await server.release.wait()

    server = await local_server(silent)

    with pytest.raises(TransportTimeout):
        async with transport.stream("GET", server.url, headers={}, timeout=0.2):
            pass
    server.release.set()


async def test_stream_times_out_on_an_idle_gap_between_chunks(
    transport: HttpTransport, local_server: Callable[[Handler], Awaitable[CountingServer]]
) -> None:
    async def stalls(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await server.release.wait()

    server = await local_server(stalls)
    received: list[bytes] = []

    async def read_all() -> None:
        async with transport.stream("GET", server.url, headers={}, timeout=0.2) as answer:
            async for chunk in answer.iter_bytes():
                received.append(chunk)

    with pytest.raises(TransportTimeout):
        await read_all()
    server.release.set()

    assert received == [b"first"]


async def test_connection_dropped_mid_stream_is_a_connect_error(
    transport: HttpTransport, local_server: Callable[[Handler], Awaitable[CountingServer]]
) -> None:
    async def drops(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        writer.close()
        raise ConnectionError("dropped on purpose")

    server = await local_server(drops)

    async def read_all() -> bytes:
        async with transport.stream("GET", server.url, headers={}, timeout=5) as answer:
            return b"".join([chunk async for chunk in answer.iter_bytes()])

    with pytest.raises(TransportConnectError):
        await read_all()
    with pytest.raises(TransportConnectError):
        await transport.request("GET", server.url, headers={}, timeout=5)


async def test_refused_connection_is_a_connect_error(transport: HttpTransport) -> None:
    with pytest.raises(TransportConnectError, match=r"GET http://127\.0\.0\.1:9/"):
        await transport.request("GET", "http://127.0.0.1:9/", headers={}, timeout=5)
    with pytest.raises(TransportConnectError):
        async with transport.stream("GET", "http://127.0.0.1:9/", headers={}, timeout=5):
            pass


async def test_stream_left_unread_does_not_poison_the_pool(
    transport: HttpTransport, local_server: Callable[[Handler], Awaitable[CountingServer]]
) -> None:
    server = await local_server(ok(b"x" * 100_000))

    async with transport.stream("GET", server.url, headers={}, timeout=5) as answer:
        assert answer.status == 200  # leave without reading the body
    again = await transport.request("GET", server.url, headers={}, timeout=5)

    assert again.body == b"x" * 100_000


def test_importing_the_transport_does_not_load_aiohttp() -> None:
    code = (
        "import sys, promptline.models.http, promptline.models.openai_chat;"
        "print('aiohttp' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert result.stdout.strip() == "False"


def test_proxies_come_from_the_environment_once_per_host(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, "http://proxy.internal:3128")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "localhost,127.0.0.1")
    transport = SharedHttpTransport()
    assert transport._proxy_for("https://api.openai.com/v1/chat") == "http://proxy.internal:3128"
    assert transport._proxy_for("https://127.0.0.1:8443/v1/chat") is None
    assert transport._proxy_for("http://api.openai.com/v1/chat") is None  # no HTTP_PROXY set
    monkeypatch.setenv("https_proxy", "http://other:1")
    # Looked up once per scheme and host: a running process keeps what it found.
    assert transport._proxy_for("https://api.openai.com/v1/x") == "http://proxy.internal:3128"
