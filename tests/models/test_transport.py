"""Time limits of model calls against real sockets on 127.0.0.1, through each transport: the
connect, first-byte and total limits each fire at their own setting and say which one ran out;
a refused port is one connect error; and a provider turns each into one message naming itself,
the URL and the setting to change."""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import pytest

from promptline.core.errors import ConfigError, ProviderTimeout, ProviderUnavailable
from promptline.core.messages import Message
from promptline.models.http import SharedHttpTransport
from promptline.models.http11 import Http11Transport
from promptline.models.openai_chat import OpenAIChatProvider
from promptline.models.transport import (
    DEFAULT_CONNECT_TIMEOUT_SECS,
    DEFAULT_FIRST_BYTE_TIMEOUT_SECS,
    DEFAULT_TIMEOUT_SECS,
    HttpTransport,
    Timeouts,
    TransportConnectError,
    TransportTimeout,
)
from promptline.models.types import ModelRequest

TRANSPORTS: dict[str, Callable[[], HttpTransport]] = {
    "aiohttp": SharedHttpTransport,
    "http11": Http11Transport,
}


@pytest.fixture(params=sorted(TRANSPORTS))
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[HttpTransport]:
    made = TRANSPORTS[request.param]()
    yield made
    await made.aclose()


@dataclass
class Server:
    """A server on 127.0.0.1 that writes ``sends`` to each connection, then keeps it open
    without a word until the test ends."""

    sends: bytes = b""
    url: str = ""
    accepted: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted.set()
        try:
            await reader.readuntil(b"\r\n\r\n")
            if self.sends:
                writer.write(self.sends)
                await writer.drain()
            await self.done.wait()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[bytes], Awaitable[Server]]]:
    servers: list[tuple[asyncio.Server, Server]] = []

    async def start(sends: bytes = b"") -> Server:
        state = Server(sends)
        server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
        state.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        servers.append((server, state))
        return state

    yield start
    for server, state in servers:
        state.done.set()
        server.close()
        await server.wait_closed()


