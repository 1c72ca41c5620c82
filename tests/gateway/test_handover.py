"""Clients that send their next message the moment the previous run of the session is over
(seen as ``run_completed`` over the WebSocket, or by polling the run over REST): every message
runs, in order, and the history holds each one and its answer."""

from __future__ import annotations

from pathlib import Path

from gateway_support import auth
from rest_support import ended, live_client, new_session
from ws_support import alice_on, ends, served, ws_settings

from promptline.sessions.models import Principal

TRIES = 20
ALICE = Principal(user_id="alice", tenant_id="acme")


async def test_a_websocket_client_sending_on_run_completed_gets_every_message_answered(
    tmp_path: Path,
) -> None:
    async with alice_on(ws_settings(tmp_path / "home")) as (gw, client):
        session_id = str((await client.call("session.create"))["id"])
        await client.call("events.subscribe", {"session_id": session_id})
        for i in range(TRIES):
            started = await client.call(
                "session.send", {"session_id": session_id, "content": f"message {i}"}
            )
            seen = await client.events_until(ends(started["run_id"]))
            assert seen[-1]["type"] == "run_completed", seen[-1]
        history = (await gw.app.sessions.get(session_id, ALICE)).history

    assert [m.text for m in history if m.role == "user"] == [f"message {i}" for i in range(TRIES)]
    assert sum(m.role == "assistant" for m in history) == TRIES


async def test_a_rest_client_sending_once_its_poll_says_completed_gets_every_message_answered(
    tmp_path: Path,
) -> None:
    async with served(ws_settings(tmp_path / "home")) as gw, live_client(gw.info) as client:
        session = await new_session(client, gw.keys.alice)
        for i in range(TRIES):
            answer = await client.post(
                f"/v1/sessions/{session['id']}/messages",
                json={"content": f"message {i}"},
                headers=auth(gw.keys.alice),
            )
            assert answer.status_code == 202, answer.text
            assert await ended(client, gw.keys.alice, answer.json()["run_id"]) == "completed"
        read = await client.get(f"/v1/sessions/{session['id']}", headers=auth(gw.keys.alice))

    history = read.json()["history"]
    asked = [m["content"][0]["text"] for m in history if m["role"] == "user"]
    assert asked == [f"message {i}" for i in range(TRIES)]
    assert sum(m["role"] == "assistant" for m in history) == TRIES
