"""Idempotency keys at the gateway's entry points (REST messages, the OpenAI-compatible API,
WebSocket ``session.send``, MCP ``tools/call``): a retry gets the first answer and creates
nothing; a key reused for another message is 422. And a session past its expiry time takes no
message at any of them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from gateway_support import Keys, auth
from rest_support import ended, new_session, rest_settings
from ws_support import alice_on, ws_settings

from promptline.app import App
from promptline.config.settings import Settings
from promptline.events.protocols import EventFilter
from promptline.sessions.models import Principal

Served = tuple[App, httpx.AsyncClient]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return rest_settings(tmp_path / "home")


async def _past_its_time(app: App, session_id: str) -> None:
    """Move the session's expiry time into the past (no sweep has run since)."""
    who = Principal(user_id="alice", tenant_id="acme")
    await app.sessions.update(session_id, who, expires_at=datetime.now(UTC) - timedelta(seconds=1))


async def _queued(app: App) -> int:
    return await app.events.count(EventFilter(types=frozenset({"run_queued"})))


async def test_a_rest_retry_with_the_same_key_answers_as_the_first_time(
    served: Served, keys: Keys
) -> None:
    app, client = served
    session = await new_session(client, keys.alice)
    url = f"/v1/sessions/{session['id']}/messages"
    headers = {**auth(keys.alice), "Idempotency-Key": "msg-1"}

    first = await client.post(url, json={"content": "hello"}, headers=headers)
    assert await ended(client, keys.alice, first.json()["run_id"]) == "completed"
    again = await client.post(url, json={"content": "hello"}, headers=headers)
    waited = await client.post(
        url, params={"wait": "true"}, json={"content": "hello"}, headers=headers
    )

    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert waited.status_code == 200
    assert (waited.json()["run_id"], waited.json()["status"]) == (
        first.json()["run_id"],
        "completed",
    )
    assert await _queued(app) == 1
    history = (await client.get(f"/v1/sessions/{session['id']}", headers=auth(keys.alice))).json()
    assert [m["content"][0]["text"] for m in history["history"] if m["role"] == "user"] == ["hello"]


async def test_a_rest_stream_retry_replays_the_first_runs_events(
    served: Served, keys: Keys
) -> None:
    _, client = served
    session = await new_session(client, keys.alice)
    url = f"/v1/sessions/{session['id']}/messages"
    headers = {**auth(keys.alice), "Idempotency-Key": "streamed"}

    async def types() -> list[str]:
        async with client.stream(
            "POST", url, params={"stream": "true"}, json={"content": "hi"}, headers=headers
        ) as response:
            body = (await response.aread()).decode()
        return [line[7:] for line in body.splitlines() if line.startswith("event: ")]

    first, again = await types(), await types()

    assert first[:2] == ["message_received", "run_queued"]
    assert first[-1] == "run_completed"
    assert "llm_delta" in first
    # The retry replays the log; the first stream's deltas were live only (never stored).
    assert again == [kind for kind in first if kind != "llm_delta"]


async def test_a_key_reused_for_another_message_is_422_and_stores_nothing(
    served: Served, keys: Keys
) -> None:
    app, client = served
    session = await new_session(client, keys.alice)
    url = f"/v1/sessions/{session['id']}/messages"
    headers = {**auth(keys.alice), "Idempotency-Key": "k"}
    await client.post(url, json={"content": "one"}, headers=headers)

    reused = await client.post(url, json={"content": "two"}, headers=headers)

    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    assert "run_id" in reused.json()["error"]["details"]
    assert await _queued(app) == 1


@pytest.mark.parametrize("key", ["", "x" * 256])
async def test_an_unusable_key_is_422(served: Served, keys: Keys, key: str) -> None:
    _, client = served
    session = await new_session(client, keys.alice)
    answer = await client.post(
        f"/v1/sessions/{session['id']}/messages",
        json={"content": "hi"},
        headers={**auth(keys.alice), "Idempotency-Key": key},
    )
    assert answer.status_code == 422, answer.text


async def test_keys_are_per_user(served: Served, keys: Keys) -> None:
    app, client = served
    mine = await new_session(client, keys.alice)
    theirs = await new_session(client, keys.bob)
    for key, session in ((keys.alice, mine), (keys.bob, theirs)):
        answer = await client.post(
            f"/v1/sessions/{session['id']}/messages",
            json={"content": "same words"},
            headers={**auth(key), "Idempotency-Key": "shared-key"},
        )
        assert answer.status_code == 202
        assert "Idempotent-Replayed" not in answer.headers
    assert await _queued(app) == 2


async def test_an_openai_retry_with_the_same_key_gets_the_first_completion(
    served: Served, keys: Keys
) -> None:
    app, client = served
    body = {"model": "agent/assistant", "messages": [{"role": "user", "content": "hello"}]}
    headers = {**auth(keys.alice), "Idempotency-Key": "chat-1"}

    first = await client.post("/v1/chat/completions", json=body, headers=headers)
    again = await client.post("/v1/chat/completions", json=body, headers=headers)

    assert first.status_code == again.status_code == 200, again.text
    text = first.json()["choices"][0]["message"]["content"]
    assert again.json()["choices"][0]["message"]["content"] == text
    assert again.headers["X-Run-Id"] == first.headers["X-Run-Id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await _queued(app) == 1
    other = await client.post(
        "/v1/chat/completions",
        json={**body, "messages": [{"role": "user", "content": "something else"}]},
        headers=headers,
    )
    assert other.status_code == 400  # OpenAI answers an invalid request with 400


async def test_a_websocket_send_with_the_same_client_msg_id_answers_as_the_first_time(
    tmp_path: Path,
) -> None:
    async with alice_on(ws_settings(tmp_path / "home")) as (gw, client):
        session_id = str((await client.call("session.create"))["id"])
        params = {"session_id": session_id, "content": "hi there", "client_msg_id": "c-1"}
        first = await client.call("session.send", params)
        again = await client.call("session.send", params)
        reused = await client.error("session.send", {**params, "content": "other words"})
        queued = await _queued(gw.app)

    assert again == first
    assert queued == 1
    assert reused["data"]["code"] == "idempotency_key_reused"


async def test_a_session_past_its_expiry_takes_no_message_and_reads_expired(
    served: Served, keys: Keys
) -> None:
    app, client = served
    session = await new_session(client, keys.alice)
    await _past_its_time(app, session["id"])

    refused = await client.post(
        f"/v1/sessions/{session['id']}/messages",
        json={"content": "anyone?"},
        headers=auth(keys.alice),
    )
    chat = await client.post(
        "/v1/chat/completions",
        json={"model": "agent/assistant", "messages": [{"role": "user", "content": "anyone?"}]},
        headers={**auth(keys.alice), "X-Session-Id": session["id"]},
    )
    read = await client.get(f"/v1/sessions/{session['id']}", headers=auth(keys.alice))

    assert refused.status_code == 409
    assert "expired" in refused.json()["error"]["message"]
    assert chat.status_code == 409
    assert read.json()["status"] == "expired"
    assert await _queued(app) == 0


async def test_the_gateway_sweep_records_sessions_past_their_time_as_expired(
    served: Served, keys: Keys
) -> None:
    import asyncio

    app, client = served
    session = await new_session(client, keys.alice)
    await _past_its_time(app, session["id"])
    wanted = EventFilter(types=frozenset({"session_expired"}), session_id=session["id"])

    app.start_session_sweep(interval=0.05)
    for _ in range(200):  # bound: 10 s
        if await app.events.count(wanted):
            break
        await asyncio.sleep(0.05)

    assert await app.events.count(wanted) == 1
