"""REST approvals: the pending requests of the caller's sessions, and answering them (only
someone who may see the session may)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support import Keys, auth
from rest_support import ended, new_session, rest_settings, waiting_run

from promptline.app import App
from promptline.config.settings import Settings

Served = tuple[App, httpx.AsyncClient]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return rest_settings(tmp_path / "home")


async def test_a_run_waiting_for_approval_is_listed_and_goes_on_when_approved(
    served: Served, keys: Keys
) -> None:
    _, client = served
    waiting = await waiting_run(client, keys.alice)

    everything = await client.get("/v1/approvals", headers=auth(keys.alice))
    answer = await client.post(
        f"/v1/approvals/{waiting.request['request_id']}",
        json={"approve": True, "scope": "once", "reason": "fine"},
        headers=auth(keys.alice),
    )

    assert everything.status_code == 200
    assert [r["request_id"] for r in everything.json()["items"]] == [waiting.request["request_id"]]
    assert everything.json()["next_cursor"] is None
    request = waiting.request
    assert request["tool"] == "file_write"
    assert request["arguments"] == {"path": "note.txt", "content": "written once approved"}
    assert request["session_id"] == waiting.session_id
    assert request["user_id"] == "alice"
    assert answer.status_code == 200, answer.text
    outcome = answer.json()
    assert outcome["approved"] is True
    assert outcome["status"] == "granted"
    assert outcome["scope"] == "once"
    assert outcome["decided_by"] == "alice"
    assert outcome["reason"] == "fine"
    assert await ended(client, keys.alice, waiting.run_id) == "completed"
    run = (await client.get(f"/v1/runs/{waiting.run_id}", headers=auth(keys.alice))).json()
    assert run["output"] == "Done: note.txt is written."
    assert run["tool_calls"] == ["file_write"]
    left = await client.get("/v1/approvals", headers=auth(keys.alice))
    assert left.json()["items"] == []


async def test_a_refusal_is_recorded_and_the_run_still_ends(served: Served, keys: Keys) -> None:
    _, client = served
    waiting = await waiting_run(client, keys.alice)

    answer = await client.post(
        f"/v1/approvals/{waiting.request['request_id']}",
        json={"approve": False},
        headers=auth(keys.alice),
    )
    again = await client.post(
        f"/v1/approvals/{waiting.request['request_id']}",
        json={"approve": True},
        headers=auth(keys.alice),
    )

    assert answer.status_code == 200
    assert answer.json()["status"] == "denied"
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"
    assert await ended(client, keys.alice, waiting.run_id) == "completed"


async def test_the_list_narrows_to_one_session(served: Served, keys: Keys) -> None:
    _, client = served
    first = await waiting_run(client, keys.alice)
    second = await waiting_run(client, keys.alice)

    one = await client.get(
        "/v1/approvals", params={"session_id": second.session_id}, headers=auth(keys.alice)
    )
    both = await client.get("/v1/approvals", headers=auth(keys.alice))

    assert [r["run_id"] for r in one.json()["items"]] == [second.run_id]
    assert {r["run_id"] for r in both.json()["items"]} == {first.run_id, second.run_id}


@pytest.mark.parametrize("intruder", ["bob", "carol"])
async def test_an_answer_from_someone_who_may_not_see_the_session_is_404_and_changes_nothing(
    served: Served, keys: Keys, intruder: str
) -> None:
    app, client = served
    waiting = await waiting_run(client, keys.alice)
    request_id = waiting.request["request_id"]

    answer = await client.post(
        f"/v1/approvals/{request_id}",
        json={"approve": True, "scope": "always"},
        headers=auth(getattr(keys, intruder)),
    )
    unknown = await client.post(
        "/v1/approvals/req_00000000000000000000000000",
        json={"approve": True, "scope": "always"},
        headers=auth(getattr(keys, intruder)),
    )

    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == unknown.json()["error"]["code"]
    assert answer.json()["error"]["message"] == f"no permission request {request_id!r}"
    assert (await app.permissions.broker.get(request_id)).status == "pending"
    still = await client.get("/v1/approvals", headers=auth(keys.alice))
    assert [r["request_id"] for r in still.json()["items"]] == [request_id]
    theirs = await client.get("/v1/approvals", headers=auth(getattr(keys, intruder)))
    assert theirs.json()["items"] == []


async def test_the_tenant_admin_may_answer_for_a_user_of_its_tenant(
    served: Served, keys: Keys
) -> None:
    _, client = served
    waiting = await waiting_run(client, keys.alice)

    listed = await client.get("/v1/approvals", headers=auth(keys.acme_admin))
    answer = await client.post(
        f"/v1/approvals/{waiting.request['request_id']}",
        json={"approve": True, "scope": "session"},
        headers=auth(keys.acme_admin),
    )

    assert [r["request_id"] for r in listed.json()["items"]] == [waiting.request["request_id"]]
    assert answer.status_code == 200
    assert answer.json()["scope"] == "session"
    assert answer.json()["decided_by"] == "ops"
    assert await ended(client, keys.alice, waiting.run_id) == "completed"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"approve": "yes"},
        {"approve": 1},
        {"approve": True, "scope": "forever"},
        {"approve": True, "reason": 5},
        {"approve": True, "surprise": 1},
        [True],
    ],
)
async def test_a_malformed_answer_is_422_and_the_request_stays_pending(
    served: Served, keys: Keys, body: Any
) -> None:
    app, client = served
    waiting = await waiting_run(client, keys.alice)

    answer = await client.post(
        f"/v1/approvals/{waiting.request['request_id']}", json=body, headers=auth(keys.alice)
    )

    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_input"
    assert (await app.permissions.broker.get(waiting.request["request_id"])).status == "pending"


async def test_malformed_json_and_unknown_ids(served: Served, keys: Keys) -> None:
    _, client = served
    session = await new_session(client, keys.alice)

    broken = await client.post(
        "/v1/approvals/req_x",
        content=b'{"approve": tru',
        headers={**auth(keys.alice), "content-type": "application/json"},
    )
    unknown = await client.post(
        "/v1/approvals/req_x", json={"approve": True}, headers=auth(keys.alice)
    )
    no_session = await client.get(
        "/v1/approvals", params={"session_id": "ses_nope"}, headers=auth(keys.alice)
    )
    empty = await client.get(
        "/v1/approvals", params={"session_id": session["id"]}, headers=auth(keys.alice)
    )

    assert broken.status_code == 422
    assert unknown.status_code == 404
    assert no_session.status_code == 404
    assert empty.json() == {"items": [], "next_cursor": None}
