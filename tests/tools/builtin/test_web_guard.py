"""Which addresses web_get may reach: public ones only (checked after DNS resolution and on
every redirect, the connection pinned to the address checked), plus what
``security.egress_allow`` lists; and its default permission is ask. The policy itself is
tested in tests/security/test_egress.py.

The test server listens on 127.0.0.1; a fake resolver gives it public-looking names.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from promptline.app import build_app
from promptline.config import load_settings
from promptline.config.settings import Settings
from promptline.security.policy import PermissionPolicy
from promptline.tools import ToolOutput
from promptline.tools.base import ToolError
from promptline.tools.builtin import builtin_tools, web_get_tool
from tools.support import call


class FakeDns:
    """A resolver that answers from a table (one list of answers per name, the last repeated)
    and counts the questions."""

    def __init__(self, **names: list[str] | list[list[str]]) -> None:
        self.answers = {
            name.replace("_", "."): ([answer] if answer and isinstance(answer[0], str) else answer)
            for name, answer in names.items()
        }
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        answers = self.answers.get(host)
        if answers is None:
            raise OSError(-2, "Name or service not known")
        asked = self.asked.count(host)
        return list(answers[min(asked, len(answers)) - 1])  # type: ignore[arg-type]


@pytest.fixture
async def port(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[int]:
    """A server on 127.0.0.1 answering /text, and /to-private /to-internal /to-metadata
    with redirects to non-public addresses."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    server = await asyncio.start_server(_handle, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ", 2)[1].decode()
        port = writer.get_extra_info("sockname")[1]
        redirects = {
            "/to-private": f"http://127.0.0.1:{port}/text",
            "/to-internal": f"http://internal.test:{port}/text",
            "/to-metadata": "http://169.254.169.254/latest/meta-data/",
        }
        if path in redirects:
            writer.write(
                f"HTTP/1.1 302 Found\r\nLocation: {redirects[path]}\r\n"
                "Content-Length: 0\r\n\r\n".encode()
            )
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n")
            writer.write(b"Content-Length: 5\r\n\r\nhello")
        await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def fetch(workspace: Path, url: str, **options: object) -> ToolOutput:
    result = await call(web_get_tool(**options), workspace, url=url)  # type: ignore[arg-type]
    assert isinstance(result, ToolOutput)
    return result


async def refused(workspace: Path, url: str, **options: object) -> str:
    with pytest.raises(ToolError) as caught:
        await fetch(workspace, url, **options)
    assert caught.value.hint == (
        "web_get reaches public addresses only; to let it reach this one, list the host or its "
        "network in security.egress_allow (docs/security.md#network-egress)"
    )
    return caught.value.message


async def test_a_name_that_resolves_to_loopback_is_refused(workspace: Path, port: int) -> None:
    message = await refused(workspace, f"http://localhost:{port}/text")

    assert message.startswith(f"web_get does not fetch http://localhost:{port}/text: localhost ")
    assert "a loopback address (this machine)" in message


async def test_a_public_name_resolving_to_a_private_address_is_refused(workspace: Path) -> None:
    dns = FakeDns(sneaky_example_com=["93.184.216.34", "10.1.2.3"])

    message = await refused(workspace, "http://sneaky.example.com/", resolver=dns)

    # One refused address refuses the name: which one a connection takes is not the name's
    # owner's choice to make.
    assert message == (
        "web_get does not fetch http://sneaky.example.com/: sneaky.example.com resolves to "
        "10.1.2.3, a private address (the local network)"
    )


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://169.254.169.254/latest/meta-data/", "a link-local address (the cloud metadata"),
        ("http://127.0.0.1/", "a loopback address"),
        ("http://[::1]:8080/v1/sessions", "a loopback address"),
        ("http://[fc00::1]/", "a unique-local address"),
        ("http://[fd12:3456:789a::1]/", "a unique-local address"),
        ("http://[fe80::1]/", "a link-local address"),
        ("http://10.0.0.1/", "a private address"),
        ("http://172.16.5.4/", "a private address"),
        ("http://192.168.1.1/", "a private address"),
        ("http://100.64.0.1/", "a shared address (carrier-grade NAT)"),
        ("http://0.0.0.0:8080/", "the unspecified address"),
        ("http://[::ffff:127.0.0.1]/", "a loopback address (this machine), carried in an IPv6"),
        ("http://[::ffff:169.254.169.254]/", "(the cloud metadata service), carried in an IPv6"),
        ("http://[64:ff9b::a9fe:a9fe]/", "(the cloud metadata service), carried in an IPv6"),
        ("http://[2002:c0a8:0101::1]/", "a private address (the local network), carried in"),
        ("http://224.0.0.1/", "a multicast address"),
    ],
)
async def test_non_public_addresses_are_refused_before_connecting(
    workspace: Path, url: str, why: str
) -> None:
    message = await refused(workspace, url)

    assert message.startswith(f"web_get does not fetch {url}: ")
    assert why in message


