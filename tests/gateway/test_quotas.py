"""Quotas per tenant and per user: requests per minute at the gateway (REST and WebSocket),
429 with Retry-After and the quota in the details, one ``quota_exceeded`` event a minute per
quota and subject under a flood, other users and tenants unaffected, and the audit report
listing the hits."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from gateway_support import Keys, auth, make_keys, settings_for
from rest_support import CONFIG, WRITER, new_session, send, waiting_run
from ws_support import rpc, served, ws_settings

from promptline.app import App, build_app
from promptline.cli.main import app as cli
from promptline.config import load_settings
from promptline.config.settings import QuotasSettings, Settings
from promptline.core.clock import ManualClock
from promptline.core.events import LlmResult, LlmResultEvent, QuotaExceededEvent
from promptline.core.messages import Usage
from promptline.events.protocols import EventFilter
from promptline.gateway.app import create_gateway
from promptline.runtime.budget import start_of_day
from promptline.security.auth import KeyStore


@dataclass
class Gw:
    app: App
    client: httpx.AsyncClient
    clock: ManualClock
    keys: Keys

    async def get(self, key: str) -> httpx.Response:
        return await self.client.get("/v1/sessions", headers=auth(key))

    async def hits(self) -> list[QuotaExceededEvent]:
        events = await self.app.events.read_all(EventFilter(types=frozenset({"quota_exceeded"})))
        return [e for e in events if isinstance(e, QuotaExceededEvent)]


def quotas(body: str) -> str:
    return "quotas:\n" + "".join(f"  {line}\n" for line in body.strip().splitlines())


async def open_gateway(settings: Settings) -> AsyncIterator[Gw]:
    clock = ManualClock(datetime.now(UTC))
    async with build_app(settings, clock=clock) as app:
        await app.start_runtime()
        transport = httpx.ASGITransport(app=create_gateway(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield Gw(app, client, clock, await make_keys(app))


@pytest.fixture
async def gw(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Gw]:
    """A gateway whose ``scripted/writer`` model waits for an approval, with the quotas of
    the test's `with_quotas`."""
    home = tmp_path / "home"
    scripts = home / "scripts"
    scripts.mkdir(parents=True)
    (scripts / "writer.yaml").write_text(WRITER, encoding="utf-8")
    config = home / "config.yaml"
    config.write_text(CONFIG.format(scripts=scripts) + quotas(request.param), encoding="utf-8")
    settings = load_settings(config, environ={"PROMPTLINE_HOME": str(home)})
    async for found in open_gateway(settings):
        yield found


