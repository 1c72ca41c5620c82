"""REST state: global (the tenant's), session (a visible session's) and local (the caller's
own) values, with versions and compare-and-set."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from gateway_support import Keys, auth
from rest_support import new_session

from promptline.app import App
from promptline.security.auth import KeyStore

Served = tuple[App, httpx.AsyncClient]


async def test_write_read_and_delete_a_global_value(served: Served, keys: Keys) -> None:
    app, client = served

    first = await client.put(
        "/v1/state/global/prices/eu", json={"value": {"eur": 1}}, headers=auth(keys.alice)
    )
    second = await client.put(
        "/v1/state/global/prices/eu", json={"value": {"eur": 2}}, headers=auth(keys.alice)
    )
    read = await client.get("/v1/state/global/prices/eu", headers=auth(keys.bob))
    stored = await app.state.get("global", "tenants/acme/prices/eu")
    deleted = await client.delete("/v1/state/global/prices/eu", headers=auth(keys.alice))
    gone = await client.get("/v1/state/global/prices/eu", headers=auth(keys.alice))
    again = await client.delete("/v1/state/global/prices/eu", headers=auth(keys.alice))

    assert first.status_code == 200, first.text
    assert first.json()["version"] == 1
    assert second.json()["version"] == 2
    assert read.status_code == 200
    entry = read.json()
    assert entry["scope"] == "global"
    assert entry["key"] == "prices/eu"
    assert entry["value"] == {"eur": 2}
    assert entry["session_id"] is None
    assert stored is not None
    assert stored.value == {"eur": 2}
    assert deleted.status_code == 204
    assert gone.status_code == 404
    assert again.status_code == 404


async def test_global_values_belong_to_the_tenant(served: Served, keys: Keys) -> None:
    _, client = served
    await client.put("/v1/state/global/plan", json={"value": "acme's"}, headers=auth(keys.alice))

    carol_reads = await client.get("/v1/state/global/plan", headers=auth(keys.carol))
    carol_writes = await client.put(
        "/v1/state/global/plan", json={"value": "globex's"}, headers=auth(keys.carol)
    )
    admin_reads = await client.get("/v1/state/global/plan", headers=auth(keys.acme_admin))

    assert carol_reads.status_code == 404
    assert carol_writes.json()["version"] == 1
    assert admin_reads.json()["value"] == "acme's"


async def test_local_values_belong_to_the_caller(served: Served, keys: Keys) -> None:
    app, client = served
    await client.put("/v1/state/local/draft", json={"value": "alice's"}, headers=auth(keys.alice))

    bob = await client.get("/v1/state/local/draft", headers=auth(keys.bob))
    admin = await client.get("/v1/state/local/draft", headers=auth(keys.acme_admin))
    alice = await client.get("/v1/state/local/draft", headers=auth(keys.alice))

    assert bob.status_code == 404
    assert admin.status_code == 404
    assert alice.json()["value"] == "alice's"
    stored = await app.state.get("local", "draft", namespace="acme:alice")
    assert stored is not None


async def test_session_values_need_a_session_the_caller_may_see(served: Served, keys: Keys) -> None:
    _, client = served
    session = await new_session(client, keys.alice)
    where = {"session_id": session["id"]}

    written = await client.put(
        "/v1/state/session/step", params=where, json={"value": 3}, headers=auth(keys.alice)
    )
    by_admin = await client.get(
        "/v1/state/session/step", params=where, headers=auth(keys.acme_admin)
    )
    by_bob = await client.get("/v1/state/session/step", params=where, headers=auth(keys.bob))
    without = await client.get("/v1/state/session/step", headers=auth(keys.alice))
    misplaced = await client.get("/v1/state/global/step", params=where, headers=auth(keys.alice))

    assert written.json()["session_id"] == session["id"]
    assert by_admin.json()["value"] == 3
    assert by_bob.status_code == 404
    assert without.status_code == 422
    assert misplaced.status_code == 422


async def test_expected_version_makes_a_write_or_delete_conditional(
    served: Served, keys: Keys
) -> None:
    _, client = served
    url = "/v1/state/local/counter"

    created = await client.put(
        url, json={"value": 1, "expected_version": 0}, headers=auth(keys.alice)
    )
    lost = await client.put(url, json={"value": 9, "expected_version": 0}, headers=auth(keys.alice))
    won = await client.put(url, json={"value": 2, "expected_version": 1}, headers=auth(keys.alice))
    stale_delete = await client.delete(
        url, params={"expected_version": 1}, headers=auth(keys.alice)
    )
    delete = await client.delete(url, params={"expected_version": 2}, headers=auth(keys.alice))

    assert created.json()["version"] == 1
    assert lost.status_code == 409
    assert lost.json()["error"]["details"]["actual"] == 1
    assert won.json()["value"] == 2
    assert stale_delete.status_code == 409
    assert delete.status_code == 204


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/v1/state/forever/k", {"value": 1}),
        ("GET", "/v1/state/forever/k", None),
        ("PUT", "/v1/state/global/k", {}),
        ("PUT", "/v1/state/global/k", {"value": 1, "expected_version": -1}),
        ("PUT", "/v1/state/global/k", {"value": 1, "expected_version": "1"}),
        ("PUT", "/v1/state/global/k", {"value": 1, "ttl": 5}),
        ("PUT", "/v1/state/global/k", {"value": 2**70}),
        ("PUT", "/v1/state/global/k", [1]),
        ("PUT", "/v1/state/global/" + "k" * 401, {"value": 1}),
        ("DELETE", "/v1/state/global/k?expected_version=x", None),
    ],
)
async def test_bad_requests_are_422(
    served: Served, keys: Keys, method: str, path: str, body: Any
) -> None:
    _, client = served

    response = await client.request(
        method, path, json=body if body is not None else None, headers=auth(keys.alice)
    )

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_input"


async def test_malformed_json_is_422(served: Served, keys: Keys) -> None:
    _, client = served

    response = await client.put(
        "/v1/state/global/k",
        content=b'{"value": [1, 2',
        headers={**auth(keys.alice), "content-type": "application/json"},
    )

    assert response.status_code == 422


async def _key_of(app: App, tenant_id: str, user_id: str) -> str:
    _, key = await KeyStore(app.state, clock=app.clock).create(user_id, tenant_id=tenant_id)
    return key


async def test_two_callers_whose_ids_join_alike_never_share_local_state(served: Served) -> None:
    app, client = served
    # tenant "t1:x" with user "y", and tenant "t1" with user "x:y": once one namespace.
    first = await _key_of(app, "t1:x", "y")
    second = await _key_of(app, "t1", "x:y")
    url = "/v1/state/local/draft"

    written = await client.put(url, json={"value": "first's"}, headers=auth(first))
    second_reads = await client.get(url, headers=auth(second))
    second_creates = await client.put(
        url, json={"value": "second's", "expected_version": 0}, headers=auth(second)
    )
    second_overwrites = await client.put(url, json={"value": "mine"}, headers=auth(second))
    second_deletes = await client.delete(url, headers=auth(second))
    first_reads = await client.get(url, headers=auth(first))

    assert written.status_code == 200, written.text
    assert second_reads.status_code == 404
    assert second_creates.json()["version"] == 1  # a key of its own, not the first's
    assert second_overwrites.json()["version"] == 2
    assert second_deletes.status_code == 204
    assert first_reads.status_code == 200
    assert (first_reads.json()["value"], first_reads.json()["version"]) == ("first's", 1)


async def test_values_stored_before_ids_were_escaped_are_still_found(
    served: Served, keys: Keys
) -> None:
    app, client = served
    # Where values of ids without "%", ":" or "/" were always kept.
    await app.state.set("local", "draft", "kept", namespace="acme:alice")
    await app.state.set("global", "tenants/acme/plan", "team")

    local = await client.get("/v1/state/local/draft", headers=auth(keys.alice))
    shared = await client.get("/v1/state/global/plan", headers=auth(keys.bob))

    assert (local.json()["value"], local.json()["version"]) == ("kept", 1)
    assert (shared.json()["value"], shared.json()["version"]) == ("team", 1)
