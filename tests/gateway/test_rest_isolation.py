"""Tenant and user isolation over every REST resource: what a caller may not see answers
exactly as an id that does not exist (404, same code, same message), changes nothing, and
shows up in no list; a tenant's admin reaches its tenant's resources and no other's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support import Keys, auth
from rest_support import Waiting, new_session, rest_settings, run_status, waiting_run

from promptline.app import App
from promptline.config.settings import Settings

Served = tuple[App, httpx.AsyncClient]

UNKNOWN = {
    "sid": "ses_01M8J0000000000000000000XX",
    "rid": "run_01M8J0000000000000000000XX",
    "req": "perm_01M8J0000000000000000000XX",
}


@dataclass(frozen=True)
class Resource:
    """One request on one resource; ``{sid}``, ``{rid}``, ``{req}`` name the owner's ids."""

    method: str
    path: str
    body: Any = None

    def url(self, ids: dict[str, str]) -> str:
        return self.path.format(**ids)


RESOURCES = {
    "session: read": Resource("GET", "/v1/sessions/{sid}"),
    "session: export": Resource("GET", "/v1/sessions/{sid}/export"),
    "session: delete": Resource("DELETE", "/v1/sessions/{sid}"),
    "session: search in it": Resource("GET", "/v1/sessions/search?q=note&session_id={sid}"),
    "session: send a message": Resource(
        "POST", "/v1/sessions/{sid}/messages", {"content": "let me in"}
    ),
    # (reject: the owner's session is busy, and a stream behind its run would not end)
    "session: stream a message": Resource(
        "POST",
        "/v1/sessions/{sid}/messages?stream=true",
        {"content": "let me in", "queue_mode": "reject"},
    ),
    "session: follow its events": Resource("GET", "/v1/sessions/{sid}/events?from_seq=0"),
    "run: read": Resource("GET", "/v1/runs/{rid}"),
    "run: list of the session": Resource("GET", "/v1/runs?session_id={sid}"),
    "run: cancel": Resource("POST", "/v1/runs/{rid}/cancel"),
    "run: pause": Resource("POST", "/v1/runs/{rid}/pause"),
    "run: resume": Resource("POST", "/v1/runs/{rid}/resume"),
    "events: of the session": Resource("GET", "/v1/events?session_id={sid}"),
    "events: of the run": Resource("GET", "/v1/events?run_id={rid}"),
    "approval: list of the session": Resource("GET", "/v1/approvals?session_id={sid}"),
    "approval: answer": Resource("POST", "/v1/approvals/{req}", {"approve": True}),
    "session state: read": Resource("GET", "/v1/state/session/plan?session_id={sid}"),
    "session state: write": Resource(
        "PUT", "/v1/state/session/plan?session_id={sid}", {"value": "mine now"}
    ),
    "session state: delete": Resource("DELETE", "/v1/state/session/plan?session_id={sid}"),
}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return rest_settings(tmp_path / "home")


async def _world(client: httpx.AsyncClient, key: str) -> tuple[Waiting, dict[str, str]]:
    """A session of ``key``'s user with a run waiting for an approval and a state value."""
    waiting = await waiting_run(client, key)
    written = await client.put(
        "/v1/state/session/plan",
        params={"session_id": waiting.session_id},
        json={"value": "the owner's"},
        headers=auth(key),
    )
    assert written.status_code == 200
    ids = {"sid": waiting.session_id, "rid": waiting.run_id, "req": waiting.request["request_id"]}
    return waiting, ids


async def _call(
    client: httpx.AsyncClient, key: str, resource: Resource, ids: dict[str, str]
) -> httpx.Response:
    return await client.request(
        resource.method, resource.url(ids), json=resource.body, headers=auth(key)
    )


def _without(ids: dict[str, str], error: dict[str, Any]) -> str:
    text = str(error)
    for name, value in ids.items():
        text = text.replace(value, f"<{name}>")
    return text


@pytest.mark.parametrize("name", list(RESOURCES))
async def test_another_users_or_tenants_resource_is_404_like_an_unknown_id_and_stays_as_it_was(
    served: Served, keys: Keys, name: str
) -> None:
    app, client = served
    resource = RESOURCES[name]
    waiting, ids = await _world(client, keys.alice)

    for intruder in (keys.carol, keys.bob):  # another tenant; the same tenant, another user
        seen = await _call(client, intruder, resource, ids)
        unknown = await _call(client, intruder, resource, UNKNOWN)

        assert seen.status_code == 404, (name, seen.text)
        assert unknown.status_code == 404
        assert seen.headers["content-type"] == "application/json"
        # Nothing tells the two apart: same code, same message, same details.
        assert _without(ids, seen.json()["error"]) == _without(UNKNOWN, unknown.json()["error"])

    owner = auth(keys.alice)
    assert (await client.get(f"/v1/sessions/{ids['sid']}", headers=owner)).status_code == 200
    assert await run_status(client, keys.alice, waiting.run_id) == "waiting_approval"
    pending = await client.get("/v1/approvals", headers=owner)
    assert [r["request_id"] for r in pending.json()["items"]] == [ids["req"]]
    state = await client.get(
        "/v1/state/session/plan", params={"session_id": ids["sid"]}, headers=owner
    )
    assert state.json()["value"] == "the owner's"
    assert state.json()["version"] == 1
    assert [r.id for r in app.runtime.active] == [waiting.run_id]


@pytest.mark.parametrize("name", list(RESOURCES))
async def test_a_tenant_admin_reaches_its_tenants_resource_and_not_another_tenants(
    served: Served, keys: Keys, name: str
) -> None:
    _, client = served
    resource = RESOURCES[name]
    _, acme = await _world(client, keys.alice)
    _, globex = await _world(client, keys.carol)

    others = await _call(client, keys.acme_admin, resource, globex)
    unknown = await _call(client, keys.acme_admin, resource, UNKNOWN)

    assert others.status_code == 404, (name, others.text)
    assert _without(globex, others.json()["error"]) == _without(UNKNOWN, unknown.json()["error"])
    if resource.path.endswith("/events?from_seq=0"):
        # A live tail never ends, and the in-process client reads whole responses only:
        # test_rest_streaming reads the admin's tail of a user's session over real HTTP.
        return
    own = await _call(client, keys.acme_admin, resource, acme)
    if name == "session: stream a message":
        assert own.status_code == 409  # it sees the session, busy with the owner's run
        return
    assert own.status_code < 300, (name, own.text)


async def test_lists_show_nothing_of_another_user_or_tenant(served: Served, keys: Keys) -> None:
    _, client = served
    _, ids = await _world(client, keys.alice)
    await new_session(client, keys.carol)

    for intruder in (keys.carol, keys.bob):
        for path in ("/v1/sessions", "/v1/runs", "/v1/runs?active=true", "/v1/approvals"):
            listed = await client.get(path, headers=auth(intruder))
            assert listed.status_code == 200
            assert not any(value in listed.text for value in ids.values()), path
        events = await client.get("/v1/events?limit=1000", headers=auth(intruder))
        assert ids["sid"] not in events.text
        found = await client.get(
            "/v1/sessions/search", params={"q": "note"}, headers=auth(intruder)
        )
        assert ids["sid"] not in found.text
