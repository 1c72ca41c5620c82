"""Live streams survive a lost connection: the client reconnects (with backoff) and resumes
from the last seq it received, so the events it delivers are exactly the stored stream, with
no duplicate and no gap. The connection is cut as a network failure would (a proxy between
client and gateway aborts both sockets), by the client itself, or by the gateway restarting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from client_support import GatewayProcess, Served, TcpProxy, stored
from gateway_support import make_keys

from promptline.app import build_app
from promptline.client import AsyncPromptLine, Subscription
from promptline.config.settings import Settings
from promptline.core.events import Event, PermissionRequestEvent

ENDINGS = ("run_completed", "run_failed", "run_cancelled")


async def read_until(
    events: AsyncIterator[Event], stop: str | type[Event], into: list[Event]
) -> list[Event]:
    """Append events to ``into`` up to the first of type ``stop`` (a name or a class)."""
    async with asyncio.timeout(20):
        async for event in events:
            into.append(event)
            if event.type == stop if isinstance(stop, str) else isinstance(event, stop):
                return into
    raise AssertionError(f"the stream ended before {stop}")


async def catch_up(subscription: Subscription, into: list[Event], last_seq: int) -> None:
    """Read on until the event of seq ``last_seq`` has arrived."""
    async with asyncio.timeout(20):
        while not into or into[-1].seq < last_seq:
            into.append(await subscription.next())


def assert_exactly(received: list[Event], expected: list[Event]) -> None:
    """``received`` holds the stored stream ``expected``, in order, none twice; besides it,
    only transient deltas (seq 0: live, never stored, so not replayed after a resume)."""
    ids = [e.id for e in received]
    assert len(set(ids)) == len(ids), "a duplicate was delivered"
    assert {e.type for e in received if not e.seq} <= {"llm_delta"}
    kept = [e.id for e in received if e.seq]
    assert kept == [e.id for e in expected], "the events differ from the stored stream"


async def approve_pending(client: AsyncPromptLine, session_id: str) -> None:
    (request,) = await client.approvals.list(session_id=session_id)
    await client.approvals.respond(request.request_id, approve=True)


async def test_a_subscription_resumes_after_the_network_cuts_it_mid_run(served: Served) -> None:
    key = served.keys.alice
    async with (
        TcpProxy(served.info.port) as proxy,
        AsyncPromptLine(proxy.url, key) as client,
        AsyncPromptLine(served.url, key) as direct,
    ):
        session = await direct.sessions.create()
        connection = await client.websocket()
        subscription = await connection.subscribe(session.id, from_seq=0)
        await connection.send(session.id, "write the note", model="scripted/writer")
        received = await read_until(subscription, PermissionRequestEvent, [])

        assert proxy.cut() >= 1
        # The run goes on while the client is away: it is approved, and ends.
        await approve_pending(direct, session.id)
        await read_until(subscription, "run_completed", received)
        everything = await stored(direct, session.id)
        await catch_up(subscription, received, everything[-1].seq)

    assert connection.reconnections >= 1
    assert_exactly(received, everything)


async def test_a_subscription_resumes_after_the_client_drops_its_socket(
    client: AsyncPromptLine,
) -> None:
    session = await client.sessions.create()
    connection = await client.websocket()
    subscription = await connection.subscribe(session.id, from_seq=0)
    await connection.send(session.id, "a streamed answer")
    received: list[Event] = []
    async with asyncio.timeout(20):
        while len(received) < 8:  # in the middle of the answer's deltas
            received.append(await subscription.next())

    await connection.drop()
    await read_until(subscription, "run_completed", received)
    everything = await stored(client, session.id)
    await catch_up(subscription, received, everything[-1].seq)

    assert connection.reconnections == 1
    assert_exactly(received, everything)


async def test_a_live_subscription_cut_before_its_first_event_misses_nothing(
    served: Served,
) -> None:
    key = served.keys.alice
    async with (
        TcpProxy(served.info.port) as proxy,
        AsyncPromptLine(proxy.url, key) as client,
        AsyncPromptLine(served.url, key) as direct,
    ):
        session = await direct.sessions.create()
        connection = await client.websocket()
        subscription = await connection.subscribe(session.id)  # from now on
        proxy.cut()
        started = await direct.sessions.send(session.id, "while you were away")
        received = await read_until(subscription, "run_completed", [])
        everything = await stored(direct, session.id)

    run_events = [e for e in everything if e.run_id == started.run_id]
    ours = [e for e in received if e.run_id == started.run_id]
    assert_exactly(ours, run_events[: len(ours)])
    assert ours[-1].type == "run_completed"
    assert connection.reconnections >= 1


async def test_a_streamed_message_cut_mid_run_is_read_on_from_the_log(served: Served) -> None:
    key = served.keys.alice
    async with (
        TcpProxy(served.info.port) as proxy,
        AsyncPromptLine(proxy.url, key) as client,
        AsyncPromptLine(served.url, key) as direct,
    ):
        session = await direct.sessions.create()
        stream = client.sessions.stream(session.id, "write the note", model="scripted/writer")
        received = await read_until(stream, PermissionRequestEvent, [])

        assert proxy.cut() >= 1
        await approve_pending(direct, session.id)
        await read_until(stream, "run_completed", received)
        everything = await stored(direct, session.id)

    assert proxy.accepted >= 2, "the stream was reopened"
    run_events = [e for e in everything if e.run_id == stream.run_id]
    ending = next(i for i, e in enumerate(run_events) if e.type in ENDINGS)
    first = run_events.index(next(e for e in run_events if e.id == received[0].id))
    assert_exactly(received, run_events[first : ending + 1])
    assert stream.output == "Done: note.txt is written."


async def test_a_session_tail_over_sse_resumes_with_the_last_event_id(served: Served) -> None:
    key = served.keys.alice
    async with (
        TcpProxy(served.info.port) as proxy,
        AsyncPromptLine(proxy.url, key) as client,
        AsyncPromptLine(served.url, key) as direct,
    ):
        session = await direct.sessions.create()
        await direct.sessions.send_and_wait(session.id, "before")
        tail = client.events.tail(session.id, from_seq=0)
        received: list[Event] = []
        async with asyncio.timeout(20):
            while len(received) < 6:
                received.append(await anext(tail))

        proxy.cut()
        await direct.sessions.send_and_wait(session.id, "after")
        everything = await stored(direct, session.id)
        async with asyncio.timeout(20):
            while received[-1].seq < everything[-1].seq:
                received.append(await anext(tail))
        await tail.aclose()  # type: ignore[attr-defined]

    assert proxy.accepted >= 2
    assert_exactly(received, everything)


async def test_a_subscription_survives_a_gateway_restart(
    settings: Settings, tmp_path: Path
) -> None:
    async with build_app(settings) as app:
        keys = await make_keys(app)
    async with GatewayProcess(tmp_path / "home") as gateway:
        client = AsyncPromptLine(gateway.url, keys.alice)
        try:
            session = await client.sessions.create()
            connection = await client.websocket()
            subscription = await connection.subscribe(session.id, from_seq=0)
            await client.sessions.send_and_wait(session.id, "before the restart")
            received = await read_until(subscription, "run_completed", [])

            # The gateway stops (closing the socket from its side) and comes back on the
            # same port; meanwhile the client tries again, with backoff.
            await gateway.restart()
            started = await client.sessions.send(session.id, "after the restart")
            async with asyncio.timeout(20):
                while not (received[-1].run_id == started.run_id and received[-1].type in ENDINGS):
                    received.append(await subscription.next())
            everything = await stored(client, session.id)
            await catch_up(subscription, received, everything[-1].seq)
        finally:
            await client.aclose()

    assert connection.reconnections >= 1
    assert_exactly(received, everything)
