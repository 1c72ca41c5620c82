"""Runs and approvals through the client: list and read runs; cancel, pause and resume them;
list the permission requests waiting and answer them."""

from __future__ import annotations

from client_support import Served, eventually

from promptline.client import Approval, AsyncPromptLine, NotFoundError, Run, RunStream
from promptline.core.events import PermissionRequestEvent


async def waiting_for_approval(client: AsyncPromptLine, session_id: str) -> RunStream:
    """A run of ``scripted/writer`` streamed until it asks to write its file."""
    stream = client.sessions.stream(session_id, "write the note", model="scripted/writer")
    async for event in stream:
        if isinstance(event, PermissionRequestEvent):
            return stream
    raise AssertionError("the run ended without asking for an approval")


async def test_runs_are_listed_and_read(client: AsyncPromptLine) -> None:
    session = await client.sessions.create()
    first = await client.sessions.send_and_wait(session.id, "one")
    second = await client.sessions.send_and_wait(session.id, "two")
    elsewhere = await client.sessions.create()
    await client.sessions.send_and_wait(elsewhere.id, "three")

    page = await client.runs.list(session_id=session.id)
    one = await client.runs.get(first.run_id)

    assert [r.run_id for r in page.items] == [second.run_id, first.run_id]
    assert all(isinstance(r, Run) for r in page.items)
    assert one.input == "one"
    assert one.status == "completed"


async def test_a_pending_approval_is_listed_and_answered(client: AsyncPromptLine) -> None:
    session = await client.sessions.create()
    stream = await waiting_for_approval(client, session.id)

    pending = await client.approvals.list(session_id=session.id)
    assert [type(a) for a in pending] == [Approval]
    request = pending[0]
    assert request.tool == "file_write"
    assert request.arguments == {"path": "note.txt", "content": "written once approved"}
    assert request.run_id == stream.run_id

    outcome = await client.approvals.respond(request.request_id, approve=True, reason="fine")
    final = await stream.wait()

    assert outcome.approved is True
    assert outcome.scope == "once"
    assert outcome.decided_by == "alice"
    assert final.type == "run_completed"
    assert stream.output == "Done: note.txt is written."
    assert await client.approvals.list(session_id=session.id) == []


async def test_a_refusal_reaches_the_run(client: AsyncPromptLine) -> None:
    session = await client.sessions.create()
    stream = await waiting_for_approval(client, session.id)
    (request,) = await client.approvals.list()

    outcome = await client.approvals.respond(request.request_id, approve=False, reason="no")
    await stream.wait()

    assert outcome.approved is False
    run = await client.runs.get(stream.run_id or "")
    assert run.ended


async def test_cancel_ends_a_waiting_run(client: AsyncPromptLine) -> None:
    session = await client.sessions.create()
    stream = await waiting_for_approval(client, session.id)

    await stream.cancel()
    final = await stream.wait()

    assert final.type == "run_cancelled"
    run = await client.runs.get(stream.run_id or "")
    assert run.status == "cancelled"
    assert run.cancelled_by == "alice"


async def test_pause_and_resume_a_run(client: AsyncPromptLine) -> None:
    session = await client.sessions.create()
    stream = await waiting_for_approval(client, session.id)
    run_id = stream.run_id or ""

    paused = await client.runs.pause(run_id)
    resumed = await client.runs.resume(run_id)
    active = await client.runs.list(active=True)

    assert (paused.run_id, paused.status) == (run_id, "paused")
    assert (resumed.run_id, resumed.status) == (run_id, "running")
    assert run_id in [r.run_id for r in active.items]
    cancelled = await client.runs.cancel(run_id)
    assert cancelled.status == "cancelled"
    await stream.aclose()


async def test_another_tenant_cannot_see_or_control_a_run(served: Served) -> None:
    async with (
        AsyncPromptLine(served.url, served.keys.alice) as alice,
        AsyncPromptLine(served.url, served.keys.carol) as carol,
    ):
        session = await alice.sessions.create()
        stream = await waiting_for_approval(alice, session.id)
        run_id = stream.run_id or ""
        (request,) = await alice.approvals.list()

        for attempt in (
            carol.runs.get(run_id),
            carol.runs.cancel(run_id),
            carol.approvals.respond(request.request_id, approve=True),
        ):
            try:
                await attempt
            except NotFoundError:
                continue
            raise AssertionError("another tenant reached the run")

        assert await carol.approvals.list() == []
        await alice.runs.cancel(run_id)

        async def gone() -> bool:
            return (await alice.runs.get(run_id)).ended

        await eventually(gone, what="the run to end")
        await stream.aclose()
