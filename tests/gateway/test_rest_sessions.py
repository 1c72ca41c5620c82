"""REST sessions: create, list (paged), read, delete, export, import and search."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support import Keys, auth
from rest_support import ended, new_session, rest_settings, send, waiting_run

from promptline.app import App
from promptline.config.settings import Settings
from promptline.core.events import SessionExpiredEvent

Served = tuple[App, httpx.AsyncClient]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return rest_settings(tmp_path / "home")


async def test_create_gives_201_and_the_session_owned_by_the_caller(
    served: Served, keys: Keys
) -> None:
    _, client = served

    response = await client.post(
        "/v1/sessions",
        json={
            "agent": "assistant",
            "channel": "web",
            "context": {"topic": "billing"},
            "metadata": {"ticket": 7},
            "ttl_secs": 3600,
        },
        headers=auth(keys.alice),
    )
    default = await client.post("/v1/sessions", json={}, headers=auth(keys.alice))

    assert response.status_code == 201, response.text
    session = response.json()
    assert session["id"].startswith("ses_")
    assert (session["tenant_id"], session["user_id"]) == ("acme", "alice")
    assert session["channel"] == "web"
    assert session["status"] == "active"
    assert session["context"] == {"topic": "billing"}
    assert session["metadata"] == {"ticket": 7, "agent": "assistant"}
    assert session["expires_at"] is not None
    assert session["message_count"] == 0
    assert "history" not in session
    assert default.status_code == 201
    assert default.json()["channel"] == "http"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"channel": 5}, "channel"),
        ({"channel": ""}, "channel"),
        ({"channel": "has spaces"}, "channel"),
        ({"context": "not an object"}, "context"),
        ({"metadata": [1, 2]}, "metadata"),
        ({"ttl_secs": "3600"}, "ttl_secs"),
        ({"ttl_secs": -1}, "ttl_secs"),
        ({"ttl_secs": 1e300}, "ttl_secs"),
        ({"agent": "nobody"}, "agent"),
        ({"colour": "blue"}, "colour"),
        ([], ""),
    ],
)
async def test_create_refuses_wrong_types_with_422_naming_the_field(
    served: Served, keys: Keys, body: Any, field: str
) -> None:
    _, client = served

    response = await client.post("/v1/sessions", json=body, headers=auth(keys.alice))

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert field in error["message"] + str(error["details"])


async def test_malformed_json_is_422(served: Served, keys: Keys) -> None:
    _, client = served

    response = await client.post(
        "/v1/sessions",
        content=b'{"channel": "web",',
        headers={**auth(keys.alice), "content-type": "application/json"},
    )

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_input"


async def test_the_list_pages_newest_first_and_filters(served: Served, keys: Keys) -> None:
    _, client = served
    made = [(await new_session(client, keys.alice, channel=f"c{i % 2}"))["id"] for i in range(5)]
    await new_session(client, keys.bob)

    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/sessions", params=params, headers=auth(keys.alice))).json()
        pages.append([s["id"] for s in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    on_c0 = await client.get("/v1/sessions", params={"channel": "c0"}, headers=auth(keys.alice))
    expired = await client.get(
        "/v1/sessions", params={"status": "expired"}, headers=auth(keys.alice)
    )

    assert pages == [made[::-1][0:2], made[::-1][2:4], made[::-1][4:]]
    assert {s["id"] for s in on_c0.json()["items"]} == {made[0], made[2], made[4]}
    assert expired.json() == {"items": [], "next_cursor": None}


async def test_a_user_lists_only_its_own_and_the_tenant_admin_lists_the_tenant(
    served: Served, keys: Keys
) -> None:
    _, client = served
    alices = (await new_session(client, keys.alice))["id"]
    bobs = (await new_session(client, keys.bob))["id"]
    carols = (await new_session(client, keys.carol))["id"]

    as_bob = await client.get("/v1/sessions", headers=auth(keys.bob))
    as_admin = await client.get("/v1/sessions", headers=auth(keys.acme_admin))
    admin_on_bob = await client.get(
        "/v1/sessions", params={"user_id": "bob"}, headers=auth(keys.acme_admin)
    )
    bob_on_alice = await client.get(
        "/v1/sessions", params={"user_id": "alice"}, headers=auth(keys.bob)
    )

    assert [s["id"] for s in as_bob.json()["items"]] == [bobs]
    assert {s["id"] for s in as_admin.json()["items"]} == {alices, bobs}
    assert carols not in str(as_admin.json())
    assert [s["id"] for s in admin_on_bob.json()["items"]] == [bobs]
    assert bob_on_alice.status_code == 403
    assert bob_on_alice.json()["error"]["code"] == "permission_denied"


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 1001},
        {"limit": "many"},
        {"status": "deleted"},
        {"cursor": "ses_not_a_session"},
    ],
)
async def test_bad_list_parameters_are_422(
    served: Served, keys: Keys, params: dict[str, Any]
) -> None:
    _, client = served

    response = await client.get("/v1/sessions", params=params, headers=auth(keys.alice))

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_input"


async def test_read_gives_the_history_or_its_latest_messages(served: Served, keys: Keys) -> None:
    _, client = served
    session = await new_session(client, keys.alice)
    await send(client, keys.alice, session["id"], "first")
    await send(client, keys.alice, session["id"], "second")

    whole = await client.get(f"/v1/sessions/{session['id']}", headers=auth(keys.alice))
    latest = await client.get(
        f"/v1/sessions/{session['id']}", params={"history_limit": 1}, headers=auth(keys.alice)
    )
    bad = await client.get(
        f"/v1/sessions/{session['id']}", params={"history_limit": -1}, headers=auth(keys.alice)
    )

    assert whole.status_code == 200
    history = whole.json()["history"]
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]
    assert history[2]["content"] == [{"type": "text", "text": "second"}]
    assert whole.json()["message_count"] == 4
    assert len(latest.json()["history"]) == 1
    assert latest.json()["message_count"] == 4
    assert bad.status_code == 422


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/sessions/ses_nope"),
        ("DELETE", "/v1/sessions/ses_nope"),
        ("GET", "/v1/sessions/ses_nope/export"),
        ("GET", "/v1/sessions/search?q=x&session_id=ses_nope"),
    ],
)
async def test_unknown_sessions_are_404_in_the_error_shape(
    served: Served, keys: Keys, method: str, path: str
) -> None:
    _, client = served

    response = await client.request(method, path, headers=auth(keys.alice))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert "ses_nope" in response.json()["error"]["message"]


async def test_delete_hides_the_session_and_keeps_its_events(served: Served, keys: Keys) -> None:
    app, client = served
    session = await new_session(client, keys.alice)
    kept = await new_session(client, keys.alice)
    sid = session["id"]
    await send(client, keys.alice, sid, "remember the invoice")

    deleted = await client.delete(f"/v1/sessions/{sid}", headers=auth(keys.alice))

    assert deleted.status_code == 204
    assert deleted.content == b""
    for method, path in [
        ("GET", f"/v1/sessions/{sid}"),
        ("GET", f"/v1/sessions/{sid}/export"),
        ("DELETE", f"/v1/sessions/{sid}"),
        ("GET", f"/v1/events?session_id={sid}"),
        ("GET", f"/v1/runs?session_id={sid}"),
        ("GET", f"/v1/state/session/k?session_id={sid}"),
    ]:
        gone = await client.request(method, path, headers=auth(keys.acme_admin))
        assert gone.status_code == 404, (method, path)
    message = await client.post(
        f"/v1/sessions/{sid}/messages", json={"content": "hello?"}, headers=auth(keys.alice)
    )
    assert message.status_code == 404
    listed = await client.get("/v1/sessions", headers=auth(keys.alice))
    assert [s["id"] for s in listed.json()["items"]] == [kept["id"]]
    found = await client.get(
        "/v1/sessions/search", params={"q": "invoice"}, headers=auth(keys.alice)
    )
    assert found.json()["items"] == []
    runs = await client.get("/v1/runs", headers=auth(keys.alice))
    assert runs.json()["items"] == []
    events = await client.get("/v1/events", headers=auth(keys.alice))
    assert sid not in str(events.json())
    stored = await app.events.read_stream(sid)
    assert any(e.type == "message_received" for e in stored)
    assert isinstance(stored[-1], SessionExpiredEvent)
    assert stored[-1].data.reason == "deleted"


async def test_delete_cancels_the_runs_in_flight_and_withdraws_their_approvals(
    served: Served, keys: Keys
) -> None:
    app, client = served
    waiting = await waiting_run(client, keys.alice)

    deleted = await client.delete(f"/v1/sessions/{waiting.session_id}", headers=auth(keys.alice))

    assert deleted.status_code == 204
    run = app.runtime.active
    for flight in run:
        await flight.result()
    stored = await app.events.read_stream(waiting.session_id)
    ends = [e for e in stored if e.type in ("run_completed", "run_failed", "run_cancelled")]
    assert [e.type for e in ends] == ["run_cancelled"]
    assert (await client.get("/v1/approvals", headers=auth(keys.alice))).json()["items"] == []
    gone = await client.get(f"/v1/runs/{waiting.run_id}", headers=auth(keys.alice))
    assert gone.status_code == 404


async def test_export_then_import_gives_the_session_back(served: Served, keys: Keys) -> None:
    _, client = served
    session = await new_session(client, keys.alice, context={"k": "v"})
    await send(client, keys.alice, session["id"], "keep this")

    exported = await client.get(f"/v1/sessions/{session['id']}/export", headers=auth(keys.alice))
    same_id = await client.post(
        "/v1/sessions/import", json={"document": exported.json()}, headers=auth(keys.alice)
    )
    copied = await client.post(
        "/v1/sessions/import",
        json={"document": exported.json(), "as_new_id": True},
        headers=auth(keys.alice),
    )

    assert exported.status_code == 200
    document = exported.json()
    assert (document["format"], document["version"]) == ("promptline.session", 1)
    assert document["session"]["id"] == session["id"]
    assert [m["role"] for m in document["history"]] == ["user", "assistant"]
    assert same_id.status_code == 409
    assert same_id.json()["error"]["code"] == "conflict"
    assert copied.status_code == 201, copied.text
    copy = copied.json()
    assert copy["id"] != session["id"]
    assert copy["context"] == {"k": "v"}
    assert copy["message_count"] == 2
    again = await client.get(f"/v1/sessions/{copy['id']}/export", headers=auth(keys.alice))
    assert again.json()["history"] == document["history"]


@pytest.mark.parametrize(
    "body",
    [
        {"document": {"format": "something.else", "version": 1}},
        {"document": {"format": "promptline.session", "version": 99}},
        {"document": {"format": "promptline.session", "version": 1, "session": {}}},
        {"document": "a string"},
        {"document": {}, "as_new_id": "yes"},
        {},
    ],
)
async def test_import_refuses_a_bad_document_with_422(
    served: Served, keys: Keys, body: dict[str, Any]
) -> None:
    _, client = served

    response = await client.post("/v1/sessions/import", json=body, headers=auth(keys.alice))

    assert response.status_code == 422, response.text
    assert set(response.json()["error"]) == {"code", "message", "details"}


async def test_a_user_may_not_import_another_users_session(served: Served, keys: Keys) -> None:
    _, client = served
    session = await new_session(client, keys.alice)
    exported = await client.get(f"/v1/sessions/{session['id']}/export", headers=auth(keys.alice))

    as_bob = await client.post(
        "/v1/sessions/import",
        json={"document": exported.json(), "as_new_id": True},
        headers=auth(keys.bob),
    )

    assert as_bob.status_code == 403


async def test_search_finds_the_callers_messages_only(served: Served, keys: Keys) -> None:
    _, client = served
    alices = await new_session(client, keys.alice)
    other = await new_session(client, keys.alice)
    bobs = await new_session(client, keys.bob)
    await send(client, keys.alice, alices["id"], "the march invoice is late")
    await send(client, keys.alice, other["id"], "another invoice question")
    await send(client, keys.bob, bobs["id"], "bob's invoice")

    found = await client.get(
        "/v1/sessions/search", params={"q": "invoice"}, headers=auth(keys.alice)
    )
    narrowed = await client.get(
        "/v1/sessions/search",
        params={"q": "march invoice", "session_id": alices["id"], "limit": 1},
        headers=auth(keys.alice),
    )
    empty_query = await client.get(
        "/v1/sessions/search", params={"q": "!!!"}, headers=auth(keys.alice)
    )
    no_query = await client.get("/v1/sessions/search", headers=auth(keys.alice))

    assert found.status_code == 200
    hits = found.json()["items"]
    assert {h["session_id"] for h in hits} == {alices["id"], other["id"]}
    assert found.json()["next_cursor"] is None
    [hit] = narrowed.json()["items"]
    assert hit["session_id"] == alices["id"]
    assert hit["idx"] == 0
    assert hit["message"]["role"] == "user"
    assert "[march]" in hit["snippet"].lower()
    assert isinstance(hit["rank"], float)
    assert empty_query.status_code == 422
    assert no_query.status_code == 422


async def test_an_expired_session_is_readable_but_takes_no_messages(
    served: Served, keys: Keys
) -> None:
    app, client = served
    session = await new_session(client, keys.alice, ttl_secs=0.001)
    await app.sessions.expire_due()

    read = await client.get(f"/v1/sessions/{session['id']}", headers=auth(keys.alice))
    message = await client.post(
        f"/v1/sessions/{session['id']}/messages", json={"content": "hi"}, headers=auth(keys.alice)
    )

    assert read.json()["status"] == "expired"
    assert message.status_code == 409


async def test_a_session_created_with_an_agent_uses_it(served: Served, keys: Keys) -> None:
    _, client = served
    session = await new_session(client, keys.alice, agent="assistant")

    run = await send(client, keys.alice, session["id"], "hello")

    assert run["agent"] == "assistant"
    assert await ended(client, keys.alice, run["run_id"]) == "completed"
