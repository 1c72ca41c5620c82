"""`Http11Transport`'s own HTTP/1.1 handling against scripted local servers: chunked and
compressed bodies, connection reuse and replacement, interim answers, garbage, TLS, proxies,
cancellation and the request it writes."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import itertools
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promptline.core.errors import InvalidInputError
from promptline.models.http11 import MAX_HEAD_BYTES, Http11Transport, _Dechunker
from promptline.models.transport import TransportConnectError, TransportTimeout

# --- a server that answers with raw bytes, per request ------------------------------------------


@dataclass
class Request:
    """What the server received: the connection it came on, its head and body."""

    connection: int
    head: bytes
    body: bytes

    @property
    def line(self) -> str:
        return self.head.split(b"\r\n", 1)[0].decode()

    def header(self, name: str) -> str | None:
        for line in self.head.decode().split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.lower() == name:
                return value.strip()
        return None


# Answers one request: writes to the writer; returns False to close the connection after.
Script = Callable[[Request, asyncio.StreamWriter], Awaitable[bool]]


@dataclass
class RawServer:
    """Reads requests and lets ``script`` answer each one; records requests and connections."""

    script: Script
    url: str = ""
    connections: int = 0
    requests: list[Request] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)  # set when the test ends

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request = Request(number, head, b"")
                length = request.header("content-length")
                request.body = await reader.readexactly(int(length)) if length else b""
                self.requests.append(request)
                self.arrived.set()
                if not await self.script(request, writer):
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


StartServer = Callable[..., Awaitable[RawServer]]


@pytest.fixture
async def raw_server() -> AsyncIterator[StartServer]:
    servers: list[asyncio.Server] = []
    states: list[RawServer] = []

    async def start(script: Script, *, tls: ssl.SSLContext | None = None) -> RawServer:
        state = RawServer(script)
        states.append(state)
        server = await asyncio.start_server(state.serve, "127.0.0.1", 0, ssl=tls)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        state.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/"
        return state

    yield start
    for state in states:
        state.stop.set()  # scripts that never answer end now
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def transport() -> AsyncIterator[Http11Transport]:
    client = Http11Transport()
    yield client
    await client.aclose()


def answer(raw: bytes, *, keep: bool = True) -> Script:
    """A script that writes ``raw`` to every request."""

    async def script(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(raw)
        return keep

    return script


def ok(body: bytes = b"ok", *extra: bytes) -> bytes:
    headers = b"".join(line + b"\r\n" for line in extra)
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), headers, body)


def chunked(*chunks: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


async def body_of(transport: Http11Transport, url: str) -> list[bytes]:
    async with transport.stream("GET", url, headers={}, timeout=5) as streamed:
        return [piece async for piece in streamed.iter_bytes()]


# --- bodies -------------------------------------------------------------------------------------


async def test_chunked_body_split_across_reads_streams_each_piece_as_it_arrives(
    transport: Http11Transport, raw_server: StartServer
) -> None:
    more = asyncio.Event()

    async def halves(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
        await writer.drain()
        await more.wait()
        writer.write(b"lo\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
        return True

    server = await raw_server(halves)
    pieces: list[bytes] = []
    async with transport.stream("GET", server.url, headers={}, timeout=5) as streamed:
        async for piece in streamed.iter_bytes():
            pieces.append(piece)
            more.set()  # the second half is sent only once the first was received
    again = await transport.request("GET", server.url, headers={}, timeout=5)

    assert pieces[0] == b"hel"
    assert b"".join(pieces) == b"hello world"
    assert again.body == b"hello world"
    assert server.connections == 1  # trailers read, the connection went back to the pool


async def test_chunked_whole_body_with_extensions_and_trailers(
    transport: Http11Transport, raw_server: StartServer
) -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;name=value\r\nabc\r\n1A \r\n" + b"z" * 26 + b"\r\n0\r\nA: 1\r\nB: 2\r\n\r\n"
    )
    server = await raw_server(answer(raw))

    first = await transport.request("GET", server.url, headers={}, timeout=5)
    second = await transport.request("GET", server.url, headers={}, timeout=5)

    assert first.body == second.body == b"abc" + b"z" * 26
    assert server.connections == 1


@given(
    chunks=st.lists(st.binary(min_size=1, max_size=40), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6),
)
def test_dechunker_gives_the_same_data_however_the_bytes_are_split(
    chunks: list[bytes], cuts: list[int]
) -> None:
    raw = b"".join(b"%X;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\nT: v\r\n\r\n"
    points = sorted({min(cut, len(raw)) for cut in cuts} | {0, len(raw)})
    decoder = _Dechunker()

    data = b"".join(decoder.feed(raw[a:b]) for a, b in itertools.pairwise(points))

    assert data == b"".join(chunks)
    assert decoder.done
    assert not decoder.extra


def test_dechunker_flags_bytes_after_the_body() -> None:
    decoder = _Dechunker()

    assert decoder.feed(b"2\r\nhi\r\n0\r\n\r\nHTTP/1.1 200 OK") == b"hi"
    assert decoder.done
    assert decoder.extra


@pytest.mark.parametrize(
    ("encoding", "pack"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data)[2:-4]),  # raw deflate, as some servers send
    ],
    ids=["gzip", "deflate-zlib", "deflate-raw"],
)
async def test_compressed_answers_are_decompressed(
    transport: Http11Transport,
    raw_server: StartServer,
    encoding: str,
    pack: Callable[[bytes], bytes],
) -> None:
    text = b"data: hello\n\n" * 200
    packed = pack(text)
    whole = ok(packed, b"Content-Encoding: " + encoding.encode())
    pieces = [packed[:7], packed[7:40], packed[40:]]
    streamed = (
        b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nTransfer-Encoding: chunked\r\n\r\n%s"
        % (encoding.encode(), chunked(*pieces))
    )
    scripts = iter([whole, streamed])

    async def script(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(next(scripts))
        return True

    server = await raw_server(script)

    plain = await transport.request("GET", server.url, headers={}, timeout=5)
    streamed_body = b"".join(await body_of(transport, server.url))

    assert plain.body == text
    assert plain.headers["content-encoding"] == encoding
    assert streamed_body == text
    assert server.requests[0].header("accept-encoding") == "gzip, deflate"


async def test_corrupt_gzip_is_a_connect_error(
    transport: Http11Transport, raw_server: StartServer
) -> None:
    server = await raw_server(answer(ok(b"\x1f\x8b\x08\x00garbage", b"Content-Encoding: gzip")))

    with pytest.raises(TransportConnectError, match="compressed body"):
        await transport.request("GET", server.url, headers={}, timeout=5)


async def test_body_delimited_by_close_is_read_to_the_end(
    transport: Http11Transport, raw_server: StartServer
) -> None:
    server = await raw_server(
        answer(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", keep=False)
    )

    first = await transport.request("GET", server.url, headers={}, timeout=5)
    second = b"".join(await body_of(transport, server.url))

    assert first.body == second == b"until the end"
    assert server.connections == 2


@pytest.mark.parametrize(
    ("method", "status_line"),
    [("GET", b"204 No Content"), ("GET", b"304 Not Modified"), ("HEAD", b"200 OK")],
)
async def test_answers_without_a_body_leave_the_connection_reusable(
    transport: Http11Transport, raw_server: StartServer, method: str, status_line: bytes
) -> None:
    # A HEAD answer's Content-Length describes the GET body it did not send.
    server = await raw_server(answer(b"HTTP/1.1 %s\r\nContent-Length: 5\r\n\r\n" % status_line))

    first = await transport.request(method, server.url, headers={}, timeout=5)
    async with transport.stream(method, server.url, headers={}, timeout=5) as streamed:
        second = await streamed.read()

    assert first.body == second == b""
    assert server.connections == 1


async def test_repeated_headers_are_joined_and_folded_lines_unfolded(
    transport: Http11Transport, raw_server: StartServer
) -> None:
    server = await raw_server(
        answer(ok(b"x", b"Set-Cookie: a=1", b"X-Long: one", b"  two", b"SET-COOKIE: b=2"))
    )

    got = await transport.request("GET", server.url, headers={}, timeout=5)

    assert got.headers["set-cookie"] == "a=1, b=2"
    assert got.headers["x-long"] == "one two"


async def test_interim_1xx_answers_are_skipped(
    transport: Http11Transport, raw_server: StartServer
) -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    server = await raw_server(answer(interim + ok(b"final")))

    got = await transport.request("POST", server.url, headers={}, body=b"{}", timeout=5)
    async with transport.stream("POST", server.url, headers={}, timeout=5) as streamed:
        status, rest = streamed.status, await streamed.read()

    assert (got.status, got.body) == (200, b"final")
    assert (status, rest) == (200, b"final")
    assert "link" not in got.headers


# --- garbage ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "not HTTP/1.x"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "not HTTP/1.x"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", "invalid Content-Length"),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n", "longer than"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", "longer than its"),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "switched protocols"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "middle of the answer's head"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "after 5 of 10 body bytes"),
    ],
    ids=[
        "not-http",
        "bad-status",
        "no-colon",
        "bad-length",
        "head-too-long",
        "bad-chunk-size",
        "chunk-too-long",
        "switch",
        "cut-head",
        "cut-body",
    ],
)
async def test_garbage_answers_are_connect_errors_saying_what_was_wrong(
    transport: Http11Transport, raw_server: StartServer, raw: bytes, needle: str
) -> None:
    server = await raw_server(answer(raw, keep=False))

    with pytest.raises(TransportConnectError, match=needle) as caught:
        await transport.request("GET", server.url, headers={}, timeout=5)
    with pytest.raises(TransportConnectError, match=needle):
        async with transport.stream("GET", server.url, headers={}, timeout=5) as streamed:
            await streamed.read()

    assert str(caught.value).startswith(f"GET {server.url}: ")


# --- connection reuse ---------------------------------------------------------------------------


async def test_idle_connections_are_reused_newest_first(
    transport: Http11Transport, raw_server: StartServer
) -> None:
    async def echo_connection(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(ok(str(request.connection).encode()))
        return True

    server = await raw_server(echo_connection)
    # Two connections at once: the first stream holds one while a second call opens another.
    async with transport.stream("GET", server.url, headers={}, timeout=5) as first:
        assert await first.read() == b"1"
        second = await transport.request("GET", server.url, headers={}, timeout=5)
    # Connection 2 went back to the pool first, then connection 1: 1 is the newest idle one.
    third = await transport.request("GET", server.url, headers={}, timeout=5)

    assert second.body == b"2"
    assert third.body == b"1"


async def test_server_closing_an_idle_connection_means_a_fresh_one_next_time(
    transport: Http11Transport, raw_server: StartServer
) -> None:
    # Keep-alive by HTTP/1.1 default, yet the server hangs up once the answer is out.
    server = await raw_server(answer(ok(b"bye"), keep=False))

    first = await transport.request("GET", server.url, headers={}, timeout=5)
    # Whether the close is seen before the call (the idle connection is dropped) or only by
    # it (the request is sent again on a fresh connection), the call succeeds.
    second = await transport.request("GET", server.url, headers={}, timeout=5)

    assert (first.body, second.body) == (b"bye", b"bye")
    assert server.connections == 2


async def test_reused_connection_closed_before_answering_is_retried_once_on_a_fresh_one(
    transport: Http11Transport, raw_server: StartServer
) -> None:
    async def drop_second_request_on_a_connection(
        request: Request, writer: asyncio.StreamWriter
    ) -> bool:
        if sum(r.connection == request.connection for r in server.requests) == 2:
            return False  # read the request, close without a byte: a keep-alive race
        writer.write(ok(b"served on %d" % request.connection))
        return True

    server = await raw_server(drop_second_request_on_a_connection)

    await transport.request("GET", server.url, headers={}, timeout=5)
    again = await transport.request("POST", server.url, headers={}, body=b"{}", timeout=5)

    assert again.body == b"served on 2"
    assert [r.connection for r in server.requests] == [1, 1, 2]


async def test_fresh_connection_closed_before_answering_is_not_retried(
    transport: Http11Transport, raw_server: StartServer
) -> None:
    async def hang_up(request: Request, writer: asyncio.StreamWriter) -> bool:
        return False

    server = await raw_server(hang_up)

    with pytest.raises(TransportConnectError, match="closed the connection without answering"):
        await transport.request("POST", server.url, headers={}, body=b"{}", timeout=5)

    assert len(server.requests) == 1


async def test_reused_connection_cut_mid_answer_is_not_retried(
    transport: Http11Transport, raw_server: StartServer
) -> None:
    async def cut_second(request: Request, writer: asyncio.StreamWriter) -> bool:
        if len(server.requests) == 2:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\npart")
            return False
        writer.write(ok())
        return True

    server = await raw_server(cut_second)
    await transport.request("GET", server.url, headers={}, timeout=5)

    with pytest.raises(TransportConnectError, match="after 4 of 9 body bytes"):
        await transport.request("POST", server.url, headers={}, body=b"{}", timeout=5)

    assert len(server.requests) == 2


@pytest.mark.parametrize("who", ["server", "client"])
async def test_connection_close_is_honoured(
    transport: Http11Transport, raw_server: StartServer, who: str
) -> None:
    extra = (b"Connection: close",) if who == "server" else ()
    server = await raw_server(answer(ok(b"x", *extra)))
    headers = {"Connection": "close"} if who == "client" else {}

    for _ in range(2):
        assert (await transport.request("GET", server.url, headers=headers, timeout=5)).body == b"x"
    async with transport.stream("GET", server.url, headers=headers, timeout=5) as streamed:
        assert await streamed.read() == b"x"

    assert server.connections == 3
    assert [r.header("connection") for r in server.requests] == [headers.get("Connection")] * 3


async def test_abandoned_stream_closes_its_connection(
    transport: Http11Transport, raw_server: StartServer
) -> None:
    async def first_unfinished(request: Request, writer: asyncio.StreamWriter) -> bool:
        if len(server.requests) == 1:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n")
            await server.stop.wait()
            return False
        writer.write(ok())
        return True

    server = await raw_server(first_unfinished)

    async with transport.stream("GET", server.url, headers={}, timeout=5) as streamed:
        async for piece in streamed.iter_bytes():
            assert piece
            break
    await transport.request("GET", server.url, headers={}, timeout=5)

    assert server.connections == 2


async def test_aclose_fails_a_busy_call_and_the_pool_recovers(
    transport: Http11Transport, raw_server: StartServer
) -> None:
    async def first_hangs(request: Request, writer: asyncio.StreamWriter) -> bool:
        if len(server.requests) == 1:
            await server.stop.wait()
            return False
        writer.write(ok())
        return True

    server = await raw_server(first_hangs)
    busy = asyncio.ensure_future(transport.request("GET", server.url, headers={}, timeout=30))
    await server.arrived.wait()

    await transport.aclose()

    with pytest.raises(TransportConnectError, match="transport was closed during the call"):
        await busy
    assert (await transport.request("GET", server.url, headers={}, timeout=5)).body == b"ok"


# --- waiting, timeouts and cancellation ---------------------------------------------------------


async def test_cancelled_waiter_gives_its_turn_to_the_next(raw_server: StartServer) -> None:
    release = asyncio.Event()

    async def first_waits(request: Request, writer: asyncio.StreamWriter) -> bool:
        if len(server.requests) == 1:
            await release.wait()
        writer.write(ok(b"%d" % len(server.requests)))
        return True

    server = await raw_server(first_waits)
    transport = Http11Transport(max_connections_per_host=1)
    try:
        holder = asyncio.ensure_future(transport.request("GET", server.url, headers={}, timeout=5))
        await server.arrived.wait()
        gives_up = asyncio.ensure_future(
            transport.request("GET", server.url, headers={}, timeout=5)
        )
        waits = asyncio.ensure_future(transport.request("GET", server.url, headers={}, timeout=5))
        await asyncio.sleep(0)  # one loop turn: both calls run until they queue for the slot
        (pool,) = transport._pools.values()
        assert len(pool.waiters) == 2
        gives_up.cancel()
        release.set()
        results = await asyncio.gather(holder, waits)
    finally:
        await transport.aclose()

    assert gives_up.cancelled()
    assert [r.body for r in results] == [b"1", b"2"]
    assert server.connections == 1


async def test_a_call_cancelled_from_outside_is_cancelled_not_timed_out(
    transport: Http11Transport, raw_server: StartServer
) -> None:
    async def silent(request: Request, writer: asyncio.StreamWriter) -> bool:
        await server.stop.wait()
        return False

    server = await raw_server(silent)
    call = asyncio.ensure_future(transport.request("GET", server.url, headers={}, timeout=30))
    await server.arrived.wait()

    call.cancel()

    with pytest.raises(asyncio.CancelledError):
        await call


async def test_timeout_inside_an_outer_timeout_is_the_transports_own(
    transport: Http11Transport, raw_server: StartServer
) -> None:
    async def silent(request: Request, writer: asyncio.StreamWriter) -> bool:
        await server.stop.wait()
        return False

    server = await raw_server(silent)

    async with asyncio.timeout(30):
        with pytest.raises(TransportTimeout, match=r"within 0\.1 s"):
            await transport.request("GET", server.url, headers={}, timeout=0.1)
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_deadlines_of_different_lengths_each_fire_on_time(
    transport: Http11Transport, raw_server: StartServer
) -> None:
    async def silent(request: Request, writer: asyncio.StreamWriter) -> bool:
        await server.stop.wait()
        return False

    server = await raw_server(silent)
    loop = asyncio.get_running_loop()
    finished: list[str] = []

    async def timed(name: str, seconds: float) -> float:
        started = loop.time()
        with pytest.raises(TransportTimeout):
            await transport.request("GET", server.url, headers={}, timeout=seconds)
        finished.append(name)
        return loop.time() - started

    # The long deadline is set first; the short one must bring the shared timer forward.
    long, short = await asyncio.gather(timed("long", 0.5), timed("short", 0.05))

    assert finished == ["short", "long"]
    assert 0.05 <= short < 0.5 <= long


# --- TLS and proxies ----------------------------------------------------------------------------


@dataclass
class Certificate:
    server: ssl.SSLContext
    client: ssl.SSLContext


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1, with contexts that serve and trust it."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder: Path = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    return Certificate(server, ssl.create_default_context(cafile=str(cert_file)))


async def test_https_with_a_trusted_certificate_reuses_its_tls_connection(
    raw_server: StartServer, certificate: Certificate
) -> None:
    server = await raw_server(answer(ok(b"secret")), tls=certificate.server)
    transport = Http11Transport(ssl_context=certificate.client)
    try:
        got = [await transport.request("GET", server.url, headers={}, timeout=5) for _ in "ab"]
        streamed = await body_of(transport, server.url)
    finally:
        await transport.aclose()

    assert [g.body for g in got] == [b"secret", b"secret"]
    assert streamed == [b"secret"]
    assert server.connections == 1


async def test_https_with_an_untrusted_certificate_is_a_connect_error(
    transport: Http11Transport, raw_server: StartServer, certificate: Certificate
) -> None:
    server = await raw_server(answer(ok()), tls=certificate.server)

    with pytest.raises(TransportConnectError, match="TLS certificate is not trusted"):
        await transport.request("GET", server.url, headers={}, timeout=5)


@dataclass
class Proxy:
    """A tiny forward proxy: CONNECT tunnels and absolute-URI requests, both piped through."""

    heads: list[bytes] = field(default_factory=list)
    url: str = ""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ")
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
        else:
            host, port = target.split("/")[2].rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        if method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            up_writer.write(head)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except ConnectionError:
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.fixture
async def proxy(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Proxy]:
    state = Proxy()
    server = await asyncio.start_server(state.serve, "127.0.0.1", 0)
    state.url = f"http://user:p%40ss@127.0.0.1:{server.sockets[0].getsockname()[1]}"
    for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, state.url)
    yield state
    server.close()
    await server.wait_closed()


async def test_https_through_a_proxy_uses_a_connect_tunnel(
    raw_server: StartServer, certificate: Certificate, proxy: Proxy
) -> None:
    server = await raw_server(answer(ok(b"tunnelled")), tls=certificate.server)
    transport = Http11Transport(ssl_context=certificate.client)
    try:
        got = await transport.request("GET", f"{server.url}v1/x?y=1", headers={}, timeout=5)
    finally:
        await transport.aclose()

    authority = server.url.split("/")[2]
    assert got.body == b"tunnelled"
    assert proxy.heads[0].startswith(b"CONNECT %s HTTP/1.1\r\n" % authority.encode())
    assert b"Proxy-Authorization: Basic dXNlcjpwQHNz\r\n" in proxy.heads[0]  # user:p@ss
    assert server.requests[0].line == "GET /v1/x?y=1 HTTP/1.1"  # origin form inside


async def test_http_through_a_proxy_sends_the_absolute_uri(
    transport: Http11Transport, raw_server: StartServer, proxy: Proxy
) -> None:
    server = await raw_server(answer(ok(b"forwarded")))

    got = await transport.request("GET", f"{server.url}v1/x?y=1", headers={}, timeout=5)

    assert got.body == b"forwarded"
    assert proxy.heads[0].startswith(b"GET %sv1/x?y=1 HTTP/1.1\r\n" % server.url.encode())
    assert b"Proxy-Authorization: Basic dXNlcjpwQHNz\r\n" in proxy.heads[0]


async def test_proxy_refusing_the_tunnel_is_a_connect_error(
    raw_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    refuser = await raw_server(answer(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"))
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, refuser.url)
    transport = Http11Transport()
    try:
        with pytest.raises(TransportConnectError, match=r"refused to open a tunnel.*407"):
            await transport.request("GET", "https://api.example.com/v1", headers={}, timeout=5)
    finally:
        await transport.aclose()


# --- the request on the wire and bad input ------------------------------------------------------


async def test_request_head_carries_host_length_and_the_callers_headers(
    transport: Http11Transport, raw_server: StartServer
) -> None:
    server = await raw_server(answer(ok()))

    await transport.request(
        "POST", f"{server.url}v1/chat?x=1#frag", headers={"X-Key": "k"}, body=b"{}", timeout=5
    )
    await transport.request("POST", server.url, headers={"Host": "other.example"}, timeout=5)

    first, second = server.requests
    assert first.line == "POST /v1/chat?x=1 HTTP/1.1"
    assert first.header("host") == server.url.split("/")[2]
    assert first.header("content-length") == "2"
    assert first.header("x-key") == "k"
    assert first.body == b"{}"
    assert second.header("host") == "other.example"
    assert second.header("content-length") == "0"


@pytest.mark.parametrize(
    ("url", "headers", "needle"),
    [
        ("ftp://example.com/", {}, "only http:// and https://"),
        ("http:///nohost", {}, "names no host"),
        ("http://example.com:99999/", {}, "cannot send a request"),
        ("http://example.com/a b", {}, "spaces, control or non-ASCII"),
        ("http://example.com/", {"Authorization": "Bearer k\r\nX-Evil: 1"}, "line break"),
        ("http://example.com/", {"X-Name": "Zoë ✓"}, "characters HTTP cannot carry"),
        ("http://example.com/", {"Content-Length": "5"}, "set by the transport"),
    ],
)
async def test_bad_urls_and_headers_are_rejected_before_sending(
    transport: Http11Transport, url: str, headers: dict[str, str], needle: str
) -> None:
    with pytest.raises(InvalidInputError, match=needle):
        await transport.request("GET", url, headers=headers, timeout=5)
