"""REST messages: a message starts a run (202), or answers when it ends (``?wait=true``);
what a busy session does with the next one; what a bad message gets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support import Keys, auth
from rest_support import ended, eventually, new_session, rest_settings, waiting_run

from promptline.app import App
from promptline.config.settings import Settings

Served = tuple[App, httpx.AsyncClient]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return rest_settings(tmp_path / "home")


async def test_a_message_starts_a_run_and_answers_202(served: Served, keys: Keys) -> None:
    _, client = served
    session = await new_session(client, keys.alice)

    response = await client.post(
        f"/v1/sessions/{session['id']}/messages",
        json={"content": "hello there"},
        headers=auth(keys.alice),
    )

    assert response.status_code == 202, response.text
    body = response.json()
    assert set(body) == {"run_id", "session_id", "status", "position"}
    assert body["position"] == 0
    assert body["session_id"] == session["id"]
    assert body["status"] == "started"
    assert await ended(client, keys.alice, body["run_id"]) == "completed"
    history = (await client.get(f"/v1/sessions/{session['id']}", headers=auth(keys.alice))).json()
    assert [m["role"] for m in history["history"]] == ["user", "assistant"]


async def test_wait_answers_with_the_run_record_once_it_ended(served: Served, keys: Keys) -> None:
    _, client = served
    session = await new_session(client, keys.alice)

    response = await client.post(
        f"/v1/sessions/{session['id']}/messages",
        params={"wait": "true"},
        json={"content": "hello", "mode": "act", "model": "scripted/demo", "agent": "assistant"},
        headers=auth(keys.alice),
    )

    assert response.status_code == 200, response.text
    run = response.json()
    assert run["status"] == "completed"
    assert run["session_id"] == session["id"]
    assert run["input"] == "hello"
    assert run["output"].startswith("Hello from PromptLine")
    assert run["model"] == "scripted/demo"
    assert run["model_calls"] == 1
    assert run["usage"]["input_tokens"] > 0
    assert run["ended_at"] is not None


async def test_a_busy_session_refuses_with_409_when_asked_to_reject(
    served: Served, keys: Keys
) -> None:
    _, client = served
    waiting = await waiting_run(client, keys.alice)

    refused = await client.post(
        f"/v1/sessions/{waiting.session_id}/messages",
        json={"content": "me too", "queue_mode": "reject"},
        headers=auth(keys.alice),
    )

    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "session_busy"
    assert refused.json()["error"]["details"]["run_id"] == waiting.run_id


async def test_a_queued_run_is_visible_before_it_starts_and_runs_after(
    served: Served, keys: Keys
) -> None:
    _, client = served
    waiting = await waiting_run(client, keys.alice)

    queued = await client.post(
        f"/v1/sessions/{waiting.session_id}/messages",
        json={"content": "after that", "queue_mode": "enqueue"},
        headers=auth(keys.alice),
    )
    run_id = queued.json()["run_id"]
    record = await client.get(f"/v1/runs/{run_id}", headers=auth(keys.alice))
    active = await client.get("/v1/runs", params={"active": "true"}, headers=auth(keys.alice))
    await client.post(
        f"/v1/approvals/{waiting.request['request_id']}",
        json={"approve": True},
        headers=auth(keys.alice),
    )

    assert queued.status_code == 202
    assert record.status_code == 200
    assert record.json()["status"] == "queued"
    assert record.json()["input"] == "after that"
    assert [r["run_id"] for r in active.json()["items"]] == [run_id, waiting.run_id]
    assert await ended(client, keys.alice, waiting.run_id) == "completed"
    assert await ended(client, keys.alice, run_id) == "completed"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"content": ""},
        {"content": 42},
        {"content": ["hello"]},
        {"content": "hi", "mode": "dream"},
        {"content": "hi", "queue_mode": "later"},
        {"content": "hi", "agent": "nobody"},
        {"content": "hi", "agent": 3},
        {"content": "hi", "extra": True},
        {"content": "x" * 200_001},
        "just text",
    ],
)
async def test_a_bad_message_is_422_and_starts_nothing(
    served: Served, keys: Keys, body: Any
) -> None:
    app, client = served
    session = await new_session(client, keys.alice)

    response = await client.post(
        f"/v1/sessions/{session['id']}/messages", json=body, headers=auth(keys.alice)
    )

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_input"
    assert app.runtime.active == []
    assert not [e for e in await app.events.read_stream(session["id"]) if e.run_id]


async def test_wait_and_stream_together_are_refused(served: Served, keys: Keys) -> None:
    _, client = served
    session = await new_session(client, keys.alice)

    response = await client.post(
        f"/v1/sessions/{session['id']}/messages",
        params={"wait": "true", "stream": "true"},
        json={"content": "hi"},
        headers=auth(keys.alice),
    )

    assert response.status_code == 422


async def test_malformed_json_and_unknown_sessions(served: Served, keys: Keys) -> None:
    _, client = served
    session = await new_session(client, keys.alice)

    broken = await client.post(
        f"/v1/sessions/{session['id']}/messages",
        content=b'{"content": "hi"',
        headers={**auth(keys.alice), "content-type": "application/json"},
    )
    unknown = await client.post(
        "/v1/sessions/ses_nope/messages", json={"content": "hi"}, headers=auth(keys.alice)
    )
    not_bool = await client.post(
        f"/v1/sessions/{session['id']}/messages",
        params={"wait": "perhaps"},
        json={"content": "hi"},
        headers=auth(keys.alice),
    )

    assert broken.status_code == 422
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
    assert not_bool.status_code == 422


async def test_the_stream_in_process_holds_the_runs_events_up_to_its_end(
    served: Served, keys: Keys
) -> None:
    app, client = served
    session = await new_session(client, keys.alice)

    response = await client.post(
        f"/v1/sessions/{session['id']}/messages",
        params={"stream": "true"},
        json={"content": "stream it"},
        headers=auth(keys.alice),
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    ids = [int(line[4:]) for line in response.text.splitlines() if line.startswith("id: ")]
    kinds = [line[7:] for line in response.text.splitlines() if line.startswith("event: ")]
    assert kinds[-1] == "run_completed"
    assert "run_started" in kinds
    stored = await app.events.read_stream(session["id"])
    run_id = next(e.run_id for e in stored if e.type == "run_started")
    wanted = [e.seq for e in stored if e.run_id == run_id and e.seq <= ids[-1]]
    assert ids == wanted
    await eventually(lambda: _idle(app), what="no run in flight")


async def _idle(app: App) -> bool:
    return not app.runtime.active