async def test_a_redirect_from_a_public_server_to_a_private_address_is_refused(
    workspace: Path, port: int
) -> None:
    # The server is public as far as this test is concerned: its name is allowed.
    dns = FakeDns(public_test=["127.0.0.1"], internal_test=["10.0.0.7"])
    options = {"resolver": dns, "allow": ["public.test"]}
    base = f"http://public.test:{port}"

    fine = await fetch(workspace, f"{base}/text", **options)
    literal = await refused(workspace, f"{base}/to-private", **options)
    by_name = await refused(workspace, f"{base}/to-internal", **options)
    metadata = await refused(workspace, f"{base}/to-metadata", **options)

    assert fine.content == "status: 200 OK\ncontent-type: text/plain\n\nhello"
    assert literal == (
        f"web_get does not fetch http://127.0.0.1:{port}/text (a redirect from "
        f"{base}/to-private): 127.0.0.1 is a loopback address (this machine)"
    )
    assert by_name.endswith(
        "internal.test resolves to 10.0.0.7, a private address (the local network)"
    )
    assert "169.254.169.254 is a link-local address (the cloud metadata service)" in metadata


async def test_the_connection_goes_to_the_address_that_was_checked(
    workspace: Path, port: int
) -> None:
    # The first answer is allowed, the next one (a rebinding) is not. The name means nothing
    # to the system's resolver, so the fetch works only if it connects to the address the
    # check saw, without looking the name up again.
    dns = FakeDns(rebind_test=[["127.0.0.1"], ["10.0.0.9"]])
    options = {"resolver": dns, "allow": ["127.0.0.0/8"]}

    first = await fetch(workspace, f"http://rebind.test:{port}/text", **options)
    second = await refused(workspace, f"http://rebind.test:{port}/text", **options)

    assert first.content.endswith("\n\nhello")
    assert dns.asked == ["rebind.test", "rebind.test"]  # once per request
    assert second.endswith(
        "rebind.test resolves to 10.0.0.9, a private address (the local network)"
    )


@pytest.mark.parametrize("allow", [["127.0.0.1"], ["127.0.0.0/8"], ["localhost"], ["*.test"]])
async def test_an_allowed_host_or_network_is_reached(
    workspace: Path, port: int, allow: list[str]
) -> None:
    dns = FakeDns(localhost=["127.0.0.1"], box_test=["127.0.0.1"])
    host = "box.test" if allow == ["*.test"] else "localhost"

    result = await fetch(workspace, f"http://{host}:{port}/text", resolver=dns, allow=allow)

    assert result.content.endswith("\n\nhello")


async def test_https_is_pinned_to_the_checked_address_and_verified_by_name(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    cert, key = _self_signed("secure.test", tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    server = await asyncio.start_server(_handle, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    dns = FakeDns(secure_test=["127.0.0.1"], other_test=["127.0.0.1"])
    options = {"resolver": dns, "allow": ["127.0.0.1"], "ssl_context": client_context}
    try:
        result = await fetch(workspace, f"https://secure.test:{port}/text", **options)
        with pytest.raises(ToolError, match=r"could not fetch https://other\.test"):
            await fetch(workspace, f"https://other.test:{port}/text", **options)
    finally:
        server.close()
        await server.wait_closed()

    assert result.content.endswith("\n\nhello")


def _self_signed(name: str, folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def settings(**sections: object) -> Settings:
    return Settings.model_validate(sections)


def test_web_get_asks_by_default_although_it_is_read_only() -> None:
    [tool] = [t for t in builtin_tools() if t.name == "web_get"]

    decision = PermissionPolicy(settings()).decide("web_get", read_only=tool.read_only)
    file_read = PermissionPolicy(settings()).decide("file_read", read_only=True)

    assert tool.read_only
    assert (decision.mode, decision.level) == ("ask", "default")
    assert decision.reason == (
        "no rule covers web_get, which reaches the network, and security.require_approval is "
        "on, so it needs approval"
    )
    assert file_read.mode == "allow"


def test_a_rule_or_require_approval_off_lets_web_get_run() -> None:
    ruled = PermissionPolicy(settings(tools={"web_get": "allow"})).decide("web_get", read_only=True)
    lax = PermissionPolicy(settings(security={"require_approval": False}))

    assert ruled.mode == "allow"
    assert lax.decide("web_get", read_only=True).mode == "allow"


async def test_the_app_gives_web_get_the_configured_allow_list(
    tmp_path: Path, workspace: Path, port: int
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text("security:\n  egress_allow: [127.0.0.1]\n", encoding="utf-8")
    configured = load_settings(home / "config.yaml", environ={"PROMPTLINE_HOME": str(home)})
    async with build_app(configured) as app:
        result = await call(
            app.tools.require("web_get"), workspace, url=f"http://127.0.0.1:{port}/text"
        )

    assert result.content.endswith("\n\nhello")


async def test_through_a_proxy_the_tunnel_names_the_checked_address(
    workspace: Path, port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        target = head.split(b" ", 2)[1].decode()
        asked.append(target)
        host, _, where = target.rpartition(":")
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(where))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    proxy_port = server.sockets[0].getsockname()[1]
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy_port}")
    dns = FakeDns(public_test=["127.0.0.1"])
    try:
        result = await fetch(
            workspace, f"http://public.test:{port}/text", resolver=dns, allow=["public.test"]
        )
    finally:
        server.close()
        await server.wait_closed()

    assert asked == [f"127.0.0.1:{port}"]  # not public.test: the proxy resolves nothing
    assert result.content.endswith("\n\nhello")
