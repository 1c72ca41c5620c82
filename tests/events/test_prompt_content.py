"""A prompt is stored once: every store keeps an ``llm_command`` compact, and expanding it gives
back exactly the prompt the model was sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from promptline.core.errors import ConflictError, StorageError
from promptline.core.events import (
    COMPACT_COMMAND_VERSION,
    Event,
    LlmCommand,
    LlmCommandEvent,
    MessageReceived,
    MessageReceivedEvent,
    MessageSent,
    MessageSentEvent,
    encode_event,
)
from promptline.core.messages import Message, ToolCall
from promptline.events.content import expand_prompt, expand_prompts
from promptline.events.factory import create_event_store
from promptline.events.memory import InMemoryEventStore
from promptline.events.protocols import EventStore
from promptline.storage.database import create_engine
from promptline.storage.migrate import upgrade

SID = "ses_prompts"
SYSTEM = Message(role="system", content="You are terse.")
TOOLS = [
    {"name": "add", "description": "Add two numbers.", "parameters": {"type": "object"}},
    {"name": "now", "description": "The time.", "parameters": {"type": "object"}},
]


@pytest.fixture(params=["sqlite", "postgres", "memory"])
def url(request: pytest.FixtureRequest) -> str:
    """Each store's database: SQLite, PostgreSQL (migrated fresh), none (in memory)."""
    if request.param == "memory":
        return ""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
async def store(url: str) -> AsyncIterator[EventStore]:
    if not url:
        yield InMemoryEventStore()
        return
    engine = create_engine(url)
    store = create_event_store(engine)
    try:
        yield store
    finally:
        await store.close()
        await engine.dispose()


async def content_rows(store: EventStore) -> int:
    """How many content parts the store holds."""
    if isinstance(store, InMemoryEventStore):
        return len(store._content)
    rows = await store._fetch("SELECT count(*) FROM event_content", [])  # type: ignore[attr-defined]
    return int(rows[0][0])


def command(messages: list[Message], *, tenant: str = "acme", tools: Any = None) -> LlmCommandEvent:
    return LlmCommandEvent(
        session_id=SID,
        tenant_id=tenant,
        data=LlmCommand(
            model="script/m",
            messages=messages,
            tools=TOOLS if tools is None else tools,
            params={"temperature": 0.1},
        ),
    )


def received(message: Message, tenant: str = "acme") -> MessageReceivedEvent:
    return MessageReceivedEvent(
        session_id=SID, tenant_id=tenant, data=MessageReceived(message=message)
    )


def sent(message: Message, tenant: str = "acme") -> MessageSentEvent:
    return MessageSentEvent(session_id=SID, tenant_id=tenant, data=MessageSent(message=message))


async def conversation(store: EventStore, turns: int) -> list[LlmCommandEvent]:
    """Turns of a run with a tool call, written as a run writes them (results go out with the
    next command, in one batch); returns the commands as the model wrapper made them."""
    history: list[Message] = []
    made: list[LlmCommandEvent] = []
    for turn in range(turns):
        user = Message(role="user", content=f"question {turn}")
        first = command([SYSTEM, *history, user])
        await store.append_batch([received(user), first])
        history.append(user)
        call = ToolCall(id=f"call_{turn}", name="add", arguments={"a": turn, "b": 1})
        asking = Message(role="assistant", tool_calls=[call])
        result = Message(role="tool", content=str(turn + 1), tool_call_id=call.id, name="add")
        history += [asking, result]
        # A message the log does not hold (a note put in by the caller) stays inline.
        note = Message(role="user", content=f"note {turn}")
        second = command([SYSTEM, *history, note])
        await store.append_batch([sent(asking), sent(result), second])
        answer = Message(role="assistant", content=f"answer {turn}")
        await store.append(sent(answer))
        history.append(answer)
        made += [first, second]
    return made


def stored_commands(events: list[Event]) -> list[LlmCommandEvent]:
    return [e for e in events if isinstance(e, LlmCommandEvent)]


async def test_a_command_is_stored_compact_and_expands_to_the_prompt_the_model_was_sent(
    store: EventStore,
) -> None:
    made = await conversation(store, 3)

    stored = stored_commands(await store.read_stream(SID))
    assert len(stored) == len(made)
    for original, compact in zip(made, stored, strict=True):
        assert compact.schema_version == COMPACT_COMMAND_VERSION
        assert compact.data.compact
        assert compact.data.tools == []
        assert [m.text for m in compact.data.messages] in ([], [original.data.messages[-1].text])
        assert compact.data.prompt_size == (len(original.data.messages), len(TOOLS))
        expanded = await expand_prompt(store, compact)
        assert isinstance(expanded, LlmCommandEvent)
        assert expanded.data.messages == original.data.messages
        assert expanded.data.tools == original.data.tools
        assert expanded.data.params == original.data.params
        assert (expanded.id, expanded.seq) == (compact.id, compact.seq)


async def test_the_system_prompt_and_the_tool_list_are_stored_once(store: EventStore) -> None:
    await conversation(store, 4)

    assert await content_rows(store) == 2  # one system prompt, one tool list, for 8 commands
    stored = stored_commands(await store.read_stream(SID))
    assert len({c.data.system_ref for c in stored}) == 1
    assert len({c.data.tools_ref for c in stored}) == 1


