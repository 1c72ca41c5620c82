"""The WebSocket control plane through the client: every method, subscriptions that replay
and follow a session's stream, unsubscribing."""

from __future__ import annotations

import pytest
from client_support import Served, stored

from promptline.client import (
    AsyncPromptLine,
    CatalogueModel,
    ConflictError,
    NotFoundError,
    Session,
    Tool,
)
from promptline.core.events import Event, PermissionRequestEvent


async def test_ping_and_the_catalogue(client: AsyncPromptLine) -> None:
    connection = await client.websocket()

    assert await connection.ping() == "pong"
    tools = await connection.list_tools()
    models = await connection.list_models()

    assert all(isinstance(t, Tool) for t in tools)
    assert "file_write" in [t.name for t in tools]
    assert all(isinstance(m, CatalogueModel) for m in models)
    assert "scripted/demo" in [m.id for m in models if m.configured]


async def test_create_send_and_subscribe_from_the_start(client: AsyncPromptLine) -> None:
    connection = await client.websocket()
    session = await connection.create_session(context={"via": "ws"})
    assert isinstance(session, Session)
    assert session.channel == "websocket"

    async with await connection.subscribe(session.id, from_seq=0) as subscription:
        started = await connection.send(session.id, "over the socket")
        received: list[Event] = []
        async for event in subscription:
            received.append(event)
            if event.type == "run_completed":
                break

    assert received[0].type == "session_created"
    kept = [e for e in received if e.type != "llm_delta"]  # live deltas have seq 0
    assert [e.seq for e in kept] == list(range(1, len(kept) + 1))
    assert all(e.seq == 0 for e in received if e.type == "llm_delta")
    assert received[-1].run_id == started.run_id
    assert subscription.last_seq == received[-1].seq
    everything = await stored(client, session.id)
    assert [e.id for e in kept] == [e.id for e in everything[: len(kept)]]


async def test_a_subscription_from_a_seq_skips_what_came_before(client: AsyncPromptLine) -> None:
    session = await client.sessions.create()
    await client.sessions.send_and_wait(session.id, "first")
    connection = await client.websocket()
    before = await stored(client, session.id)

    subscription = await connection.subscribe(session.id, from_seq=before[-1].seq)
    await connection.send(session.id, "second")
    first = await subscription.next(timeout=10)
    await subscription.close()

    assert first.seq == before[-1].seq + 1
    assert [e async for e in subscription] == []  # closed: iteration ends


async def test_run_control_and_approvals_over_the_socket(client: AsyncPromptLine) -> None:
    connection = await client.websocket()
    session = await connection.create_session()

    stream = connection.stream(session.id, "write it", model="scripted/writer")
    request = None
    async for event in stream:
        if isinstance(event, PermissionRequestEvent):
            request = event.data
            break
    assert request is not None
    run_id = stream.run_id or ""

    paused = await connection.pause_run(run_id)
    resumed = await connection.resume_run(run_id)
    outcome = await connection.respond(request.request_id, approve=True, scope="session")
    final = await stream.wait()

    assert (paused.status, resumed.status) == ("paused", "running")
    assert outcome.approved is True
    assert outcome.scope == "session"
    assert final.type == "run_completed"
    assert stream.output == "Done: note.txt is written."

    other = await connection.create_session()
    again = connection.stream(other.id, "write it", model="scripted/writer")
    async for event in again:
        if isinstance(event, PermissionRequestEvent):
            break
    cancelled = await connection.cancel_run(again.run_id or "")
    assert cancelled.status == "cancelled"
    assert (await again.wait()).type == "run_cancelled"


async def test_state_over_the_socket(client: AsyncPromptLine) -> None:
    connection = await client.websocket()
    session = await client.sessions.create()

    written = await connection.set_state("session", "plan", {"step": 1}, session_id=session.id)
    read = await connection.get_state("session", "plan", session_id=session.id)
    shared = await connection.set_state("global", "motd", "hello")
    over_rest = await client.state.get("global", "motd")

    assert (written.value, written.version) == ({"step": 1}, 1)
    assert read.value == {"step": 1}
    assert shared.version == 1
    assert over_rest.value == "hello"
    with pytest.raises(ConflictError):
        await connection.set_state("global", "motd", "again", expected_version=5)
    with pytest.raises(NotFoundError):
        await connection.get_state("local", "nothing-here")


async def test_another_users_session_cannot_be_followed(served: Served) -> None:
    async with (
        AsyncPromptLine(served.url, served.keys.alice) as alice,
        AsyncPromptLine(served.url, served.keys.bob) as bob,
    ):
        session = await alice.sessions.create()
        connection = await bob.websocket()
        with pytest.raises(NotFoundError):
            await connection.subscribe(session.id, from_seq=0)
        with pytest.raises(NotFoundError):
            await connection.send(session.id, "hello")
        assert await connection.ping() == "pong"


async def test_a_connection_of_its_own(client: AsyncPromptLine) -> None:
    async with client.connect() as connection:
        session = await connection.create_session()
        run = connection.stream(session.id, "hello")
        text = "".join([t async for t in run.text()])
    assert "offline demo model" in text
    assert not connection.connected
