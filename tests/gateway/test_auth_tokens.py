"""Access and refresh tokens on the gateway: the exchange, expiry on a moved clock, rotation,
reuse detection revoking the family, revocation, and every refusal a 401 with its reason; the
same access tokens on the WebSocket control plane and ``/mcp`` of a real server."""

from __future__ import annotations

import base64
import contextlib
import json
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from click.testing import CliRunner
from gateway_support import Keys, auth, live_gateway, make_keys, settings_for
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from ws_support import rpc, served, ws_settings

from promptline.app import App, build_app
from promptline.cli.main import app as cli
from promptline.config.settings import Settings
from promptline.core.clock import ManualClock
from promptline.gateway.app import create_gateway
from promptline.security import jwt
from promptline.security.auth import KeyStore

ACCESS_TTL = 900


@dataclass
class Gw:
    app: App
    client: httpx.AsyncClient
    clock: ManualClock
    keys: Keys
    settings: Settings

    async def tokens(self, key: str) -> dict[str, Any]:
        response = await self.client.post("/v1/auth/token", headers=auth(key))
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def refresh(self, refresh_token: str) -> httpx.Response:
        return await self.client.post("/v1/auth/refresh", json={"refresh_token": refresh_token})


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gw]:
    settings = settings_for(tmp_path / "home")
    clock = ManualClock(datetime.now(UTC))
    async with build_app(settings, clock=clock) as app:
        await app.start_runtime()
        transport = httpx.ASGITransport(app=create_gateway(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield Gw(app, client, clock, await make_keys(app), settings)


def unauthorized(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["code"] == "unauthorized"
    return str(error["message"])


async def test_an_api_key_is_exchanged_for_tokens_that_work_like_it(gw: Gw) -> None:
    pair = await gw.tokens(gw.keys.alice)

    assert pair["token_type"] == "Bearer"
    assert pair["expires_in"] == ACCESS_TTL
    assert pair["refresh_expires_in"] == 30 * 24 * 3600
    assert pair["refresh_token"].startswith("pl_rt_")
    created = await gw.client.post("/v1/sessions", json={}, headers=auth(pair["access_token"]))
    assert created.status_code == 201, created.text
    listed = await gw.client.get("/v1/sessions", headers=auth(gw.keys.alice))
    assert [s["id"] for s in listed.json()["items"]] == [created.json()["id"]]


async def test_the_exchange_needs_a_valid_api_key(gw: Gw) -> None:
    assert "needs an API key" in unauthorized(await gw.client.post("/v1/auth/token"))
    bad = await gw.client.post("/v1/auth/token", headers=auth("pl_key_nope_nope"))
    assert "not valid" in unauthorized(bad)
    pair = await gw.tokens(gw.keys.alice)
    # An access token is not an API key: it gets no tokens of its own.
    assert unauthorized(await gw.client.post("/v1/auth/token", headers=auth(pair["access_token"])))


async def test_an_access_token_expires_and_a_refresh_gets_a_new_one(gw: Gw) -> None:
    pair = await gw.tokens(gw.keys.alice)
    gw.clock.advance(ACCESS_TTL - 1)
    assert (await gw.client.get("/v1/sessions", headers=auth(pair["access_token"]))).is_success

    gw.clock.advance(1)
    expired = await gw.client.get("/v1/sessions", headers=auth(pair["access_token"]))
    assert unauthorized(expired) == "the token has expired"

    renewed = await gw.refresh(pair["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    fresh = renewed.json()
    assert fresh["refresh_token"] != pair["refresh_token"]
    assert (await gw.client.get("/v1/sessions", headers=auth(fresh["access_token"]))).is_success


async def test_a_refresh_token_expires(gw: Gw) -> None:
    pair = await gw.tokens(gw.keys.alice)
    gw.clock.advance(30 * 24 * 3600)

    assert unauthorized(await gw.refresh(pair["refresh_token"])) == (
        "the refresh token has expired"
    )


async def test_reusing_a_spent_refresh_token_revokes_the_whole_family(gw: Gw) -> None:
    first = await gw.tokens(gw.keys.alice)
    second = (await gw.refresh(first["refresh_token"])).json()
    third = (await gw.refresh(second["refresh_token"])).json()
    other_family = await gw.tokens(gw.keys.alice)

    reused = await gw.refresh(first["refresh_token"])

    assert "refresh token reuse detected" in unauthorized(reused)
    assert reused.json()["error"]["details"]["reason"] == "reuse"
    # The thief's newest tokens die with the family...
    assert "family was revoked" in unauthorized(
        await gw.client.get("/v1/sessions", headers=auth(third["access_token"]))
    )
    assert "revoked" in unauthorized(await gw.refresh(third["refresh_token"]))
    # ...and only that family: another sign-in of the same key still works.
    headers = auth(other_family["access_token"])
    assert (await gw.client.get("/v1/sessions", headers=headers)).is_success
    assert (await gw.refresh(other_family["refresh_token"])).status_code == 200


async def test_the_family_state_is_durable_across_a_restart(gw: Gw, tmp_path: Path) -> None:
    first = await gw.tokens(gw.keys.alice)
    await gw.refresh(first["refresh_token"])

    # Another gateway on the same home and store: it knows the token is spent.
    async with build_app(gw.settings, clock=gw.clock) as app:
        transport = httpx.ASGITransport(app=create_gateway(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://other") as other:
            reused = await other.post(
                "/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
            )
    assert "reuse" in unauthorized(reused)


async def test_revoke_stops_the_family(gw: Gw) -> None:
    pair = await gw.tokens(gw.keys.alice)

    revoked = await gw.client.post("/v1/auth/revoke", json={"refresh_token": pair["refresh_token"]})

    assert revoked.status_code == 200
    assert revoked.json()["revoked"] is True
    assert unauthorized(await gw.client.get("/v1/sessions", headers=auth(pair["access_token"])))
    assert unauthorized(await gw.refresh(pair["refresh_token"]))
    bad = await gw.client.post("/v1/auth/revoke", json={"refresh_token": "pl_rt_nope"})
    assert unauthorized(bad) == "the refresh token is not valid"


async def test_tokens_of_a_revoked_api_key_stop_working(gw: Gw) -> None:
    pair = await gw.tokens(gw.keys.bob)
    key_id = gw.keys.bob.split("_")[1] + "_" + gw.keys.bob.split("_")[2]

    gone = await gw.client.delete(f"/v1/keys/{key_id}", headers=auth(gw.keys.acme_admin))
    assert gone.status_code == 200, gone.text

    assert "API key this token came from is revoked" in unauthorized(
        await gw.client.get("/v1/sessions", headers=auth(pair["access_token"]))
    )
    assert "revoked" in unauthorized(await gw.refresh(pair["refresh_token"]))


def _b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _header_of(token: str) -> dict[str, Any]:
    return dict(json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "==")))


def _claims_of(token: str) -> dict[str, Any]:
    return dict(json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==")))


async def test_bad_tokens_are_each_a_401_naming_why(gw: Gw) -> None:
    good = (await gw.tokens(gw.keys.alice))["access_token"]
    header, claims = _header_of(good), _claims_of(good)
    ring = jwt.SigningKeys(gw.settings.security.tokens.signing_keys_file)
    key = ring.current
    stranger = jwt.SigningKey("k-unknown", key.secret, key.created_at)
    forged = jwt.SigningKey(key.kid, b"x" * 32, key.created_at)
    cases = {
        f"{_b64(header | {'alg': 'none'})}.{_b64(claims)}.": "algorithm 'none' is not accepted",
        f"{_b64(header | {'alg': 'HS512'})}.{_b64(claims)}.{good.split('.')[2]}": "'HS512'",
        jwt.encode(claims, forged): "signature does not check out",
        jwt.encode(claims, stranger): "signing key 'k-unknown' is unknown",
        jwt.encode(claims | {"aud": "elsewhere"}, key): "audience is not 'promptline'",
        jwt.encode(claims | {"iss": "elsewhere"}, key): "issuer is not 'promptline'",
        jwt.encode(claims | {"nbf": claims["nbf"] + 60}, key): "not valid yet",
        jwt.encode(claims | {"exp": claims["iat"] - 1}, key): "has expired",
        jwt.encode(claims | {"role": "admin"}, key): "role does not match",
        jwt.encode(claims | {"typ": "refresh"}, key): "not an access token",
        jwt.encode(claims | {"fam": "fam_nope"}, key): "family was revoked",
        "abc.def.ghi": "not base64url JSON",
    }
    for token, reason in cases.items():
        message = unauthorized(await gw.client.get("/v1/sessions", headers=auth(token)))
        assert reason in message, (token, message)


async def test_a_rotated_signing_key_verifies_until_its_tokens_expire(gw: Gw) -> None:
    old = (await gw.tokens(gw.keys.alice))["access_token"]
    home = gw.settings.security.tokens.signing_keys_file.parent

    result = CliRunner().invoke(
        cli, ["auth", "rotate-key"], env={"PROMPTLINE_HOME": str(home)}, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    gw.clock.advance(2)  # the gateway looks at the keys file again after a second
    ring = jwt.SigningKeys(gw.settings.security.tokens.signing_keys_file)
    assert ring.current.kid != _header_of(old)["kid"]

    new = (await gw.tokens(gw.keys.alice))["access_token"]
    assert _header_of(new)["kid"] == ring.current.kid
    for token in (old, new):
        assert (await gw.client.get("/v1/sessions", headers=auth(token))).is_success


async def test_access_tokens_open_the_websocket_control_plane(tmp_path: Path) -> None:
    async with served(ws_settings(tmp_path / "home")) as gw:
        base = f"http://127.0.0.1:{gw.info.port}"
        async with httpx.AsyncClient(base_url=base) as client:
            pair = (await client.post("/v1/auth/token", headers=auth(gw.keys.alice))).json()
            viewer_key = (
                await client.post(
                    "/v1/keys",
                    json={"user_id": "vic", "role": "viewer"},
                    headers=auth(gw.keys.acme_admin),
                )
            ).json()["key"]
            viewer = (await client.post("/v1/auth/token", headers=auth(viewer_key))).json()
        async with rpc(gw.url, pair["access_token"]) as alice:
            session = await alice.call("session.create", {})
            assert session["user_id"] == "alice"
        async with rpc(gw.url, viewer["access_token"]) as vic:
            error = await vic.error("session.create", {})
            assert error["data"]["code"] == "permission_denied"
            assert "does not allow sessions:write" in error["message"]
            # The connection stays open for what the role may do.
            assert (await vic.call("tools.list"))["items"]
            assert "does not allow sessions:write" in error["message"]


async def test_access_tokens_reach_mcp_and_a_viewer_may_not_call_tools(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "home")
    async with build_app(settings) as app:
        keys = await make_keys(app)
        _, viewer_key = await KeyStore(app.state).create("vic", tenant_id="acme", role="viewer")
    async with live_gateway(settings) as info:
        base = f"http://127.0.0.1:{info.port}"
        async with httpx.AsyncClient(base_url=base) as client:
            alice = (await client.post("/v1/auth/token", headers=auth(keys.alice))).json()
            vic = (await client.post("/v1/auth/token", headers=auth(viewer_key))).json()
        async with mcp_client(f"{base}/mcp", alice["access_token"]) as mcp:
            result = await mcp.call_tool("assistant", {"task": "hello with a token"})
            assert result.is_error is False
        async with mcp_client(f"{base}/mcp", vic["access_token"]) as mcp:
            assert (await mcp.list_tools()).tools
            with pytest.raises(MCPError, match="does not allow runs:write"):
                await mcp.call_tool("assistant", {"task": "not allowed"})


@contextlib.asynccontextmanager
async def mcp_client(url: str, token: str) -> AsyncIterator[Client]:
    """The official MCP client on ``url`` with ``token``."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0)) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, read_timeout_seconds=30.0) as client:
            yield client


async def test_the_first_start_makes_the_signing_keys_private_in_the_home(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "home")
    keys_file = settings.security.tokens.signing_keys_file
    assert keys_file == tmp_path / "home" / "signing_keys.json"
    assert not keys_file.exists()

    async with live_gateway(settings):
        assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
        assert json.loads(keys_file.read_text())["keys"][0]["kid"]


async def test_keys_made_and_revoked_over_the_api_are_on_the_audit_trail(gw: Gw) -> None:
    made = await gw.client.post(
        "/v1/keys", json={"user_id": "dana", "role": "viewer"}, headers=auth(gw.keys.acme_admin)
    )
    assert made.status_code == 201, made.text
    key_id = made.json()["key_id"]
    assert (
        await gw.client.delete(f"/v1/keys/{key_id}", headers=auth(gw.keys.acme_admin))
    ).is_success
    missing = await gw.client.delete("/v1/keys/key_nope", headers=auth(gw.keys.acme_admin))
    assert missing.status_code == 404

    trail = [
        e.data
        for e in await gw.app.events.read_all()
        if e.type == "audit" and e.data.action.startswith("key.")
    ]
    assert [(a.action, a.target, a.outcome) for a in trail][-3:] == [
        ("key.created", key_id, "success"),
        ("key.revoked", key_id, "success"),
        ("key.revoked", "key_nope", "failure"),
    ]
    assert {a.source for a in trail[-3:]} == {"127.0.0.1"}
    assert all(a.key_id is not None and a.actor for a in trail[-3:])