async def test_a_system_message_of_a_new_run_is_the_same_content(store: EventStore) -> None:
    # Each run renders its system prompt as a new message (a new id and time): same content.
    again = Message(role="system", content=SYSTEM.text)
    user = Message(role="user", content="hi")
    first, second = command([SYSTEM, user]), command([again, user])
    await store.append_batch([received(user), first])
    await store.append(second)

    compact = stored_commands(await store.read_stream(SID))
    assert compact[0].data.system_ref == compact[1].data.system_ref
    expanded = await expand_prompts(store, compact)
    assert [e.data.messages[0] for e in expanded] == [SYSTEM, again]  # type: ignore[union-attr]


async def test_content_is_kept_per_tenant_and_never_read_across(store: EventStore) -> None:
    user = Message(role="user", content="hi")
    await store.append_batch([received(user), command([SYSTEM, user])])
    other = command([SYSTEM], tenant="globex", tools=[{"name": "secret", "parameters": {}}])
    await store.append(other.model_copy(update={"session_id": "ses_other"}))

    assert await content_rows(store) == 4  # the same system prompt is a row of each tenant
    [acme] = stored_commands(await store.read_stream(SID))
    [globex] = stored_commands(await store.read_stream("ses_other"))
    reader: Any = store
    assert globex.data.tools_ref is not None
    assert await reader.read_content("acme", [globex.data.tools_ref]) == {}
    assert await reader.read_content("globex", [globex.data.tools_ref]) != {}
    # A command claiming another tenant cannot reach the content of its hashes.
    forged = globex.model_copy(update={"tenant_id": "acme"})
    with pytest.raises(StorageError, match="does not hold"):
        await expand_prompt(store, forged)
    assert (await expand_prompt(store, acme)).data.tools == TOOLS  # type: ignore[union-attr]


async def test_a_failed_append_leaves_nothing_a_later_command_could_refer_to(
    store: EventStore,
) -> None:
    first = Message(role="user", content="first")
    await store.append_batch([received(first), command([SYSTEM, first])])
    lost = Message(role="user", content="never stored")
    with pytest.raises(ConflictError):
        await store.append_batch(
            [received(lost), command([SYSTEM, first, lost])], expected_seqs={SID: 99}
        )
    kept = Message(role="user", content="stored instead")
    last = command([SYSTEM, first, kept])
    await store.append_batch([received(kept), last])

    stored = stored_commands(await store.read_stream(SID))[-1]
    expanded = await expand_prompt(store, stored)
    assert expanded.data.messages == last.data.messages  # type: ignore[union-attr]


async def test_messages_another_writer_added_are_never_covered_by_a_range(
    sqlite_url: str,
) -> None:
    # Two stores on one file, as two processes: the first does not know what the second
    # wrote, so it refers to nothing across it.
    engine = create_engine(sqlite_url)
    mine, theirs = create_event_store(engine), create_event_store(engine)
    try:
        one = Message(role="user", content="one")
        await mine.append_batch([received(one), command([SYSTEM, one])])
        two = Message(role="user", content="two")
        await theirs.append(received(two))
        three = Message(role="user", content="three")
        last = command([SYSTEM, one, two, three])
        await mine.append_batch([received(three), last])

        stored = stored_commands(await mine.read_stream(SID))[-1]
        assert (await expand_prompt(mine, stored)).data.messages == last.data.messages  # type: ignore[union-attr]
        assert stored.data.layout is not None
        assert 0 in stored.data.layout  # what it could not vouch for is inline
    finally:
        await mine.close()
        await theirs.close()
        await engine.dispose()


async def test_an_old_command_with_its_prompt_inline_reads_and_expands_as_it_is(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    await upgrade(engine)
    old = command([SYSTEM, Message(role="user", content="hi")]).model_copy(
        update={"stream": SID, "seq": 1, "position": 1}
    )
    raw = orjson.loads(encode_event(old))  # as an older release wrote it: no compact fields
    for name in ("system_ref", "system_stamps", "tools_ref", "layout", "message_count"):
        del raw["data"][name]
    del raw["data"]["tool_count"]
    body = orjson.dumps(raw).decode()
    async with engine.begin() as conn:
        await conn.exec_driver_sql(
            "INSERT INTO events (position, id, stream, seq, type, ts, tenant_id, user_id,"
            " session_id, run_id, body) VALUES (1, ?, ?, 1, 'llm_command', 0, 'acme', NULL, ?,"
            " NULL, ?)",
            (old.id, SID, SID, body),
        )
    store = create_event_store(engine)
    try:
        [read] = await store.read_stream(SID)
        assert isinstance(read, LlmCommandEvent)
        assert not read.data.compact
        assert read.data.prompt_size == (2, 2)
        assert await expand_prompt(store, read) == read
    finally:
        await store.close()
        await engine.dispose()


async def test_expanding_needs_a_store_that_keeps_content() -> None:
    compact = command([SYSTEM]).model_copy(
        update={"data": LlmCommand(model="m", system_ref="0" * 64, layout=[])}
    )
    with pytest.raises(StorageError, match="cannot expand"):
        await expand_prompts(object(), [compact])
    other = received(SYSTEM)
    assert await expand_prompts(object(), [other]) == [other]  # nothing to expand: as it is