async def spend(gw: Gw, tenant: str, user: str, tokens: int, cost: float) -> None:
    """A model call of ``user`` of ``tenant`` in the log, now."""
    await gw.app.bus.publish(
        LlmResultEvent(
            stream=f"spend_{user}",
            ts=gw.clock.now(),
            tenant_id=tenant,
            user_id=user,
            data=LlmResult(
                model="scripted/demo",
                usage=Usage(input_tokens=tokens - tokens // 2, output_tokens=tokens // 2),
                cost_usd=cost,
            ),
        )
    )


async def message(gw: Gw, key: str) -> httpx.Response:
    session = await new_session(gw.client, key)
    return await gw.client.post(
        f"/v1/sessions/{session['id']}/messages", json={"content": "hi"}, headers=auth(key)
    )


def with_quotas(body: str) -> Any:
    return pytest.mark.parametrize("gw", [body], indirect=True)


def test_quotas_are_unlimited_unless_set_and_overrides_take_the_defaults_they_leave_out() -> None:
    assert QuotasSettings().limits("user", "alice").requests_per_minute is None
    assert QuotasSettings().limits("tenant", "acme").requests_per_minute is None
    settings = QuotasSettings.model_validate(
        {
            "user": {"requests_per_minute": 10},
            "tenant": {"requests_per_minute": 100},
            "users": {"alice": {"requests_per_minute": 2}, "bob": None},
            "tenants": {"acme": {}},
        }
    )

    assert settings.limits("user", "alice").requests_per_minute == 2
    assert settings.limits("user", "bob").requests_per_minute == 10
    assert settings.limits("user", "carol").requests_per_minute == 10
    assert settings.limits("tenant", "acme").requests_per_minute == 100


@with_quotas("user: {requests_per_minute: 3}")
async def test_a_user_over_its_requests_per_minute_gets_429_naming_the_quota(gw: Gw) -> None:
    for _ in range(3):
        assert (await gw.get(gw.keys.alice)).status_code == 200

    refused = await gw.get(gw.keys.alice)

    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "20"  # one request of 3 a minute frees in 20 s
    error = refused.json()["error"]
    assert error["code"] == "quota_exceeded"
    details = error["details"]
    assert (details["quota"], details["scope"]) == ("requests_per_minute", "user:alice")
    assert (details["limit"], details["used"]) == (3, 3)
    # Another user of the same tenant has a quota of its own.
    assert (await gw.get(gw.keys.bob)).status_code == 200
    gw.clock.advance(20)
    assert (await gw.get(gw.keys.alice)).status_code == 200


@with_quotas("tenant: {requests_per_minute: 4}")
async def test_a_tenant_over_its_requests_per_minute_refuses_all_its_users(gw: Gw) -> None:
    for key in (gw.keys.alice, gw.keys.alice, gw.keys.bob, gw.keys.bob):
        assert (await gw.get(key)).status_code == 200

    refused = await gw.get(gw.keys.alice)

    assert refused.status_code == 429
    details = refused.json()["error"]["details"]
    assert (details["quota"], details["scope"]) == ("requests_per_minute", "tenant:acme")
    assert (await gw.get(gw.keys.carol)).status_code == 200  # globex is not acme


@with_quotas(
    """
user: {requests_per_minute: 100}
users:
  alice: {requests_per_minute: 1}
"""
)
async def test_an_override_by_user_id_replaces_the_default(gw: Gw) -> None:
    assert (await gw.get(gw.keys.alice)).status_code == 200
    refused = await gw.get(gw.keys.alice)

    assert refused.status_code == 429
    assert refused.json()["error"]["details"]["limit"] == 1
    assert all([(await gw.get(gw.keys.bob)).status_code == 200 for _ in range(5)])
    # The override names a user id: an alice of another tenant has it too (her own count).
    _, other_alice = await KeyStore(gw.app.state, clock=gw.app.clock).create(
        "alice", tenant_id="globex"
    )
    assert (await gw.get(other_alice)).status_code == 200
    assert (await gw.get(other_alice)).status_code == 429


@with_quotas("user: {requests_per_minute: 3}")
async def test_a_flood_writes_one_event_a_minute_with_the_count_of_refusals(gw: Gw) -> None:
    for _ in range(3):
        await gw.get(gw.keys.alice)
    for _ in range(20):
        assert (await gw.get(gw.keys.alice)).status_code == 429
    [first] = await gw.hits()

    gw.clock.advance(61)
    for _ in range(3):
        assert (await gw.get(gw.keys.alice)).status_code == 200
    assert (await gw.get(gw.keys.alice)).status_code == 429

    first_again, second = await gw.hits()
    assert first_again.id == first.id
    assert (first.tenant_id, first.user_id) == ("acme", "alice")
    assert first.data.model_dump() == {
        "quota": "requests_per_minute",
        "scope": "user:alice",
        "limit": 3,
        "used": 3,
        "retry_after": pytest.approx(20),
        "count": 1,
    }
    assert second.data.count == 20  # the 19 refusals not recorded, and this one


@with_quotas("user: {tokens_per_day: 100}")
async def test_a_user_past_its_tokens_per_day_is_refused_until_midnight_utc(gw: Gw) -> None:
    await spend(gw, "acme", "alice", 60, 0.0)
    first = await new_session(gw.client, gw.keys.alice)
    await send(gw.client, gw.keys.alice, first["id"], "hi")  # 60 of 100: taken
    await spend(gw, "acme", "alice", 50, 0.0)  # counted by the next check
    received = EventFilter(types=frozenset({"message_received", "run_queued"}))
    before = len(await gw.app.events.read_all(received))

    refused = await message(gw, gw.keys.alice)

    assert refused.status_code == 429
    assert len(await gw.app.events.read_all(received)) == before  # nothing of it is recorded
    now = gw.clock.now()
    midnight = start_of_day(now).timestamp() + 86_400
    assert refused.headers["Retry-After"] == str(round(midnight - now.timestamp()))
    details = refused.json()["error"]["details"]
    assert (details["quota"], details["scope"], details["limit"]) == (
        "tokens_per_day",
        "user:alice",
        100,
    )
    assert details["used"] >= 110
    assert (await message(gw, gw.keys.bob)).status_code == 202
    gw.clock.set(datetime.fromtimestamp(midnight + 1, UTC))  # a new day
    assert (await message(gw, gw.keys.alice)).status_code == 202
    [hit] = await gw.hits()
    assert (hit.data.quota, hit.data.scope) == ("tokens_per_day", "user:alice")


@with_quotas("tenant: {cost_usd_per_day: 1.0}")
async def test_a_tenant_past_its_cost_per_day_refuses_all_its_users(gw: Gw) -> None:
    await spend(gw, "acme", "alice", 10, 0.6)
    await spend(gw, "acme", "bob", 10, 0.5)
    await spend(gw, "globex", "carol", 10, 0.9)

    refused = await message(gw, gw.keys.bob)

    assert refused.status_code == 429
    details = refused.json()["error"]["details"]
    assert (details["quota"], details["scope"]) == ("cost_usd_per_day", "tenant:acme")
    assert (details["limit"], details["used"]) == (1.0, 1.1)
    assert (await message(gw, gw.keys.alice)).status_code == 429
    assert (await message(gw, gw.keys.carol)).status_code == 202  # 0.9 of globex's 1.0


@with_quotas(
    """
user: {concurrent_runs: 2}
tenant: {concurrent_runs: 3}
"""
)
async def test_concurrent_runs_are_counted_per_user_and_per_tenant(gw: Gw) -> None:
    waiting = await waiting_run(gw.client, gw.keys.alice)  # in flight until someone answers
    queued = await gw.client.post(
        f"/v1/sessions/{waiting.session_id}/messages",
        json={"content": "and then?", "queue_mode": "enqueue"},
        headers=auth(gw.keys.alice),
    )
    assert queued.status_code == 202, queued.text  # waits its turn: counted too

    refused = await message(gw, gw.keys.alice)

    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "5"
    details = refused.json()["error"]["details"]
    assert (details["quota"], details["scope"]) == ("concurrent_runs", "user:alice")
    assert (details["limit"], details["used"]) == (2, 2)
    await waiting_run(gw.client, gw.keys.bob)  # acme's third
    await waiting_run(gw.client, gw.keys.carol)  # globex is not acme
    refused = await message(gw, gw.keys.acme_admin)
    assert refused.status_code == 429
    details = refused.json()["error"]["details"]
    assert (details["scope"], details["limit"], details["used"]) == ("tenant:acme", 3, 3)


async def create(gw: Gw, key: str) -> httpx.Response:
    return await gw.client.post("/v1/sessions", json={}, headers=auth(key))


@with_quotas(
    """
user: {max_sessions: 2}
tenant: {max_sessions: 3}
"""
)
async def test_sessions_are_counted_per_user_and_per_tenant_until_deleted_or_expired(
    gw: Gw,
) -> None:
    first = (await create(gw, gw.keys.alice)).json()
    assert (await create(gw, gw.keys.alice)).status_code == 201

    refused = await create(gw, gw.keys.alice)

    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "60"
    details = refused.json()["error"]["details"]
    assert (details["quota"], details["scope"]) == ("max_sessions", "user:alice")
    assert (details["limit"], details["used"]) == (2, 2)
    assert (await create(gw, gw.keys.bob)).status_code == 201  # acme's third
    assert (await create(gw, gw.keys.carol)).status_code == 201  # globex is not acme
    refused = await create(gw, gw.keys.acme_admin)
    assert refused.status_code == 429
    details = refused.json()["error"]["details"]
    assert (details["scope"], details["limit"], details["used"]) == ("tenant:acme", 3, 3)
    # A deleted session makes room.
    gone = await gw.client.delete(f"/v1/sessions/{first['id']}", headers=auth(gw.keys.alice))
    assert gone.status_code == 204, gone.text
    assert (await create(gw, gw.keys.alice)).status_code == 201
    # So does an expired one: past their expiry time every session makes room.
    gw.clock.advance(gw.app.settings.sessions.ttl_secs + 1)
    assert (await create(gw, gw.keys.acme_admin)).status_code == 201
    kinds = {(hit.data.quota, hit.data.scope) for hit in await gw.hits()}
    assert kinds == {("max_sessions", "user:alice"), ("max_sessions", "tenant:acme")}


async def test_the_websocket_answers_a_json_rpc_error_with_the_same_details(
    tmp_path: Path,
) -> None:
    # The handshake is a request too: it and two calls use the three of the minute.
    settings = ws_settings(tmp_path, "quotas:\n  user: {requests_per_minute: 3}\n")
    async with served(settings) as gw, rpc(gw.url, gw.keys.alice) as client:
        await client.call("ping")
        await client.call("ping")

        error = await client.error("ping")

        assert error["code"] == -32029
        assert error["data"]["code"] == "quota_exceeded"
        details = error["data"]["details"]
        assert (details["quota"], details["scope"]) == ("requests_per_minute", "user:alice")
        assert (details["limit"], details["used"]) == (3, 3)
        assert details["retry_after"] > 0
        async with rpc(gw.url, gw.keys.bob) as other:
            assert await other.call("ping") == "pong"


async def test_a_message_sent_over_the_websocket_past_a_quota_gets_its_json_rpc_error(
    tmp_path: Path,
) -> None:
    settings = ws_settings(tmp_path, "quotas:\n  user: {tokens_per_day: 100}\n")
    async with served(settings) as gw, rpc(gw.url, gw.keys.alice) as client:
        session = await client.call("session.create")
        await gw.app.bus.publish(
            LlmResultEvent(
                stream="spend",
                tenant_id="acme",
                user_id="alice",
                data=LlmResult(model="scripted/demo", usage=Usage(input_tokens=100)),
            )
        )

        error = await client.error("session.send", {"session_id": session["id"], "content": "hi"})

        assert error["data"]["code"] == "quota_exceeded"
        details = error["data"]["details"]
        assert (details["quota"], details["scope"]) == ("tokens_per_day", "user:alice")
        assert (details["limit"], details["used"]) == (100, 100)


async def _flood(settings: Settings) -> None:
    async for gw in open_gateway(settings):
        for _ in range(5):
            await gw.get(gw.keys.alice)


def test_the_audit_report_lists_the_quota_hits() -> None:
    home = Path(os.environ["PROMPTLINE_HOME"])
    settings = settings_for(home, quotas("users: {alice: {requests_per_minute: 2}}"))
    asyncio.run(_flood(settings))

    made = CliRunner().invoke(cli, ["audit", "report", "--format", "json"])

    assert made.exit_code == 0, made.output
    [hit] = json.loads(made.output)["quota"]
    assert hit["tenant"] == "acme"
    assert hit["user"] == "alice"
    assert hit["code"] == "quota_exceeded"
    assert (hit["quota"], hit["scope"], hit["limit"], hit["used"]) == (
        "requests_per_minute",
        "user:alice",
        2,
        2,
    )
    assert hit["count"] == 1
    markdown = CliRunner().invoke(cli, ["audit", "report"]).output
    assert "## Quota hits (1)" in markdown
    assert "| quota_exceeded | requests_per_minute | user:alice |" in markdown


async def put_state(gw: Gw, key: str, session_id: str, value: str) -> httpx.Response:
    return await gw.client.put(
        "/v1/state/session/notes",
        params={"session_id": session_id},
        json={"value": value},
        headers=auth(key),
    )


@with_quotas("user: {storage_mb: 1}")
async def test_a_user_past_its_storage_is_refused_until_it_deletes_a_session(gw: Gw) -> None:
    first = await new_session(gw.client, gw.keys.alice)
    second = await new_session(gw.client, gw.keys.alice)
    half = "x" * (600 * 1024)  # each write is a state_change event of the session
    assert (await put_state(gw, gw.keys.alice, first["id"], half)).status_code == 200
    assert (await put_state(gw, gw.keys.alice, first["id"], half)).status_code == 200

    refused = await put_state(gw, gw.keys.alice, first["id"], "one more")

    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "60"
    error = refused.json()["error"]
    assert error["code"] == "quota_exceeded"
    details = error["details"]
    assert (details["quota"], details["scope"], details["limit"]) == (
        "storage_mb",
        "user:alice",
        1,
    )
    assert 1.17 < details["used"] < 1.2  # two values of 0.59 MiB, and their envelopes
    assert "delete sessions" in details["hint"]
    # A new message and a new session are refused too; another user has room of its own.
    sent = await gw.client.post(
        f"/v1/sessions/{second['id']}/messages", json={"content": "hi"}, headers=auth(gw.keys.alice)
    )
    assert sent.status_code == 429
    assert sent.json()["error"]["details"]["quota"] == "storage_mb"
    assert (await create(gw, gw.keys.alice)).status_code == 429
    assert (await create(gw, gw.keys.bob)).status_code == 201
    [hit] = await gw.hits()
    assert (hit.data.quota, hit.data.scope, hit.data.limit) == ("storage_mb", "user:alice", 1)

    gone = await gw.client.delete(f"/v1/sessions/{first['id']}", headers=auth(gw.keys.alice))
    assert gone.status_code == 204, gone.text

    assert (await message(gw, gw.keys.alice)).status_code == 202  # the room is back
    assert await gw.app.quotas.storage_used_mb("acme", "alice") < 0.01


@with_quotas("tenant: {storage_mb: 1}")
async def test_a_tenant_past_its_storage_refuses_all_its_users(gw: Gw) -> None:
    alices = await new_session(gw.client, gw.keys.alice)
    bobs = await new_session(gw.client, gw.keys.bob)
    half = "x" * (600 * 1024)
    assert (await put_state(gw, gw.keys.alice, alices["id"], half)).status_code == 200
    assert (await put_state(gw, gw.keys.bob, bobs["id"], half)).status_code == 200

    refused = await put_state(gw, gw.keys.alice, alices["id"], "one more")

    assert refused.status_code == 429
    details = refused.json()["error"]["details"]
    assert (details["quota"], details["scope"]) == ("storage_mb", "tenant:acme")
    assert (await create(gw, gw.keys.bob)).status_code == 429
    assert (await create(gw, gw.keys.carol)).status_code == 201  # globex is not acme


@with_quotas(
    """
user: {tokens_per_day: 1000, storage_mb: 5, max_sessions: 10}
tenant: {cost_usd_per_day: 2.0}
"""
)
async def test_the_caller_reads_its_quotas_and_what_its_user_and_tenant_used(gw: Gw) -> None:
    await spend(gw, "acme", "alice", 100, 0.25)
    await spend(gw, "acme", "bob", 50, 0.5)
    session = await new_session(gw.client, gw.keys.alice)
    assert (await put_state(gw, gw.keys.alice, session["id"], "x" * 100_000)).status_code == 200

    answer = await gw.client.get("/v1/quotas", headers=auth(gw.keys.alice))

    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert found["counting"] == "per_process"
    user, tenant = found["user"], found["tenant"]
    assert user["scope"] == "user:alice"
    assert user["limits"] == {
        "requests_per_minute": None,
        "tokens_per_day": 1000,
        "cost_usd_per_day": None,
        "concurrent_runs": None,
        "max_sessions": 10,
        "storage_mb": 5,
    }
    assert user["used"]["tokens_per_day"] == 100
    assert user["used"]["cost_usd_per_day"] == 0.25
    assert user["used"]["max_sessions"] == 1
    assert 0.095 < user["used"]["storage_mb"] < 0.1
    assert tenant["scope"] == "tenant:acme"
    assert tenant["limits"]["cost_usd_per_day"] == 2.0
    assert (tenant["used"]["tokens_per_day"], tenant["used"]["cost_usd_per_day"]) == (150, 0.75)
    carol = (await gw.client.get("/v1/quotas", headers=auth(gw.keys.carol))).json()
    assert carol["tenant"]["used"]["tokens_per_day"] == 0  # globex is not acme


@with_quotas("user: {max_sessions: 1}")
async def test_an_import_is_a_new_session_of_its_owner_for_the_quotas(gw: Gw) -> None:
    first = await new_session(gw.client, gw.keys.alice)
    document = (
        await gw.client.get(f"/v1/sessions/{first['id']}/export", headers=auth(gw.keys.alice))
    ).json()

    refused = await gw.client.post(
        "/v1/sessions/import",
        json={"document": document, "as_new_id": True},
        headers=auth(gw.keys.alice),
    )

    assert refused.status_code == 429
    details = refused.json()["error"]["details"]
    assert (details["quota"], details["scope"]) == ("max_sessions", "user:alice")


@asynccontextmanager
async def two_gateways(tmp_path: Path, postgres_url: str, body: str) -> AsyncIterator[list[Gw]]:
    """Two gateways (two apps) on one PostgreSQL database, with the quotas of ``body``, their
    clocks at one time."""
    home = tmp_path / "home"
    scripts = home / "scripts"
    scripts.mkdir(parents=True)
    (scripts / "writer.yaml").write_text(WRITER, encoding="utf-8")
    config = home / "config.yaml"
    shared = f"state:\n  backend: postgres\n  database_url: {postgres_url}\n"
    config.write_text(CONFIG.format(scripts=scripts) + shared + quotas(body), encoding="utf-8")
    settings = load_settings(config, environ={"PROMPTLINE_HOME": str(home)})
    async with AsyncExitStack() as stack:
        gateways = []
        for _ in range(2):
            opened = open_gateway(settings)
            gateways.append(await anext(opened))
            stack.push_async_callback(opened.aclose)
        gateways[1].clock.set(gateways[0].clock.now())
        yield gateways


async def test_two_gateways_on_one_postgresql_share_the_requests_per_minute(
    tmp_path: Path, postgres_url: str
) -> None:
    async with two_gateways(tmp_path, postgres_url, "user: {requests_per_minute: 3}") as gws:
        one, two = gws
        assert one.app.quotas.shared
        alice = one.keys.alice  # the keys are in the shared state: both gateways take them
        assert (await one.get(alice)).status_code == 200
        assert (await two.get(alice)).status_code == 200
        assert (await one.get(alice)).status_code == 200

        refused = await two.get(alice)

        assert refused.status_code == 429
        details = refused.json()["error"]["details"]
        assert (details["quota"], details["scope"], details["limit"]) == (
            "requests_per_minute",
            "user:alice",
            3,
        )
        assert 0 < int(refused.headers["Retry-After"]) <= 60  # the end of the minute's window


async def test_two_gateways_on_one_postgresql_share_the_concurrent_runs(
    tmp_path: Path, postgres_url: str
) -> None:
    async with two_gateways(tmp_path, postgres_url, "user: {concurrent_runs: 1}") as gws:
        one, two = gws
        await waiting_run(one.client, one.keys.alice)  # in flight on the first gateway

        refused = await message(two, one.keys.alice)

        assert refused.status_code == 429
        details = refused.json()["error"]["details"]
        assert (details["quota"], details["scope"], details["used"]) == (
            "concurrent_runs",
            "user:alice",
            1,
        )
        assert (await message(two, one.keys.bob)).status_code == 202
