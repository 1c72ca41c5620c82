"""Messages through the client: started and left to run, waited for, or streamed (over SSE
and over the WebSocket) as events and as the answer's text."""

from __future__ import annotations

import pytest
from client_support import eventually

from promptline.client import AsyncPromptLine, Run, StartedRun
from promptline.core.events import LlmDeltaEvent, RunCompletedEvent

DEMO_ANSWER = "Hello from PromptLine's offline demo model!"


async def test_send_starts_a_run_and_returns_at_once(client: AsyncPromptLine) -> None:
    session = await client.sessions.create()

    started = await client.sessions.send(session.id, "hello")

    assert isinstance(started, StartedRun)
    assert started.session_id == session.id
    assert started.status == "started"

    async def ended() -> Run | None:
        run = await client.runs.get(started.run_id)
        return run if run.ended else None

    run = await eventually(ended, what="the run to end")
    assert run.status == "completed"
    assert run.input == "hello"


async def test_send_and_wait_returns_the_finished_run(client: AsyncPromptLine) -> None:
    session = await client.sessions.create()

    run = await client.sessions.send_and_wait(session.id, "hello there", timeout=30)

    assert run.status == "completed"
    assert run.ended
    assert run.output.startswith(DEMO_ANSWER)
    assert 'You said: "hello there"' in run.output
    assert run.session_id == session.id
    assert run.model_calls == 1
    assert run.usage.total_tokens == run.total_tokens > 0


@pytest.mark.parametrize("via", ["sse", "websocket"])
async def test_stream_yields_the_runs_events_until_it_ends(
    client: AsyncPromptLine, via: str
) -> None:
    session = await client.sessions.create()

    async with client.sessions.stream(session.id, "stream it", via=via) as run:  # type: ignore[arg-type]
        events = [event async for event in run]

    types = [e.type for e in events]
    assert types[-1] == "run_completed"
    assert "run_started" in types
    assert {e.run_id for e in events} == {run.run_id}
    seqs = [e.seq for e in events if e.seq]  # deltas are transient: seq 0, never stored
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    deltas = [e for e in events if isinstance(e, LlmDeltaEvent)]
    assert all(d.seq == 0 for d in deltas)
    assert len(deltas) > 3, "the answer came in pieces"
    assert isinstance(run.final, RunCompletedEvent)
    assert "".join(d.data.text or "" for d in deltas) == run.output
    stored = await client.runs.get(run.run_id or "")
    assert stored.output == run.output


@pytest.mark.parametrize("via", ["sse", "websocket"])
async def test_text_yields_the_answer_as_it_is_written(client: AsyncPromptLine, via: str) -> None:
    session = await client.sessions.create()

    pieces = [t async for t in client.sessions.stream(session.id, "piece by piece", via=via).text()]  # type: ignore[arg-type]

    assert len(pieces) > 3
    assert "".join(pieces).startswith(DEMO_ANSWER)
    assert 'You said: "piece by piece"' in "".join(pieces)


async def test_wait_reads_the_rest_and_returns_the_ending(client: AsyncPromptLine) -> None:
    session = await client.sessions.create()

    stream = client.sessions.stream(session.id, "just the end")
    final = await stream.wait()

    assert final.type == "run_completed"
    assert stream.output.startswith(DEMO_ANSWER)
