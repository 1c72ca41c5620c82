"""Server-Sent Events over real HTTP (a served gateway): a message's run streamed as it
goes, a client that leaves mid-stream, and a session's live tail from a seq."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from asyncio.subprocess import DEVNULL, PIPE
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support import Keys, auth, live_gateway, make_keys
from rest_support import (
    Frame,
    ended,
    eventually,
    frames,
    keys_for,
    live_client,
    new_session,
    rest_settings,
    send,
    subscribers,
)

from promptline.app import build_app
from promptline.config.settings import Settings
from promptline.gateway.app import create_gateway
from promptline.gateway.service import event_json


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return rest_settings(tmp_path / "home")


async def _stored(client: httpx.AsyncClient, key: str, **params: Any) -> list[dict[str, Any]]:
    """Every stored event the query names, read page by page."""
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/events", params=query, headers=auth(key))).json()
        found.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return found


async def test_a_streamed_message_sends_the_runs_events_and_ends_with_the_run(
    settings: Settings,
) -> None:
    keys = await keys_for(settings)
    async with live_gateway(settings) as info, live_client(info) as client:
        session = await new_session(client, keys.alice)
        got: list[Frame] = []
        async with client.stream(
            "POST",
            f"/v1/sessions/{session['id']}/messages",
            params={"stream": "true"},
            json={"content": "tell me something"},
            headers=auth(keys.alice),
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-cache"
            async for frame in frames(response):
                got.append(frame)
        # The response ended by itself after the run's last event.
        run_id = got[0].data["run_id"]
        stored = await _stored(client, keys.alice, run_id=run_id)

    assert got[-1].event == "run_completed"
    assert {"run_started", "llm_command", "llm_delta", "message_sent"} <= {f.event for f in got}
    assert all(f.id == f.data["seq"] and f.event == f.data["type"] for f in got)
    assert all(f.data["run_id"] == run_id for f in got)
    # Deltas are transient: live, without an id (seq 0), never stored; the rest is the log.
    assert {f.event for f in got if not f.id} == {"llm_delta"}
    upto = [e for e in stored if e["seq"] <= got[-1].id]
    assert [f.data for f in got if f.id] == upto


async def test_a_client_leaving_mid_stream_does_not_stop_the_run_and_its_events_are_stored(
    settings: Settings,
) -> None:
    keys = await keys_for(settings)
    async with live_gateway(settings) as info, live_client(info) as client:
        session = await new_session(client, keys.alice)
        before = await subscribers(client)
        seen: list[str] = []
        async with client.stream(
            "POST",
            f"/v1/sessions/{session['id']}/messages",
            params={"stream": "true"},
            json={"content": "write the note", "model": "scripted/writer"},
            headers=auth(keys.alice),
        ) as response:
            await eventually(
                lambda: _subscribers_are(client, before + 1), what="the stream's subscription"
            )
            async for frame in frames(response):
                seen.append(frame.event)
                if frame.event == "permission_request":
                    run_id = frame.data["run_id"]
                    request_id = frame.data["data"]["request_id"]
                    break  # the client leaves while the run waits
        await eventually(
            lambda: _subscribers_are(client, before), what="the stream's subscription to end"
        )
        answer = await client.post(
            f"/v1/approvals/{request_id}", json={"approve": True}, headers=auth(keys.alice)
        )
        status = await ended(client, keys.alice, run_id)
        of_run = await _stored(client, keys.alice, run_id=run_id)
        of_session = await _stored(client, keys.alice, session_id=session["id"])

    assert "run_completed" not in seen
    assert answer.status_code == 200
    assert status == "completed"
    kinds = [e["type"] for e in of_run]
    for kind in ("run_started", "permission_request", "permission_granted", "tool_result"):
        assert kind in kinds
    assert "run_completed" in kinds
    assert [e["seq"] for e in of_session] == list(range(1, len(of_session) + 1))


async def test_a_tail_from_seq_n_during_a_streamed_run_gives_exactly_the_stored_events_after_n(
    settings: Settings,
) -> None:
    keys = await keys_for(settings)
    async with live_gateway(settings) as info, live_client(info) as client:
        session = await new_session(client, keys.alice)
        sid = session["id"]
        await send(client, keys.alice, sid, "a first exchange")
        n = len(await _stored(client, keys.alice, session_id=sid)) // 2

        async def stream_a_run() -> list[Frame]:
            async with client.stream(
                "POST",
                f"/v1/sessions/{sid}/messages",
                params={"stream": "true"},
                json={"content": "and a second one"},
                headers=auth(keys.alice),
            ) as response:
                return [frame async for frame in frames(response)]

        tailed: list[Frame] = []
        async with client.stream(
            "GET",
            f"/v1/sessions/{sid}/events",
            params={"from_seq": n},
            headers=auth(keys.alice),
        ) as tail:
            assert tail.status_code == 200
            streamed = asyncio.create_task(stream_a_run())
            target: int | None = None
            async for frame in frames(tail):
                tailed.append(frame)
                if target is None and streamed.done():
                    target = (await _stored(client, keys.alice, session_id=sid))[-1]["seq"]
                if target is None and frame.event == "run_completed":
                    await streamed
                    target = (await _stored(client, keys.alice, session_id=sid))[-1]["seq"]
                if target is not None and frame.id >= target:
                    break
    async with build_app(settings) as app:  # the store itself, once the server is gone
        stored = [event_json(e) for e in await app.events.read_stream(sid)]

    assert (await streamed)[-1].event == "run_completed"
    after_n = [e for e in stored if e["seq"] > n]
    kept = [f for f in tailed if f.id]  # live deltas (no id) are not in the log
    assert [f.id for f in kept] == [e["seq"] for e in after_n]
    assert [f.data for f in kept] == after_n


async def test_a_tail_resumes_after_last_event_id_which_wins_over_from_seq(
    settings: Settings,
) -> None:
    keys = await keys_for(settings)
    async with live_gateway(settings) as info, live_client(info) as client:
        session = await new_session(client, keys.alice)
        await send(client, keys.alice, session["id"], "fill the stream")
        stored = await _stored(client, keys.alice, session_id=session["id"])
        async with client.stream(
            "GET",
            f"/v1/sessions/{session['id']}/events",
            params={"from_seq": 0},
            headers={**auth(keys.alice), "Last-Event-ID": "3"},
        ) as tail:
            got: list[Frame] = []
            async for frame in frames(tail):
                got.append(frame)
                if frame.id == stored[-1]["seq"]:
                    break
        bad = await client.get(
            f"/v1/sessions/{session['id']}/events",
            headers={**auth(keys.alice), "Last-Event-ID": "three"},
        )

    assert [f.data for f in got] == stored[3:]
    assert bad.status_code == 422


async def test_a_tail_ends_when_its_session_is_deleted(settings: Settings) -> None:
    keys = await keys_for(settings)
    async with live_gateway(settings) as info, live_client(info) as client:
        session = await new_session(client, keys.alice)
        got: list[Frame] = []
        async with client.stream(
            "GET",
            f"/v1/sessions/{session['id']}/events",
            params={"from_seq": 0},
            headers=auth(keys.alice),
        ) as tail:
            async for frame in frames(tail):
                got.append(frame)
                if frame.event == "session_created":
                    deleted = await client.delete(
                        f"/v1/sessions/{session['id']}", headers=auth(keys.alice)
                    )
                    assert deleted.status_code == 204

    assert [f.event for f in got] == ["session_created", "session_expired"]
    assert got[-1].data["data"]["reason"] == "deleted"


async def test_the_tenant_admin_follows_a_users_session_and_another_tenant_may_not(
    settings: Settings,
) -> None:
    keys = await keys_for(settings)
    async with live_gateway(settings) as info, live_client(info) as client:
        session = await new_session(client, keys.alice)
        url = f"/v1/sessions/{session['id']}/events"
        async with client.stream(
            "GET", url, params={"from_seq": 0}, headers=auth(keys.acme_admin)
        ) as tail:
            first = await anext(frames(tail))
        refused = await client.get(url, params={"from_seq": 0}, headers=auth(keys.carol))

    assert first.event == "session_created"
    assert refused.status_code == 404


async def test_an_open_tail_ends_cleanly_when_the_gateway_begins_to_stop(
    settings: Settings,
) -> None:
    async with build_app(settings) as app:
        keys = await make_keys(app)
        api = create_gateway(app)
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            session = await new_session(client, keys.alice)
            before = app.bus.subscriber_count  # type: ignore[attr-defined]
            tail = asyncio.create_task(
                client.get(
                    f"/v1/sessions/{session['id']}/events",
                    params={"from_seq": 0},
                    headers=auth(keys.alice),
                )
            )
            await eventually(
                lambda: _true(app.bus.subscriber_count > before),  # type: ignore[attr-defined]
                what="the tail's subscription",
            )
            api.state.gateway.stopping.set()  # what `promptline serve` does on SIGTERM
            response = await asyncio.wait_for(tail, timeout=10)

        assert response.status_code == 200
        # The stop may come before the replay's first frame is written: the stream then ends
        # empty (the client resumes with Last-Event-ID); whatever was sent is whole frames.
        text = response.text
        assert text == "" or (text.endswith("\n\n") and text.startswith(("id:", ":")))
        assert app.bus.subscriber_count == before  # type: ignore[attr-defined]


SERVE_CONFIG = """\
models:
  default: scripted/demo
