"""Runs record each prompt once: the system prompt and the tools by hash, the conversation by
reference to the session's events; replay, old logs and imported sessions keep working."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from runtime_support import FakeModel, HarnessFactory, add, calling

from promptline.core.events import LlmCommandEvent, encode_event
from promptline.core.messages import Message
from promptline.events.content import expand_prompts
from promptline.events.factory import create_event_store
from promptline.events.protocols import EventFilter
from promptline.models.types import ModelRequest
from promptline.runtime.replay import replay_run
from promptline.sessions import Principal
from promptline.storage.database import create_engine

ALICE = Principal(user_id="alice")


def adds_then_answers(request: ModelRequest) -> Message | str:
    """Calls ``add`` once per question, then answers with the result."""
    if request.messages[-1].role == "tool":
        return f"it is {request.messages[-1].text}"
    asked = sum(1 for m in request.messages if m.role == "user")
    return calling("add", {"a": asked, "b": 1}, call_id=f"call_{asked}")


async def content_rows(engine: Any) -> list[tuple[str, str]]:
    async with engine.connect() as conn:
        result = await conn.exec_driver_sql("SELECT kind, tenant_id FROM event_content")
        return sorted((str(kind), str(tenant)) for kind, tenant in result.all())


async def test_a_run_with_tools_over_several_turns_stores_its_system_prompt_and_tools_once(
    make_session_runtime: HarnessFactory,
) -> None:
    h = make_session_runtime(FakeModel(adds_then_answers), [add])
    assert h.sessions is not None
    sid = (await h.sessions.create(ALICE, channel="cli")).id
    runs = [await h.runtime.run(f"question {i}", session_id=sid, principal=ALICE) for i in range(4)]
    assert all(r.ok for r in runs)

    assert await content_rows(h.engine) == [("system", "default"), ("tools", "default")]
    stored = [e for e in await h.store.read_stream(sid) if isinstance(e, LlmCommandEvent)]
    assert len(stored) == 8  # two model calls a run
    # Every message of every prompt was in the log already: nothing is stored twice.
    assert all(c.data.compact and c.data.messages == [] for c in stored)
    assert len({(c.data.system_ref, c.data.tools_ref) for c in stored}) == 1
    expanded = await expand_prompts(h.store, stored)
    assert [len(c.data.messages) for c in expanded] == [2, 4, 6, 8, 10, 12, 14, 16]  # type: ignore[union-attr]
    for run in runs:
        report = await replay_run(h.store, run.run_id, agents=h.runtime.agents)
        assert report.divergences == []
        assert report.replayed_status == "completed"


async def test_a_log_written_before_prompts_were_stored_once_replays(
    make_runtime: HarnessFactory,
    tmp_path: Path,
    _migrated_template: Path,  # noqa: PT019 - its value: a migrated database to copy
) -> None:
    h = make_runtime(FakeModel(adds_then_answers), [add])
    recorded = await h.runtime.run("question")
    # The log as an older release wrote it: every command with its whole prompt inline.
    old = await expand_prompts(h.store, await h.store.read_all())
    path = tmp_path / "old.db"
    shutil.copyfile(_migrated_template, path)
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    async with engine.begin() as conn:
        await conn.exec_driver_sql(
            "INSERT INTO events (position, id, stream, seq, type, ts, tenant_id, user_id,"
            " session_id, run_id, body) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?)",
            [
                (
                    e.position,
                    e.id,
                    e.stream,
                    e.seq,
                    e.type,
                    e.tenant_id,
                    e.user_id,
                    e.session_id,
                    e.run_id,
                    encode_event(e.model_copy(update={"schema_version": 1})).decode(),
                )
                for e in old
            ],
        )
    store = create_event_store(engine)
    try:
        commands = await store.read_all(EventFilter(types=frozenset({"llm_command"})))
        assert commands
        assert not any(c.data.compact for c in commands if isinstance(c, LlmCommandEvent))
        report = await replay_run(store, recorded.run_id, agents=h.runtime.agents)
        assert report.divergences == []
        assert report.recorded_model_calls == 2
    finally:
        await store.close()
        await engine.dispose()


async def test_an_imported_session_goes_on_and_its_runs_replay(
    make_session_runtime: HarnessFactory,
) -> None:
    h = make_session_runtime(FakeModel(adds_then_answers), [add])
    assert h.sessions is not None
    sid = (await h.sessions.create(ALICE, channel="cli")).id
    await h.runtime.run("question 0", session_id=sid, principal=ALICE)
    document = await h.sessions.export(sid, ALICE)

    copy = await h.sessions.import_(document, ALICE, as_new_id=True)
    again = await h.runtime.run("question 1", session_id=copy.id, principal=ALICE)

    assert again.ok
    stored = [e for e in await h.store.read_stream(copy.id) if isinstance(e, LlmCommandEvent)]
    # The imported history is referred to in the copy's own stream, not the original's.
    assert all(c.data.messages == [] and c.stream == copy.id for c in stored)
    [first, _] = await expand_prompts(h.store, stored)
    assert [m.text for m in first.data.messages[1:]] == [  # type: ignore[union-attr]
        "question 0",
        "",
        "2",
        "it is 2",
        "question 1",
    ]
    report = await replay_run(h.store, again.run_id, agents=h.runtime.agents)
    assert report.divergences == []
