"""The blocking client, `PromptLine`: the same calls as the async one, driven on its own
loop (the gateway under test runs on the test's loop, so each scenario runs in a thread)."""

from __future__ import annotations

import asyncio

import pytest
from client_support import Served

from promptline.client import (
    NotFoundError,
    PromptLine,
    RateLimitedError,
    Session,
    SyncRunStream,
)
from promptline.core.events import Event, PermissionRequestEvent


async def test_sessions_messages_and_streams_without_asyncio(served: Served) -> None:
    def scenario() -> tuple[Session, str, str, list[str], str]:
        with PromptLine(served.url, served.keys.alice) as client:
            session = client.sessions.create()
            waited = client.sessions.send_and_wait(session.id, "hello")
            with client.sessions.stream(session.id, "stream me") as run:
                assert isinstance(run, SyncRunStream)
                text = "".join(run.text())
            pieces = [
                t for t in client.sessions.stream(session.id, "again", via="websocket").text()
            ]
            listed = [s.id for s in client.sessions.iterate()]
            assert listed == [session.id]
            return session, waited.output, text, pieces, run.output

    session, waited, text, pieces, output = await asyncio.to_thread(scenario)

    assert session.user_id == "alice"
    assert waited.startswith("Hello from PromptLine's offline demo model!")
    assert text == output
    assert 'You said: "stream me"' in text
    assert len(pieces) > 3


async def test_approvals_runs_state_and_catalogue(served: Served) -> None:
    def scenario() -> None:
        with PromptLine(served.url, served.keys.alice) as client:
            session = client.sessions.create()
            run = client.sessions.stream(session.id, "write", model="scripted/writer")
            for event in run:
                if isinstance(event, PermissionRequestEvent):
                    break
            (request,) = client.approvals.list(session_id=session.id)
            client.approvals.respond(request.request_id, approve=True)
            assert run.wait().type == "run_completed"
            record = client.runs.get(run.run_id or "")
            assert record.status == "completed"
            assert [r.run_id for r in client.runs.list(session_id=session.id).items] == [
                record.run_id
            ]
            client.state.set("local", "colour", "blue")
            assert client.state.get("local", "colour").value == "blue"
            client.state.delete("local", "colour")
            with pytest.raises(NotFoundError):
                client.state.get("local", "colour")
            assert "assistant" in [a.name for a in client.agents.list()]
            assert client.agents.get("assistant").name == "assistant"
            assert "file_write" in [t.name for t in client.tools.list()]
            assert "scripted/demo" in [m.id for m in client.models.list()]
            assert client.models.catalogue()

    await asyncio.to_thread(scenario)


async def test_subscribe_and_the_websocket_without_asyncio(served: Served) -> None:
    def scenario() -> list[Event]:
        with PromptLine(served.url, served.keys.alice) as client:
            session = client.sessions.create()
            received: list[Event] = []
            with client.events.subscribe(session.id, from_seq=0) as subscription:
                connection = client.websocket()
                assert connection.ping() == "pong"
                connection.send(session.id, "hello")
                for event in subscription:
                    received.append(event)
                    if event.type == "run_completed":
                        break
            with client.connect() as own:
                assert own.create_session().channel == "websocket"
            tail = client.events.tail(session.id, from_seq=0)
            assert next(iter(tail)).type == "session_created"
            return received

    received = await asyncio.to_thread(scenario)

    assert received[0].type == "session_created"
    assert received[-1].type == "run_completed"
    kept = [e for e in received if e.type != "llm_delta"]  # live deltas have seq 0
    assert [e.seq for e in kept] == list(range(1, len(kept) + 1))


async def test_errors_are_the_same_typed_exceptions(served: Served) -> None:
    def scenario() -> None:
        with PromptLine(served.url, served.keys.carol) as client:
            with pytest.raises(NotFoundError) as caught:
                client.sessions.get("ses_nope")
            assert caught.value.hint

    await asyncio.to_thread(scenario)
    assert issubclass(RateLimitedError, Exception)
