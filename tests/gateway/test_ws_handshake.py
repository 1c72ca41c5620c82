"""Opening the control plane: the key (or an access token) in a header or a subprotocol, never
in the URL; refusals as close codes (4401 for the credential, 4403 for a browser's Origin);
the gateway's own loopback origin; the second WebSocket port; and a key that never reaches a
log."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
from ws_support import alice_on, refusal, refused_with, rpc, served, ws_settings

from promptline.events import EventFilter
from promptline.gateway.ws.handshake import origin_allowed


@pytest.mark.parametrize("via", ["header", "x-api-key", "subprotocol"])
async def test_a_key_in_a_header_or_a_subprotocol_opens_the_connection(
    tmp_path: Path, via: str
) -> None:
    async with alice_on(ws_settings(tmp_path / "home"), via=via) as (_, client):
        assert await client.call("ping") == "pong"
        session = await client.call("session.create")

    assert session["user_id"] == "alice"
    assert session["tenant_id"] == "acme"


@pytest.mark.parametrize(
    "key",
    [None, "nonsense", "pl_key_01M8HYGCB8NVCPM8V1Y27ABSW7_not-the-right-secret-at-all"],
)
@pytest.mark.parametrize("via", ["header", "subprotocol"])
async def test_a_missing_or_wrong_key_is_closed_with_4401(
    tmp_path: Path, key: str | None, via: str
) -> None:
    async with served(ws_settings(tmp_path / "home")) as gw:
        assert await refused_with(gw.url, key, via=via) == 4401
        audit = await gw.app.events.read_all(EventFilter(types=frozenset({"audit"})))

    # On the audit trail, as a failed login from the client's address.
    [failed] = [e for e in audit if e.data.action == "auth.failed"]
    assert failed.data.source == "127.0.0.1"
    assert failed.data.outcome == "failure"


async def test_a_credential_in_the_url_is_refused_with_4401_saying_why(tmp_path: Path) -> None:
    async with served(ws_settings(tmp_path / "home")) as gw:
        # Even a good key: the URL it came in may be in some proxy's log already.
        code, reason = await refusal(gw.url, gw.keys.alice, via="query")

    assert code == 4401
    assert reason is not None
    assert reason.startswith("token in URL refused (URLs get logged)")
    assert "promptline.bearer.<token>" in reason


async def test_an_access_token_opens_the_connection_in_a_header_or_a_subprotocol(
    tmp_path: Path,
) -> None:
    import httpx

    async with served(ws_settings(tmp_path / "home")) as gw:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.info.port}") as http:
            answer = await http.post(
                "/v1/auth/token", headers={"Authorization": f"Bearer {gw.keys.alice}"}
            )
        token = answer.json()["access_token"]
        for via in ("header", "subprotocol"):
            async with rpc(gw.url, token, via=via) as client:
                assert (await client.call("session.create"))["user_id"] == "alice"
            # Its subprotocol is selected: a browser fails a connection that selects none.
            async with rpc(gw.url, token, via="subprotocol") as client:
                assert client.ws.subprotocol == "promptline"
        assert await refused_with(gw.url, token + "x", via="subprotocol") == 4401


async def test_a_revoked_key_is_closed_with_4401(tmp_path: Path) -> None:
    from promptline.security.auth import KeyStore

    async with served(ws_settings(tmp_path / "home")) as gw:
        key_id = "_".join(gw.keys.bob.split("_")[1:3])
        await KeyStore(gw.app.state).revoke(key_id)

        assert await refused_with(gw.url, gw.keys.bob) == 4401


async def test_a_browser_from_an_origin_not_allowed_is_closed_with_4403(tmp_path: Path) -> None:
    async with served(ws_settings(tmp_path / "home")) as gw:
        refused = await refused_with(gw.url, gw.keys.alice, origin="https://evil.example.com")
        # Checked before the key: a page elsewhere learns nothing about keys.
        refused_without_key = await refused_with(gw.url, None, origin="https://evil.example.com")
        async with rpc(gw.url, gw.keys.alice, origin="https://studio.example.com") as allowed:
            answer = await allowed.call("ping")
        async with rpc(gw.url, gw.keys.alice) as program:  # no Origin at all
            program_answer = await program.call("ping")

    assert refused == 4403
    assert refused_without_key == 4403
    assert answer == program_answer == "pong"


async def test_the_gateways_own_loopback_origin_is_allowed_by_default(tmp_path: Path) -> None:
    async with served(ws_settings(tmp_path / "home")) as gw:
        port = gw.info.port
        async with rpc(gw.url, gw.keys.alice, origin=f"http://127.0.0.1:{port}") as own:
            assert await own.call("ping") == "pong"
        # Another page on the same machine is another origin.
        other = await refused_with(gw.url, gw.keys.alice, origin=f"http://127.0.0.1:{port + 1}")
        # A name that resolves to loopback (DNS rebinding) is not the gateway's own page.
        rebound = await refused_with(gw.url, gw.keys.alice, origin=f"http://evil.example:{port}")

    assert other == 4403
    assert rebound == 4403


def test_origins_are_compared_by_scheme_host_and_port_in_any_case() -> None:
    allowed = ["https://Studio.example.com/", "http://localhost:5173"]

    assert origin_allowed("https://studio.example.com", allowed)
    assert origin_allowed("http://LOCALHOST:5173", allowed)
    assert not origin_allowed("http://studio.example.com", allowed)
    assert not origin_allowed("http://localhost:5174", allowed)
    assert not origin_allowed("null", allowed)


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("http://localhost:8080", "localhost:8080", True),
        ("http://127.0.0.1:8080", "127.0.0.1:8080", True),
        ("http://[::1]:8080", "[::1]:8080", True),
        ("http://localhost", "localhost:80", True),
        ("http://localhost:8080", "localhost:8081", False),
        ("http://localhost:8080", "127.0.0.1:8080", False),
        ("https://localhost:8080", "localhost:8443", False),
        ("http://gateway.example.com:8080", "gateway.example.com:8080", False),
        ("null", "localhost:8080", False),
        ("http://localhost:notaport", "localhost:8080", False),
    ],
)
def test_only_the_gateways_own_loopback_origin_is_implied(
    origin: str, host: str, allowed: bool
) -> None:
    assert origin_allowed(origin, [], host=host) is allowed


async def test_the_websocket_port_serves_the_control_plane_too(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    settings = ws_settings(tmp_path / "home", f"  websocket_port: {free}\n")

    async with served(settings) as gw:
        assert gw.info.websocket_port == free
        url = f"ws://127.0.0.1:{free}/v1/ws"
        async with rpc(url, gw.keys.alice) as client:
            session = await client.call("session.create")
        async with rpc(gw.url, gw.keys.alice) as main_port:
            subscribed = await main_port.call(
                "events.subscribe", {"session_id": session["id"], "from_seq": 0}
            )
            first = (await main_port.next_event())["event"]

    assert subscribed["session_id"] == session["id"]
    assert first["type"] == "session_created"


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


async def test_the_key_is_never_written_to_a_log_even_at_debug_level(tmp_path: Path) -> None:
    keep = _Keep()
    loggers = [
        logging.getLogger(),
        logging.getLogger("uvicorn"),
        logging.getLogger("uvicorn.error"),
    ]
    async with served(ws_settings(tmp_path / "home"), log_level="debug") as gw:
        # uvicorn configures its loggers when it starts: listen from then on.
        for logger in loggers:
            logger.addHandler(keep)
        try:
            for via in ("subprotocol", "header", "x-api-key"):
                async with rpc(gw.url, gw.keys.alice, via=via) as client:
                    assert await client.call("ping") == "pong"
            assert await refused_with(gw.url, gw.keys.alice, via="query") == 4401
            assert await refused_with(gw.url, gw.keys.alice + "x", via="subprotocol") == 4401
        finally:
            for logger in loggers:
                logger.removeHandler(keep)

    secret = gw.keys.alice.split("_", 3)[3]  # pl_key_<ULID>_<secret>; the secret may hold "_"
    assert any("/v1/ws" in line for line in keep.lines), "the server logged no handshake"
    assert not [line for line in keep.lines if secret in line]