agent:
  shutdown_timeout_secs: 60
"""


async def test_serve_stops_at_once_on_sigterm_with_a_tail_open(tmp_path: Path) -> None:
    """The real thing: a tail open on `promptline serve`, SIGTERM, a clean end of the stream
    and of the process, long before the 60 s grace period runs out."""
    home = tmp_path / "serve-home"
    home.mkdir()
    (home / "config.yaml").write_text(SERVE_CONFIG, encoding="utf-8")
    env = {**os.environ, "PROMPTLINE_HOME": str(home)}
    promptline = [sys.executable, "-m", "promptline.cli.main"]
    made = await asyncio.create_subprocess_exec(
        *promptline, "keys", "create", "--user", "u", "--json", env=env, stdout=PIPE
    )
    key = json.loads((await made.communicate())[0])["key"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = await asyncio.create_subprocess_exec(
        *promptline, "serve", "--port", str(port), env=env, stdout=DEVNULL, stderr=PIPE
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:

            async def up() -> bool:
                try:
                    return (await client.get("/healthz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await eventually(up, within=60, what="the server to start")
            session = await new_session(client, key)
            async with client.stream(
                "GET",
                f"/v1/sessions/{session['id']}/events",
                params={"from_seq": 0},
                headers=auth(key),
            ) as tail:
                reader = frames(tail)
                first = await anext(reader)
                server.send_signal(signal.SIGTERM)
                rest = [frame async for frame in reader]  # ends, without an error
            await asyncio.wait_for(server.wait(), timeout=20)
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
    assert server.stderr is not None
    log = (await server.stderr.read()).decode()

    assert first.event == "session_created"
    assert rest == []
    assert server.returncode == 0
    assert "Traceback" not in log


async def _true(value: bool) -> bool:
    return value


@pytest.mark.parametrize("params", [{"from_seq": -1}, {"from_seq": "x"}])
async def test_a_bad_tail_request_is_an_error_not_a_stream(
    served: tuple[object, httpx.AsyncClient], keys: Keys, params: dict[str, Any]
) -> None:
    _, client = served
    session = await new_session(client, keys.alice)

    bad = await client.get(
        f"/v1/sessions/{session['id']}/events", params=params, headers=auth(keys.alice)
    )
    unknown = await client.get("/v1/sessions/ses_nope/events", headers=auth(keys.alice))

    assert bad.status_code == 422
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/json"


async def _subscribers_are(client: httpx.AsyncClient, expected: int) -> bool:
    return await subscribers(client) == expected
