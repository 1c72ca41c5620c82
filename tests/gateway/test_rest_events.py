"""REST events: the log of the caller's sessions and runs, filtered and paged by position."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support import Keys, auth
from rest_support import new_session, rest_settings, send

from promptline.app import App
from promptline.config.settings import Settings
from promptline.core.events import EVENT_CLASSES, parse_event
from promptline.events.protocols import EventFilter
from promptline.gateway.service import event_json

Served = tuple[App, httpx.AsyncClient]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return rest_settings(tmp_path / "home")


async def _read_all(
    client: httpx.AsyncClient, key: str, limit: int, **params: Any
) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/v1/events", params=query, headers=auth(key))
        assert response.status_code == 200, response.text
        pages.append(response.json()["items"])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return pages


async def test_pages_of_a_session_join_up_to_exactly_its_stored_events(
    served: Served, keys: Keys
) -> None:
    app, client = served
    session = await new_session(client, keys.alice)
    await send(client, keys.alice, session["id"], "one")
    await send(client, keys.alice, session["id"], "two")

    pages = await _read_all(client, keys.alice, 7, session_id=session["id"])

    stored = [
        event_json(e) for e in await app.events.read_all(EventFilter(session_id=session["id"]))
    ]
    assert [e for page in pages for e in page] == stored
    assert all(len(page) == 7 for page in pages[:-1])
    assert 0 < len(pages[-1]) <= 7


async def test_filters_by_run_and_types(served: Served, keys: Keys) -> None:
    _, client = served
    session = await new_session(client, keys.alice)
    first = await send(client, keys.alice, session["id"], "one")
    second = await send(client, keys.alice, session["id"], "two")

    of_run = await _read_all(client, keys.alice, 1000, run_id=second["run_id"])
    ends = await _read_all(
        client, keys.alice, 1000, session_id=session["id"], types="run_started, run_completed"
    )

    assert {e["run_id"] for page in of_run for e in page} == {second["run_id"]}
    assert [(e["type"], e["run_id"]) for e in ends[0]] == [
        ("run_started", first["run_id"]),
        ("run_completed", first["run_id"]),
        ("run_started", second["run_id"]),
        ("run_completed", second["run_id"]),
    ]


async def test_a_model_call_comes_compact_or_with_its_whole_prompt_when_expanded(
    served: Served, keys: Keys
) -> None:
    _, client = served
    session = await new_session(client, keys.alice)
    await send(client, keys.alice, session["id"], "one")
    second = await send(client, keys.alice, session["id"], "two")

    query = {"run_id": second["run_id"], "types": "llm_command"}
    [compact] = (await _read_all(client, keys.alice, 10, **query))[0]
    [whole] = (await _read_all(client, keys.alice, 10, **query, expand="true"))[0]

    assert compact["schema_version"] == 2
    assert compact["data"]["messages"] == []  # the conversation is in the session's events
    assert compact["data"]["layout"]
    assert compact["data"]["message_count"] == len(whole["data"]["messages"])
    said = [(m["role"], m["content"][0]["text"]) for m in whole["data"]["messages"][1:]]
    assert [role for role, _ in said] == ["user", "assistant", "user"]
    assert (said[0][1], said[2][1]) == ("one", "two")
    assert whole["data"]["messages"][0]["role"] == "system"
    assert whole["data"]["layout"] is None
    assert {k: v for k, v in whole.items() if k != "data"} == {
        k: v for k, v in compact.items() if k != "data"
    }


async def test_without_a_filter_a_user_reads_its_own_events_and_an_admin_its_tenants(
    served: Served, keys: Keys
) -> None:
    _, client = served
    alices = await new_session(client, keys.alice)
    bobs = await new_session(client, keys.bob)
    carols = await new_session(client, keys.carol)
    for key, sid in ((keys.alice, alices), (keys.bob, bobs), (keys.carol, carols)):
        await send(client, key, sid["id"], "hello")

    def sessions_of(pages: list[list[dict[str, Any]]]) -> set[str | None]:
        return {e["session_id"] for page in pages for e in page}

    assert sessions_of(await _read_all(client, keys.alice, 50)) == {alices["id"]}
    assert sessions_of(await _read_all(client, keys.bob, 50)) == {bobs["id"]}
    assert sessions_of(await _read_all(client, keys.acme_admin, 50)) == {alices["id"], bobs["id"]}
    assert sessions_of(await _read_all(client, keys.carol, 50)) == {carols["id"]}


async def test_session_state_changes_are_in_the_sessions_events(served: Served, keys: Keys) -> None:
    _, client = served
    session = await new_session(client, keys.alice)
    await client.put(
        "/v1/state/session/plan",
        params={"session_id": session["id"]},
        json={"value": [1, 2]},
        headers=auth(keys.alice),
    )

    [page] = await _read_all(
        client, keys.alice, 100, session_id=session["id"], types="state_change"
    )

    [change] = page
    assert change["data"]["key"] == "plan"
    assert change["data"]["value"] == [1, 2]


async def _changes(client: httpx.AsyncClient, key: str) -> list[dict[str, Any]]:
    """The ``state_change`` events ``key`` reads from the log without naming a session."""
    return [e for page in await _read_all(client, key, 100, types="state_change") for e in page]


def _owners(changes: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (e["data"]["scope"], e["data"]["key"], e["tenant_id"], e["user_id"], e["session_id"])
        for e in changes
    ]


async def test_a_session_state_write_is_in_its_tenants_events_with_the_sessions_owner(
    served: Served, keys: Keys
) -> None:
    _, client = served
    session = await new_session(client, keys.alice)
    where = {"session_id": session["id"]}
    by_alice = await client.put(
        "/v1/state/session/plan", params=where, json={"value": 1}, headers=auth(keys.alice)
    )
    # Written by acme's admin, the change still belongs to alice's session.
    by_admin = await client.put(
        "/v1/state/session/plan", params=where, json={"value": 2}, headers=auth(keys.acme_admin)
    )
    assert (by_alice.status_code, by_admin.status_code) == (200, 200)

    owned = [("session", "plan", "acme", "alice", session["id"])] * 2
    assert _owners(await _changes(client, keys.acme_admin)) == owned
    assert _owners(await _changes(client, keys.alice)) == owned
    assert await _changes(client, keys.bob) == []
    assert await _changes(client, keys.carol) == []
    refused = await client.get(
        "/v1/events", params={**where, "types": "state_change"}, headers=auth(keys.carol)
    )
    assert refused.status_code == 404


async def test_local_and_global_state_changes_are_in_their_owners_events(
    served: Served, keys: Keys
) -> None:
    _, client = served
    for url in ("/v1/state/local/draft", "/v1/state/global/plan"):
        written = await client.put(url, json={"value": 1}, headers=auth(keys.alice))
        assert written.status_code == 200, written.text
        deleted = await client.delete(url, headers=auth(keys.alice))
        assert deleted.status_code == 204

    local = ("local", "draft", "acme", "alice", None)
    shared = ("global", "tenants/acme/plan", "acme", "alice", None)
    expected = [local, local, shared, shared]
    assert _owners(await _changes(client, keys.acme_admin)) == expected
    assert _owners(await _changes(client, keys.alice)) == expected
    assert await _changes(client, keys.bob) == []
    assert await _changes(client, keys.carol) == []


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "abc"},
        {"cursor": "-1"},
        {"cursor": "1" * 40},
        {"limit": 0},
        {"limit": 1001},
        {"types": ","},
        {"types": "run_started,DROP TABLE"},
    ],
)
async def test_bad_parameters_are_422(served: Served, keys: Keys, params: dict[str, Any]) -> None:
    _, client = served

    response = await client.get("/v1/events", params=params, headers=auth(keys.alice))

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_input"


@pytest.mark.parametrize("params", [{"session_id": "ses_nope"}, {"run_id": "run_nope"}])
async def test_unknown_sessions_and_runs_are_404(
    served: Served, keys: Keys, params: dict[str, str]
) -> None:
    _, client = served

    response = await client.get("/v1/events", params=params, headers=auth(keys.alice))

    assert response.status_code == 404


@pytest.mark.parametrize(
    ("types", "unknown"),
    [("nope", ["nope"]), ("run_started, run_finished,nope", ["nope", "run_finished"])],
)
async def test_an_unknown_event_type_is_422_naming_it_and_listing_the_known_ones(
    served: Served, keys: Keys, types: str, unknown: list[str]
) -> None:
    _, client = served

    response = await client.get("/v1/events", params={"types": types}, headers=auth(keys.alice))

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert error["message"] == "unknown event type(s) in types: " + ", ".join(
        repr(name) for name in unknown
    )
    assert error["details"]["field"] == "types"
    assert error["details"]["unknown"] == unknown
    assert error["details"]["known"] == sorted(EVENT_CLASSES)
    assert "run_started" in error["details"]["hint"]


async def test_an_event_of_a_type_this_version_does_not_know_is_still_passed_on(
    served: Served, keys: Keys
) -> None:
    app, client = served
    session = await new_session(client, keys.alice)
    await app.events.append(
        parse_event(
            {
                "type": "from_a_newer_version",
                "session_id": session["id"],
                "tenant_id": "acme",
                "user_id": "alice",
                "data": {"kept": [1, 2]},
            }
        )
    )

    [page] = await _read_all(client, keys.alice, 100, session_id=session["id"])

    assert [e["type"] for e in page] == ["session_created", "from_a_newer_version"]
    assert page[-1]["data"] == {"kept": [1, 2]}
