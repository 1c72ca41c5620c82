"""The gateway's ground rules: health, authentication, the one error shape, body limits,
rate limits, and `serve` on a real port with a graceful stop."""

from __future__ import annotations

import httpx
import pytest
from gateway_support import Keys, auth, live_gateway, settings_for

from promptline.app import App
from promptline.config.settings import Settings
from promptline.gateway.ratelimit import RateLimiter, bucket_of
from promptline.security.auth import Caller

Served = tuple[App, httpx.AsyncClient]


async def test_healthz_needs_no_key_and_readyz_checks_the_services(served: Served) -> None:
    _, client = served

    health = await client.get("/healthz")
    ready = await client.get("/readyz")

    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert ready.status_code == 200
    assert set(ready.json()["checks"]) == {"database", "bus", "providers"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nonsense"},
        {"Authorization": "Bearer pl_key_01M8HYGCB8NVCPM8V1Y27ABSW7_not-the-right-secret-at-all"},
        {"X-API-Key": "pl_key_"},
    ],
)
async def test_a_missing_or_wrong_key_is_401_in_the_error_shape(
    served: Served, keys: Keys, headers: dict[str, str]
) -> None:
    _, client = served

    response = await client.get("/v1/agents", headers=headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    error = response.json()["error"]
    assert error["code"] == "unauthorized"
    assert set(error) == {"code", "message", "details"}


async def test_a_key_works_in_either_header_and_stops_working_when_revoked_elsewhere(
    tmp_path: object,
) -> None:
    from pathlib import Path

    from gateway_support import gateway_app, make_keys

    from promptline.security.auth import KeyStore

    uncached = settings_for(Path(str(tmp_path)) / "home", "gateway:\n  key_cache_secs: 0\n")
    async with gateway_app(uncached) as (app, client):
        keys = await make_keys(app)
        assert (await client.get("/v1/agents", headers=auth(keys.alice))).status_code == 200
        assert (
            await client.get("/v1/agents", headers={"X-API-Key": keys.alice})
        ).status_code == 200
        key_id = "_".join(keys.alice.split("_")[1:3])
        await KeyStore(app.state).revoke(key_id)  # as the CLI would, from another store

        assert (await client.get("/v1/agents", headers=auth(keys.alice))).status_code == 401


async def test_a_checked_key_is_remembered_and_forgotten_when_revoked_here(
    served: Served, keys: Keys
) -> None:
    app, _ = served
    from promptline.security.auth import KeyStore

    store = KeyStore(app.state, cache_secs=60)
    caller = await store.authenticate(keys.bob)
    key_id = caller.key_id or ""
    await app.state.delete("global", f"auth/keys/{key_id}")  # gone from the store...
    assert (await store.authenticate(keys.bob)).user_id == "bob"  # ...still remembered

    await app.state.set(
        "global",
        f"auth/keys/{key_id}",
        {
            "key_id": key_id,
            "user_id": "bob",
            "tenant_id": "acme",
            "role": "user",
            "name": "",
            "created_at": "2026-01-01T00:00:00+00:00",
            "hash": "x",
        },
    )
    await store.revoke(key_id)
    from promptline.core.errors import AuthenticationError

    with pytest.raises(AuthenticationError):
        await store.authenticate(keys.bob)


async def test_the_stored_key_is_a_hash_and_the_log_does_not_show_it(
    served: Served, keys: Keys
) -> None:
    app, _ = served
    secret = keys.alice.split("_", 3)[3]  # pl_key_<ULID>_<secret>; the secret may hold "_"

    entries = await app.state.list("global", prefix="auth/keys/")
    assert entries
    assert all(secret not in str(entry.value) for entry in entries)
    changes = await app.events.read_all()
    assert all(
        secret not in str(e) and "hash" not in str(getattr(e.data, "value", "")) for e in changes
    )


async def test_unknown_endpoints_and_malformed_json_answer_in_the_error_shape(
    served: Served, keys: Keys
) -> None:
    _, client = served

    missing = await client.get("/v1/nothing-here", headers=auth(keys.alice))

    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


async def test_a_body_over_the_limit_is_413(settings: Settings) -> None:
    from gateway_support import gateway_app, make_keys

    small = settings.model_copy(
        update={"gateway": settings.gateway.model_copy(update={"max_body_bytes": 100})}
    )
    async with gateway_app(small) as (app, client):
        key = (await make_keys(app)).alice
        response = await client.post(
            "/v1/agents", content=b"x" * 1000, headers={**auth(key), "content-type": "text/plain"}
        )

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_the_rate_limiter_refuses_past_its_rate_and_refills_with_time() -> None:
    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0])
    for _ in range(60):
        limiter.take("k")

    from promptline.core.errors import RateLimitedError

    with pytest.raises(RateLimitedError) as info:
        limiter.take("k")
    assert info.value.retry_after == pytest.approx(1.0)
    limiter.take("other")  # another key has its own bucket
    now[0] += 1.0
    limiter.take("k")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # tenant "t1:x" with user "y", and tenant "t1" with user "x:y": once one bucket.
        (Caller("y", "t1:x", "user"), Caller("x:y", "t1", "user")),
        # the same user id in two tenants
        (Caller("alice", "acme", "user"), Caller("alice", "globex", "user")),
        # a key, and a caller without one whose user id is that key's id
        (Caller("u", "acme", "user", key_id="key_1"), Caller("key_1", "acme", "user")),
    ],
)
def test_callers_whose_ids_join_alike_each_have_their_own_rate_limit_bucket(
    first: Caller, second: Caller
) -> None:
    from promptline.core.errors import RateLimitedError

    limiter = RateLimiter(1, clock=lambda: 0.0)
    limiter.take_for(first)

    limiter.take_for(second)  # its own bucket, still full
    with pytest.raises(RateLimitedError):
        limiter.take_for(first)
    assert bucket_of(first) != bucket_of(second)


async def test_a_flood_of_requests_gets_429_with_retry_after(tmp_path: object) -> None:
    from pathlib import Path

    from gateway_support import gateway_app, make_keys

    tight = settings_for(Path(str(tmp_path)) / "home", "gateway:\n  rate_limit_per_minute: 5\n")
    async with gateway_app(tight) as (app, client):
        key = (await make_keys(app)).alice
        codes = [(await client.get("/v1/agents", headers=auth(key))).status_code for _ in range(7)]
        limited = await client.get("/v1/agents", headers=auth(key))

    assert codes[:5] == [200] * 5
    assert 429 in codes[5:]
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"]["code"] == "rate_limited"


async def test_serve_listens_answers_and_stops(settings: Settings) -> None:
    async with live_gateway(settings) as info:
        assert info.admin_key is not None
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{info.port}") as client:
            agents = await client.get("/v1/agents", headers=auth(info.admin_key))
            assert agents.status_code == 200
            assert [a["name"] for a in agents.json()["items"]] == ["assistant"]


async def test_serving_a_public_address_without_auth_is_refused(settings: Settings) -> None:
    from promptline.core.errors import ConfigError
    from promptline.gateway.server import serve

    with pytest.raises(ConfigError, match="without authentication"):
        await serve(settings, host="0.0.0.0", port=0, auth=False)