@pytest.fixture
def full_backlog() -> Iterator[str]:
    """The URL of a port whose listen queue is full: a connection to it is neither accepted
    nor refused (the SYN goes unanswered), as with a host that drops packets."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))  # takes the only place in the queue
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        filler.close()
        listener.close()


def free_port() -> int:
    """A port nothing listens on (taken from the system, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def timed(call: Awaitable[object]) -> tuple[BaseException, float]:
    """The error ``call`` raises and how long it took to."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises((TransportTimeout, TransportConnectError)) as caught:
        await call
    return caught.value, loop.time() - started


async def read_stream(transport: HttpTransport, url: str, limits: Timeouts) -> list[bytes]:
    async with transport.stream("GET", url, headers={}, timeout=limits) as answer:
        return [piece async for piece in answer.iter_bytes()]


# --- the limits ---------------------------------------------------------------------------------


def test_the_defaults_are_one_set_shared_by_settings_and_transport() -> None:
    from promptline.config.settings import ProviderSettings

    settings = ProviderSettings()

    assert Timeouts() == Timeouts(
        DEFAULT_CONNECT_TIMEOUT_SECS, DEFAULT_FIRST_BYTE_TIMEOUT_SECS, DEFAULT_TIMEOUT_SECS
    )
    assert (
        settings.connect_timeout_secs,
        settings.first_byte_timeout_secs,
        settings.timeout_secs,
    ) == (DEFAULT_CONNECT_TIMEOUT_SECS, DEFAULT_FIRST_BYTE_TIMEOUT_SECS, DEFAULT_TIMEOUT_SECS)
    assert DEFAULT_CONNECT_TIMEOUT_SECS == 5.0


def test_a_request_time_limit_bounds_every_limit_it_is_shorter_than() -> None:
    limits = Timeouts(connect=5, first_byte=60, total=600)

    assert limits.within(2) == Timeouts(2, 2, 2)
    assert limits.within(30) == Timeouts(5, 30, 30)
    assert limits.within(None) is limits
    assert Timeouts.single(3, stream=True) == Timeouts(3, 3, math.inf)
    assert Timeouts.single(3, stream=False) == Timeouts(3, 3, 3)


@pytest.mark.parametrize("bad", [0, -1, math.nan])
def test_a_limit_that_is_not_a_positive_number_is_refused(bad: float) -> None:
    with pytest.raises(ConfigError, match="positive number of seconds"):
        Timeouts(first_byte=bad)


# --- each limit fires at its own setting --------------------------------------------------------


async def test_a_server_that_accepts_and_never_answers_fails_at_the_first_byte_limit(
    transport: HttpTransport, serve: Callable[[bytes], Awaitable[Server]]
) -> None:
    server = await serve(b"")
    limits = Timeouts(connect=5, first_byte=0.2, total=30)

    whole, waited = await timed(
        transport.request("POST", f"{server.url}/chat/completions", headers={}, timeout=limits)
    )
    streamed, waited_streaming = await timed(read_stream(transport, server.url, limits))

    for error, seconds in ((whole, waited), (streamed, waited_streaming)):
        assert isinstance(error, TransportTimeout)
        assert (error.limit, error.stage, error.seconds) == ("first_byte", "first_byte", 0.2)
        assert "no answer within 0.2 s" in str(error)
        assert 0.15 <= seconds < 5  # the first-byte limit, not the total of 30 s
    assert server.accepted.is_set()


async def test_a_refused_port_is_one_connect_error_that_says_so(transport: HttpTransport) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1/chat/completions"

    error, _ = await timed(transport.request("POST", url, headers={}, timeout=Timeouts()))

    assert isinstance(error, TransportConnectError)
    assert error.connecting
    assert error.reason == "connection refused: nothing listens on that port"
    assert str(error) == f"POST {url}: cannot connect: {error.reason}"


async def test_a_server_that_sends_its_head_then_stalls_fails_at_the_total_limit(
    transport: HttpTransport, serve: Callable[[bytes], Awaitable[Server]]
) -> None:
    server = await serve(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
    limits = Timeouts(connect=5, first_byte=10, total=0.3)

    error, waited = await timed(transport.request("GET", server.url, headers={}, timeout=limits))

    assert isinstance(error, TransportTimeout)
    assert (error.limit, error.stage, error.seconds) == ("total", "body", 0.3)
    assert "the answer did not complete within 0.3 s" in str(error)
    assert 0.25 <= waited < 10


async def test_a_streamed_answer_is_bounded_as_a_whole_by_the_total(
    transport: HttpTransport, serve: Callable[[bytes], Awaitable[Server]]
) -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n"
    server = await serve(head)
    received: list[bytes] = []

    async def read() -> None:
        limits = Timeouts(connect=5, first_byte=10, total=0.3)
        async with transport.stream("GET", server.url, headers={}, timeout=limits) as answer:
            async for piece in answer.iter_bytes():
                received.append(piece)

    error, waited = await timed(read())

    assert isinstance(error, TransportTimeout)
    assert (error.limit, error.stage) == ("total", "body")
    assert received == [b"first"]
    assert waited < 10


async def test_a_streamed_answer_that_falls_silent_fails_at_the_first_byte_limit(
    transport: HttpTransport, serve: Callable[[bytes], Awaitable[Server]]
) -> None:
    server = await serve(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")

    error, waited = await timed(read_stream(transport, server.url, Timeouts(5, 0.2, 30)))

    assert isinstance(error, TransportTimeout)
    assert (error.limit, error.stage) == ("first_byte", "body")
    assert "nothing arrived for 0.2 s" in str(error)
    assert waited < 5


async def test_a_connection_that_is_never_accepted_fails_at_the_connect_limit(
    transport: HttpTransport, full_backlog: str
) -> None:
    limits = Timeouts(connect=0.2, first_byte=30, total=60)

    error, waited = await timed(transport.request("GET", full_backlog, headers={}, timeout=limits))

    assert isinstance(error, TransportTimeout)
    assert (error.limit, error.stage) == ("connect", "connect")
    assert "could not connect within 0.2 s" in str(error)
    assert waited < 5


# --- what a provider makes of it ----------------------------------------------------------------


def ask() -> ModelRequest:
    return ModelRequest(model="m1", messages=[Message(role="user", content="hi")])


async def test_a_silent_provider_is_one_message_naming_it_its_url_and_the_setting(
    transport: HttpTransport, serve: Callable[[bytes], Awaitable[Server]]
) -> None:
    server = await serve(b"")
    provider = OpenAIChatProvider(
        "lab",
        base_url=server.url,
        api_key="k",
        transport=transport,
        timeout=Timeouts(connect=5, first_byte=0.2),
    )

    with pytest.raises(ProviderTimeout) as caught:
        await provider.complete(ask())

    url = f"{server.url}/chat/completions"
    assert caught.value.message == (
        f"lab/m1: {url} accepted the connection but sent no answer within 0.2 s "
        "(first_byte_timeout_secs)"
    )
    assert caught.value.hint is not None
    assert "models.providers.lab.first_byte_timeout_secs" in caught.value.hint
    assert caught.value.details["url"] == url


async def test_a_refused_provider_is_one_message_naming_its_url_and_what_to_check(
    transport: HttpTransport,
) -> None:
    base = f"http://127.0.0.1:{free_port()}/v1"
    provider = OpenAIChatProvider("lab", base_url=base, api_key="k", transport=transport)

    with pytest.raises(ProviderUnavailable) as caught:
        await provider.complete(ask())

    assert caught.value.message == (
        f"lab/m1: could not connect to {base}/chat/completions: connection refused: nothing "
        "listens on that port"
    )
    assert caught.value.hint == (
        f"check that the server at {base.removesuffix('/v1')} is running and that "
        "models.providers.lab.base_url is right"
    )
