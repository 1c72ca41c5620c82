"""The object graph built from settings: every service wired to the same log."""

from __future__ import annotations

from pathlib import Path

from promptline.app import build_app
from promptline.config import load_settings
from promptline.core.messages import Message
from promptline.sessions.models import Principal


async def test_services_share_one_log_and_survive_a_restart(tmp_path: Path) -> None:
    settings = load_settings(None, environ={"PROMPTLINE_HOME": str(tmp_path)})
    alice = Principal(user_id="alice")
    async with build_app(settings) as app:
        session = await app.sessions.create(alice, channel="cli")
        await app.sessions.append_message(session.id, Message(role="user", content="hi"), alice)
        await app.state.set("session", "topic", "greetings", namespace=session.id)
        stream = await app.events.read_stream(session.id)
        assert [e.type for e in stream] == ["session_created", "message_received", "state_change"]
        assert [e.seq for e in stream] == [1, 2, 3]

    async with build_app(settings) as app:
        again = await app.sessions.get(session.id, alice)
        assert [m.text for m in again.history] == ["hi"]
        entry = await app.state.get("session", "topic", namespace=session.id)
        assert entry is not None
        assert entry.value == "greetings"
    assert (tmp_path / "state.db").exists()


async def test_model_calls_go_through_the_router_and_land_in_the_log(tmp_path: Path) -> None:
    from promptline.models.types import ModelRequest
    from promptline.models.usage import usage_report

    settings = load_settings(None, environ={"PROMPTLINE_HOME": str(tmp_path)})
    async with build_app(settings) as app:
        request = ModelRequest(
            model="scripted/demo", messages=[Message(role="user", content="hello")]
        )
        answer = await app.llm.complete(request)
        assert answer.message.text
        kinds = [e.type for e in await app.events.read_all()]
        assert kinds == ["llm_command", "llm_result"]
        report = await usage_report(app.events)
        assert report.total.calls == 1
        assert report.total.output_tokens == answer.usage.output_tokens


async def test_a_fresh_install_answers_with_the_offline_model(tmp_path: Path) -> None:
    settings = load_settings(None, environ={"PROMPTLINE_HOME": str(tmp_path)})
    async with build_app(settings) as app:
        runtime = await app.start_runtime()
        principal = Principal(user_id="alice")
        session = await app.sessions.create(principal, channel="http")
        result = await runtime.run("hello", session_id=session.id, principal=principal)

    assert result.ok
    assert "offline demo model" in result.text


async def test_many_runs_ending_at_once_all_complete_and_land_in_their_sessions(
    tmp_path: Path,
) -> None:
    import asyncio

    settings = load_settings(None, environ={"PROMPTLINE_HOME": str(tmp_path)})
    async with build_app(settings) as app:
        runtime = await app.start_runtime()
        principal = Principal(user_id="alice")
        sessions = [await app.sessions.create(principal, channel="http") for _ in range(40)]
        results = await asyncio.gather(
            *(
                runtime.run(f"hello {i}", session_id=s.id, principal=principal)
                for i, s in enumerate(sessions)
            )
        )
        counts = [(await app.sessions.get(s.id, principal)).message_count for s in sessions]

    assert [r.status for r in results] == ["completed"] * 40
    assert counts == [2] * 40


async def test_a_second_process_of_the_same_instance_leaves_the_unfinished_runs_alone(
    tmp_path: Path,
) -> None:
    from promptline.core.events import RunStarted, RunStartedEvent
    from promptline.runtime.records import load_run

    settings = load_settings(None, environ={"PROMPTLINE_HOME": str(tmp_path)})
    unfinished = RunStartedEvent(
        stream="run_left",
        run_id="run_left",
        data=RunStarted(agent="assistant", input=Message(role="user", content="hi")),
    )
    async with build_app(settings) as gateway:
        await gateway.bus.publish(unfinished)
        runtime = await gateway.start_runtime()  # it holds the instance's lease...
        record = await runtime.wait("run_left")  # ...and finishes what was left
        assert record.status == "completed"

        await gateway.bus.publish(
            unfinished.model_copy(update={"id": "evt_other", "run_id": "run_other"})
        )
        # A CLI command beside it, under the same instance name, must not run it too.
        async with build_app(settings) as beside:
            other = await beside.start_runtime()
            assert other.active == []
            assert (await load_run(beside.events, "run_other")).status == "running"
