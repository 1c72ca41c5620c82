"""The egress proxy on its own, spoken to over its Unix socket: it answers what it does not
serve with a reason, connects to the address it checked (never resolving the name again), and
takes its open tunnels and its socket with it when it stops."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import pytest
from sandbox_support import STUCK, host_server

from promptline.security.sandbox import EgressProxy
from promptline.security.sandbox.egress import MAX_REFUSALS_KEPT, IPAddress

LOOPBACK = ipaddress.ip_address("127.0.0.1")


def allow_all(host: str, addresses: list[IPAddress]) -> None:
    """An egress policy that refuses nothing."""


async def ask(proxy: EgressProxy, request: str) -> str:
    """Send ``request`` to the proxy and read its whole answer."""
    reader, writer = await asyncio.open_unix_connection(str(proxy.socket_path))
    writer.write(request.encode())
    answer = await asyncio.wait_for(reader.read(), STUCK)
    writer.close()
    return answer.decode()


@pytest.mark.parametrize(
    ("request_line", "reason"),
    [
        (
            "GET / HTTP/1.1",
            "GET / is not proxied: only absolute http:// requests and CONNECT are "
            "(https goes through CONNECT)",
        ),
        (
            "GET https://example.com/ HTTP/1.1",
            "GET https://example.com/ is not proxied: only absolute http:// requests and "
            "CONNECT are (https goes through CONNECT)",
        ),
        ("CONNECT example.com HTTP/1.1", "CONNECT needs host:port, got 'example.com'"),
        ("HELLO", "not an HTTP/1.x request: 'HELLO'"),
    ],
)
async def test_a_request_it_does_not_serve_is_answered_400_with_the_reason(
    request_line: str, reason: str
) -> None:
    async with EgressProxy(allow_all) as proxy:
        answer = await ask(proxy, f"{request_line}\r\nHost: example.com\r\n\r\n")

    assert answer.startswith("HTTP/1.1 400 Bad Request\r\n")
    assert answer.endswith(f"\r\n\r\npromptline egress: {reason}\n")


async def test_a_name_that_cannot_be_resolved_is_answered_502() -> None:
    async def resolve(host: str, port: int) -> list[IPAddress]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async with EgressProxy(allow_all, resolve=resolve) as proxy:
        answer = await ask(proxy, "CONNECT nowhere.test:443 HTTP/1.1\r\n\r\n")

    assert answer.startswith("HTTP/1.1 502 Bad Gateway\r\n")
    assert "promptline egress: cannot resolve nowhere.test: Name or service not known" in answer


async def test_a_name_is_resolved_once_and_its_checked_address_is_the_one_connected() -> None:
    checked: list[tuple[str, list[IPAddress]]] = []
    resolved: list[str] = []

    def record(host: str, addresses: list[IPAddress]) -> None:
        checked.append((host, addresses))

    async def resolve(host: str, port: int) -> list[IPAddress]:
        resolved.append(host)
        return [LOOPBACK]

    async with host_server() as server, EgressProxy(record, resolve=resolve) as proxy:
        answer = await ask(
            proxy,
            f"GET http://service.test:{server.port}/a?b=1 HTTP/1.1\r\n"
            f"Host: service.test:{server.port}\r\nProxy-Connection: keep-alive\r\n\r\n",
        )

    assert answer.startswith("HTTP/1.1 200 OK\r\n")
    assert answer.endswith("hello from the host\n")
    assert (resolved, checked) == (["service.test"], [("service.test", [LOOPBACK])])
    assert server.heard == [
        f"GET /a?b=1 HTTP/1.1\r\nHost: service.test:{server.port}\r\nConnection: close\r\n\r\n"
    ]


async def test_stopping_closes_its_open_tunnels_and_removes_its_socket() -> None:
    accepted: asyncio.Queue[None] = asyncio.Queue()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put(None)
        await reader.read()
        writer.close()

    upstream = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = upstream.sockets[0].getsockname()[1]
    try:
        async with EgressProxy(allow_all) as proxy:
            path = proxy.socket_path
            reader, writer = await asyncio.open_unix_connection(str(path))
            writer.write(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n".encode())
            established = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), STUCK)
            await asyncio.wait_for(accepted.get(), STUCK)
        left = await asyncio.wait_for(reader.read(), STUCK)
        writer.close()
    finally:
        upstream.close()

    assert established == b"HTTP/1.1 200 Connection established\r\n\r\n"
    assert left == b""  # the tunnel was closed, not left open
    assert not path.exists()
    assert not path.parent.exists()


async def test_every_refusal_is_answered_and_the_first_ones_are_kept() -> None:
    def refuse_all(host: str, addresses: list[IPAddress]) -> str:
        return f"{host} is not for you"

    async with EgressProxy(refuse_all) as proxy:
        answers = [
            await ask(proxy, f"CONNECT 127.0.0.{n % 250 + 1}:80 HTTP/1.1\r\n\r\n")
            for n in range(MAX_REFUSALS_KEPT + 5)
        ]

    assert all(answer.startswith("HTTP/1.1 403 Forbidden\r\n") for answer in answers)
    assert answers[-1].endswith("promptline egress: 127.0.0.105 is not for you\n")
    assert proxy.refused == [f"127.0.0.{n + 1} is not for you" for n in range(MAX_REFUSALS_KEPT)]
