"""MCP servers over HTTP are reached only where the egress policy allows: a server on this
machine is refused until ``security.egress_allow`` names it, by address, network or host name;
every connection the SDK's client opens is checked and made to the checked address; proxies
are tunnelled to that address. The test server listens on 127.0.0.1; a fake resolver gives it
other names."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from mcp_support import http_server

from promptline.config.plugins import McpServerSettings
from promptline.core.messages import ToolCall, ToolResult
from promptline.events.bus import InProcessEventBus
from promptline.events.memory import InMemoryEventStore
from promptline.security.egress import EgressPolicy
from promptline.tools.executor import CallScope, ToolExecutor
from promptline.tools.mcp import McpManager

pytestmark = pytest.mark.asyncio(loop_scope="module")

NEVER = 3600.0  # a backoff that keeps a refused server from being tried again during a test


class FakeDns:
    """A resolver that answers from a table (one list of answers per question in turn, the
    last repeated) and records the questions."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host not in self.answers:
            raise OSError(-2, "Name or service not known")
        turns = self.answers[host]
        return list(turns[min(self.asked.count(host), len(turns)) - 1])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def urls() -> AsyncIterator[dict[str, str]]:
    """The test server over Streamable HTTP and over SSE, both on 127.0.0.1."""
    async with http_server("streamable_http") as streamable, http_server("sse") as sse:
        yield {"streamable_http": streamable, "sse": sse}


def manager(url: str, transport: str = "streamable_http", **options: Any) -> McpManager:
    settings = McpServerSettings.model_validate({"url": url, "transport": transport})
    return McpManager({"docs": settings}, backoff_first=NEVER, **options)


async def echo(manager: McpManager, text: str) -> ToolResult:
    bus = InProcessEventBus(InMemoryEventStore())
    try:
        executor = ToolExecutor(manager.registry, bus, max_timeout=60.0)
        return await executor.execute(
            ToolCall(name="mcp.docs.echo", arguments={"text": text}),
            CallScope(workspace=Path(".")),
        )
    finally:
        await bus.close()


async def started(servers: McpManager) -> Any:
    await servers.start()
    return servers.status()[0]


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("transport", ["streamable_http", "sse"])
async def test_a_server_on_loopback_is_refused_without_a_rule_and_reached_with_one(
    urls: dict[str, str], transport: str
) -> None:
    url = urls[transport]
    refused = manager(url, transport)
    allowed = manager(url, transport, egress=EgressPolicy(["127.0.0.0/8"]))
    try:
        down = await started(refused)
        up = await started(allowed)
        result = await echo(allowed, "through the rule")
    finally:
        await refused.close()
        await allowed.close()

    assert down.state == "down"
    assert down.error == (
        f"mcp_servers.docs: {url} is refused: 127.0.0.1 is a loopback address (this machine); "
        'add "127.0.0.1" to security.egress_allow to allow it'
    )
    assert refused.registry.names() == []
    assert up.state == "connected"
    assert result.text == "through the rule"


async def test_a_name_that_resolves_to_loopback_is_refused_and_a_rule_naming_it_reaches_it(
    urls: dict[str, str],
) -> None:
    port = urlsplit(urls["streamable_http"]).port
    url = f"http://docs.test:{port}/mcp"
    # The system's resolver knows nothing of docs.test: the server is reached only if the
    # connection goes to the address the check saw.
    dns = FakeDns({"docs.test": [["127.0.0.1"]]})
    refused = manager(url, resolver=dns)
    allowed = manager(url, resolver=dns, egress=EgressPolicy(["docs.test"]))
    try:
        down = await started(refused)
        up = await started(allowed)
        result = await echo(allowed, "by name")
    finally:
        await refused.close()
        await allowed.close()

    assert down.error == (
        f"mcp_servers.docs: {url} is refused: docs.test resolves to 127.0.0.1, a loopback "
        'address (this machine); add "docs.test" to security.egress_allow to allow it'
    )
    assert up.state == "connected"
    assert result.text == "by name"


async def test_every_connection_is_checked_so_a_changed_dns_answer_is_refused(
    urls: dict[str, str],
) -> None:
    port = urlsplit(urls["streamable_http"]).port
    url = f"http://rebind.test:{port}/mcp"
    # The check before connecting sees an allowed address; the connection's own lookup then
    # gets a private one (a rebinding), which is refused there.
    dns = FakeDns({"rebind.test": [["127.0.0.1"], ["10.0.0.9"]]})
    servers = manager(url, resolver=dns, egress=EgressPolicy(["127.0.0.0/8"]))
    try:
        down = await started(servers)
    finally:
        await servers.close()

    assert dns.asked[:2] == ["rebind.test", "rebind.test"]
    assert down.state == "down"
    assert down.error == (
        f"mcp_servers.docs: {url} is refused: rebind.test resolves to 10.0.0.9, a private "
        'address (the local network); add "rebind.test" to security.egress_allow to allow it'
    )


@pytest.mark.parametrize(
    ("url", "why"),
    [
        (
            "http://169.254.169.254/mcp",
            "169.254.169.254 is a link-local address (the cloud metadata service); "
            'add "169.254.169.254"',
        ),
        (
            "http://[::ffff:127.0.0.1]:9/mcp",
            "::ffff:127.0.0.1 is a loopback address (this machine), carried in an IPv6 "
            'address; add "127.0.0.1"',
        ),
        (
            "http://[::ffff:169.254.169.254]/sse",
            "::ffff:169.254.169.254 is a link-local address (the cloud metadata service), "
            "carried in an IPv6 address",
        ),
        ("https://10.1.2.3/mcp", "10.1.2.3 is a private address (the local network)"),
    ],
)
async def test_metadata_private_and_mapped_addresses_are_refused_before_connecting(
    url: str, why: str
) -> None:
    servers = manager(url, "sse" if url.endswith("/sse") else "streamable_http")
    try:
        down = await started(servers)
    finally:
        await servers.close()

    assert down.state == "down"
    assert down.error is not None
    assert down.error.startswith(f"mcp_servers.docs: {url} is refused: {why}")


async def test_a_rule_for_another_network_does_not_reach_loopback(urls: dict[str, str]) -> None:
    servers = manager(urls["streamable_http"], egress=EgressPolicy(["10.0.0.0/8", "*.test"]))
    try:
        down = await started(servers)
    finally:
        await servers.close()

    assert down.state == "down"
    assert "127.0.0.1 is a loopback address" in str(down.error)


async def test_through_a_proxy_the_tunnel_names_the_checked_address(
    urls: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []
    piping: set[asyncio.Task[None]] = set()

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        method, target = head.split(b" ", 2)[:2]
        asked.append(f"{method.decode()} {target.decode()}")
        host, _, where = target.decode().rpartition(":")
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(where))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        task = asyncio.current_task()
        assert task is not None
        piping.add(task)
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    proxy_port = server.sockets[0].getsockname()[1]
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy_port}")
    port = urlsplit(urls["streamable_http"]).port
    dns = FakeDns({"docs.test": [["127.0.0.1"]]})
    servers = manager(
        f"http://docs.test:{port}/mcp", resolver=dns, egress=EgressPolicy(["docs.test"])
    )
    try:
        up = await started(servers)
        result = await echo(servers, "tunnelled")
    finally:
        await servers.close()
        server.close()
        for task in piping:
            task.cancel()
        await asyncio.gather(*piping, return_exceptions=True)
        await server.wait_closed()

    assert up.state == "connected"
    assert result.text == "tunnelled"
    assert asked  # not docs.test: the proxy resolves nothing
    assert set(asked) == {f"CONNECT 127.0.0.1:{port}"}
