"""REST runs: records listed (paged, filtered, in flight) and read, and cancel, pause and
resume of runs in flight."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support import Keys, auth
from rest_support import ended, new_session, rest_settings, run_status, send, waiting_run

from promptline.app import App
from promptline.config.settings import Settings

Served = tuple[App, httpx.AsyncClient]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return rest_settings(tmp_path / "home")


async def _all_pages(
    client: httpx.AsyncClient, key: str, limit: int, **params: Any
) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = None
    while True:
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/runs", params=query, headers=auth(key))).json()
        pages.append([r["run_id"] for r in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages


async def test_the_list_pages_newest_first_and_filters_by_session_and_status(
    served: Served, keys: Keys
) -> None:
    _, client = served
    first = await new_session(client, keys.alice)
    second = await new_session(client, keys.alice)
    runs = [
        (await send(client, keys.alice, sid, f"message {i}"))["run_id"]
        for i, sid in enumerate([first["id"], second["id"], first["id"]])
    ]
    waiting = await waiting_run(client, keys.alice)  # (a writer's first turn asks)
    await send(client, keys.bob, (await new_session(client, keys.bob))["id"], "bob's")

    pages = await _all_pages(client, keys.alice, 2)
    of_first = await _all_pages(client, keys.alice, 10, session_id=first["id"])
    waiting_ones = await _all_pages(client, keys.alice, 10, status="waiting_approval")
    completed = await _all_pages(client, keys.alice, 1, status="completed")

    newest_first = [waiting.run_id, *runs[::-1]]
    assert pages == [newest_first[:2], newest_first[2:]]
    assert of_first == [[runs[2], runs[0]]]
    assert waiting_ones == [[waiting.run_id]]
    assert completed == [[runs[2]], [runs[1]], [runs[0]]]


async def test_a_record_holds_what_the_run_did(served: Served, keys: Keys) -> None:
    _, client = served
    session = await new_session(client, keys.alice)
    done = await send(client, keys.alice, session["id"], "hello")

    response = await client.get(f"/v1/runs/{done['run_id']}", headers=auth(keys.alice))

    assert response.status_code == 200
    record = response.json()
    assert record == done
    assert record["status"] == "completed"
    assert record["agent"] == "assistant"
    assert (record["user_id"], record["tenant_id"]) == ("alice", "acme")
    assert (
        record["total_tokens"] == record["usage"]["input_tokens"] + record["usage"]["output_tokens"]
    )


async def test_active_lists_only_runs_in_flight(served: Served, keys: Keys) -> None:
    _, client = served
    session = await new_session(client, keys.alice)
    await send(client, keys.alice, session["id"], "done already")
    waiting = await waiting_run(client, keys.alice)

    active = await client.get("/v1/runs", params={"active": "true"}, headers=auth(keys.alice))
    as_bob = await client.get("/v1/runs", params={"active": "true"}, headers=auth(keys.bob))
    as_admin = await client.get(
        "/v1/runs", params={"active": "true"}, headers=auth(keys.acme_admin)
    )

    assert [r["run_id"] for r in active.json()["items"]] == [waiting.run_id]
    assert active.json()["items"][0]["status"] == "waiting_approval"
    assert active.json()["items"][0]["pending_approvals"] == [waiting.request["request_id"]]
    assert as_bob.json()["items"] == []
    assert [r["run_id"] for r in as_admin.json()["items"]] == [waiting.run_id]


async def test_cancel_ends_a_run_in_flight_and_a_second_cancel_is_409(
    served: Served, keys: Keys
) -> None:
    _, client = served
    waiting = await waiting_run(client, keys.alice)

    cancelled = await client.post(f"/v1/runs/{waiting.run_id}/cancel", headers=auth(keys.alice))
    again = await client.post(f"/v1/runs/{waiting.run_id}/cancel", headers=auth(keys.alice))

    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json() == {"run_id": waiting.run_id, "status": "cancelled"}
    record = (await client.get(f"/v1/runs/{waiting.run_id}", headers=auth(keys.alice))).json()
    assert record["status"] == "cancelled"
    assert record["cancelled_by"] == "alice"
    assert again.status_code == 409
    assert again.json()["error"]["details"]["status"] == "cancelled"


async def test_pause_and_resume_a_run_in_flight(served: Served, keys: Keys) -> None:
    _, client = served
    waiting = await waiting_run(client, keys.alice)

    paused = await client.post(f"/v1/runs/{waiting.run_id}/pause", headers=auth(keys.alice))
    resumed = await client.post(f"/v1/runs/{waiting.run_id}/resume", headers=auth(keys.alice))
    await client.post(
        f"/v1/approvals/{waiting.request['request_id']}",
        json={"approve": True},
        headers=auth(keys.alice),
    )

    assert paused.json() == {"run_id": waiting.run_id, "status": "paused"}
    assert resumed.json() == {"run_id": waiting.run_id, "status": "running"}
    assert await ended(client, keys.alice, waiting.run_id) == "completed"


async def test_a_paused_run_waits_until_resumed(served: Served, keys: Keys) -> None:
    app, client = served
    waiting = await waiting_run(client, keys.alice)

    paused = await client.post(f"/v1/runs/{waiting.run_id}/pause", headers=auth(keys.alice))
    await client.post(
        f"/v1/approvals/{waiting.request['request_id']}",
        json={"approve": True},
        headers=auth(keys.alice),
    )
    run = app.runtime.get(waiting.run_id)
    await _until_paused(app, waiting.run_id)
    still = await run_status(client, keys.alice, waiting.run_id)
    resumed = await client.post(f"/v1/runs/{waiting.run_id}/resume", headers=auth(keys.alice))
    await run.result()

    assert paused.status_code == 200
    assert still == "running"
    assert resumed.json()["status"] == "running"
    assert await run_status(client, keys.alice, waiting.run_id) == "completed"


async def _until_paused(app: App, run_id: str) -> None:
    from rest_support import eventually

    async def paused() -> bool:
        return app.runtime.get(run_id).lifecycle.state == "paused"

    await eventually(paused, what=f"{run_id} to pause")


@pytest.mark.parametrize("action", ["cancel", "pause", "resume"])
async def test_controls_on_an_ended_run_are_409_and_on_an_unknown_one_404(
    served: Served, keys: Keys, action: str
) -> None:
    _, client = served
    session = await new_session(client, keys.alice)
    done = await send(client, keys.alice, session["id"], "hello")

    ended_run = await client.post(f"/v1/runs/{done['run_id']}/{action}", headers=auth(keys.alice))
    unknown = await client.post(f"/v1/runs/run_nope/{action}", headers=auth(keys.alice))

    assert ended_run.status_code == 409
    assert ended_run.json()["error"]["code"] == "conflict"
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 5000},
        {"status": "sleeping"},
        {"active": "maybe"},
        {"cursor": "not-a-position"},
        {"cursor": "-4"},
    ],
)
async def test_bad_list_parameters_are_422(
    served: Served, keys: Keys, params: dict[str, Any]
) -> None:
    _, client = served

    response = await client.get("/v1/runs", params=params, headers=auth(keys.alice))

    assert response.status_code == 422, response.text


async def test_unknown_runs_and_sessions_are_404(served: Served, keys: Keys) -> None:
    _, client = served

    run = await client.get("/v1/runs/run_nope", headers=auth(keys.alice))
    long = await client.get("/v1/runs/" + "r" * 400, headers=auth(keys.alice))
    of_session = await client.get(
        "/v1/runs", params={"session_id": "ses_nope"}, headers=auth(keys.alice)
    )

    assert run.status_code == 404
    assert long.status_code == 404
    assert of_session.status_code == 404
