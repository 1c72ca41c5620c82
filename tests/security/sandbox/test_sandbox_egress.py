"""Under bubblewrap with the ``proxy`` network, a command reaches only what the egress policy
allows, through the proxy its environment names (curl, here; https through CONNECT):
loopback and the cloud metadata address are refused with a one-line reason unless the allow
list names them; without network nothing is reachable; each command's proxy ends with it,
and no command sees another's."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import shutil
import ssl
import tempfile
from pathlib import Path

import pytest
from sandbox_support import host_server, needs_bwrap, sh

from promptline.security.sandbox import BubblewrapSandbox
from promptline.security.sandbox.choice import egress_policy
from promptline.security.sandbox.egress import EgressProxy, IPAddress

pytestmark = [
    needs_bwrap,
    pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl"),
]

LOOPBACK_REFUSED = (
    "promptline egress: 127.0.0.1 is a loopback address (this machine); "
    "security.egress_allow does not name it"
)

# The status, then the body, of what curl got (or curl's own complaint).
CURL = "curl -sS -w '[%{http_code}]' "


def proxied(*allow: str) -> BubblewrapSandbox:
    """Bubblewrap with the proxy network, under the egress policy of ``allow``."""
    return BubblewrapSandbox(network="proxy", egress=egress_policy(allow))


async def test_a_loopback_server_is_reached_through_the_proxy_when_the_allow_list_names_it(
    workspace: Path,
) -> None:
    async with host_server() as server:
        url = f"http://127.0.0.1:{server.port}"
        # Plain http as an absolute-URI request, then through a CONNECT tunnel.
        result = await sh(
            proxied("127.0.0.1"), workspace, f"{CURL}{url}/plain; {CURL}-p {url}/tunnelled"
        )

    assert result.output == "hello from the host\n[200]hello from the host\n[200]"
    assert result.egress_refused == ()
    plain, tunnelled = server.heard
    # The server is sent the path, not the proxy's absolute URI, and one request only.
    assert plain.startswith("GET /plain HTTP/1.1\r\n")
    assert "\r\nConnection: close\r\n" in plain
    assert "proxy-" not in plain.lower()
    assert tunnelled.startswith("GET /tunnelled HTTP/1.1\r\n")


async def test_https_goes_through_the_proxy_with_the_servers_certificate_checked(
    workspace: Path,
) -> None:
    cert = _self_signed_for_loopback(workspace)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, workspace / "key.pem")

    async with host_server(tls) as server:
        url = f"https://127.0.0.1:{server.port}/secure"
        result = await sh(proxied("127.0.0.1"), workspace, f"{CURL}--cacert {cert} {url}")

    assert result.output == "hello from the host\n[200]"
    assert server.heard[0].startswith("GET /secure HTTP/1.1\r\n")


async def test_a_loopback_server_is_refused_with_the_reason_unless_the_allow_list_names_it(
    workspace: Path,
) -> None:
    async with host_server() as server:
        url = f"http://127.0.0.1:{server.port}"
        result = await sh(proxied(), workspace, f"{CURL}{url}/; echo; {CURL}-p {url}/")

    assert result.output.splitlines()[:2] == [LOOPBACK_REFUSED, "[403]"]
    assert "CONNECT tunnel failed, response 403" in result.output
    assert result.egress_refused == (LOOPBACK_REFUSED.removeprefix("promptline egress: "),) * 2
    assert server.heard == []


async def test_the_cloud_metadata_address_is_refused_though_loopback_is_allowed(
    workspace: Path,
) -> None:
    result = await sh(
        proxied("127.0.0.1"), workspace, f"{CURL}http://169.254.169.254/latest/meta-data/"
    )

    assert result.output == (
        "promptline egress: 169.254.169.254 is a link-local address (the cloud metadata "
        "service); security.egress_allow does not name it\n[403]"
    )


async def test_a_name_is_checked_by_every_address_it_resolves_to(workspace: Path) -> None:
    async with host_server() as server:
        result = await sh(proxied(), workspace, f"{CURL}http://localhost:{server.port}/")

    assert result.output.startswith("promptline egress: localhost resolves to ")
    assert "a loopback address (this machine); security.egress_allow does not name it" in (
        result.output
    )
    assert server.heard == []


async def test_without_network_nothing_is_reachable(workspace: Path) -> None:
    async with host_server() as server:
        result = await sh(
            BubblewrapSandbox(),
            workspace,
            f"env | grep -ci proxy; {CURL}http://127.0.0.1:{server.port}/",
        )

    assert result.output.startswith("0\n")
    assert "[000]" in result.output  # no answer at all
    assert result.exit_code != 0
    assert server.heard == []


async def test_the_proxy_ends_with_the_command_and_its_socket_is_removed(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folders = tmp_path / "runtime"
    folders.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folders))
    sandbox = proxied("127.0.0.1")

    async with host_server() as server:
        url = f"http://127.0.0.1:{server.port}/"
        first = await sh(sandbox, workspace, f"{CURL}{url}")
        left_after_first = list(folders.iterdir())
        second = await sh(sandbox, workspace, f"{CURL}{url}")

    assert first.output == second.output == "hello from the host\n[200]"
    assert left_after_first == []
    assert list(folders.iterdir()) == []


async def test_commands_at_the_same_time_each_have_a_proxy_of_their_own(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folders = tmp_path / "runtime"
    folders.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folders))
    allowed, refused = proxied("127.0.0.1"), proxied()

    async with host_server() as server:
        url = f"http://127.0.0.1:{server.port}/"
        results = await asyncio.gather(
            sh(allowed, workspace, CURL + url), sh(refused, workspace, CURL + url)
        )

    assert [result.output for result in results] == [
        "hello from the host\n[200]",
        f"{LOOPBACK_REFUSED}\n[403]",
    ]
    assert [len(result.egress_refused) for result in results] == [0, 1]
    assert list(folders.iterdir()) == []


async def test_a_command_cannot_reach_the_proxy_socket_of_another_command(
    workspace: Path,
) -> None:
    asked: list[str] = []

    def allow_all(host: str, addresses: list[IPAddress]) -> None:
        asked.append(host)

    connect = (
        "python3 -I -c 'import socket, sys; "
        "socket.socket(socket.AF_UNIX).connect(sys.argv[1])' {path} 2>&1 | tail -n 1; "
        "ls /run/promptline"
    )
    async with EgressProxy(allow_all) as other:
        path = other.socket_path
        result = await sh(proxied(), workspace, connect.format(path=path))
        assert path.exists()

    assert result.output.splitlines() == [
        "FileNotFoundError: [Errno 2] No such file or directory",
        "bridge.py",
        "egress.sock",
    ]
    assert asked == []


def _self_signed_for_loopback(folder: Path) -> Path:
    """A certificate for 127.0.0.1 (its key beside it, as key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    loopback = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([loopback]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return folder / "cert.pem"
