"""Runs that continue a session: the history they start from, the messages they add to it,
the session's rules and tools reaching the tool calls, and a cancelled run that leaves the
session ready for the next one."""

from __future__ import annotations

import pytest
from runtime_support import (
    FakeModel,
    Gate,
    HarnessFactory,
    RecordingGate,
    add,
    calling,
    of_type,
    only,
    states,
    types,
)

from promptline.core.errors import NotFoundError
from promptline.core.messages import Message
from promptline.models.types import ModelRequest
from promptline.sessions import Principal
from promptline.tools.function import tool

ALICE = Principal(user_id="alice")
BOB = Principal(user_id="bob")


def add_then_answer(request: ModelRequest) -> Message | str:
    last = request.messages[-1]
    if last.role == "tool":
        return f"It is {last.text}."
    return calling("add", {"a": 1, "b": 2})


async def test_a_run_starts_from_the_session_history_and_adds_its_messages_to_it(
    make_session_runtime: HarnessFactory,
) -> None:
    model, gate = FakeModel(add_then_answer), RecordingGate()
    h = make_session_runtime(model, [add], gate=gate)
    assert h.sessions is not None
    session = await h.sessions.create(
        ALICE, channel="slack", context={"name": "Alice"}, permissions={"add": "allow"}
    )
    await h.sessions.append_message(session.id, Message(role="user", content="I am Alice"), ALICE)
    await h.sessions.append_message(
        session.id, Message(role="assistant", content="Hello Alice"), ALICE
    )

    run = await h.runtime.start_run("add 1 and 2", session_id=session.id, principal=ALICE)
    result = await run.result()

    assert result.ok
    assert result.text == "It is 3."
    assert result.session_id == session.id
    first = model.requests[0].messages
    assert [(m.role, m.text) for m in first[1:]] == [
        ("user", "I am Alice"),
        ("assistant", "Hello Alice"),
        ("user", "add 1 and 2"),
    ]
    assert "- name: Alice" in first[0].text  # the session's context is in the system prompt

    # The session's rules and identity reach the tool call.
    (scope,) = gate.scopes
    assert dict(scope.session_rules) == {"add": "allow"}
    assert (scope.session_id, scope.user_id, scope.tenant_id) == (session.id, "alice", "default")
    assert scope.run_id == run.id

    await h.sessions.refresh(session.id)
    stored = await h.sessions.get(session.id, ALICE)
    assert [(m.role, m.text) for m in stored.history] == [
        ("user", "I am Alice"),
        ("assistant", "Hello Alice"),
        ("user", "add 1 and 2"),
        ("assistant", ""),
        ("tool", "3"),
        ("assistant", "It is 3."),
    ]
    assert stored.history[3].tool_calls[0].name == "add"
    assert stored.message_count == 6

    events = await h.events(session.id)
    assert types(events)[:3] == ["session_created", "message_received", "message_sent"]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    mine = [e for e in events if e.run_id == run.id]
    assert all(e.session_id == session.id for e in mine)
    assert all((e.user_id, e.tenant_id) == ("alice", "default") for e in mine)
    assert {e.data.channel for e in of_type(mine, "message_sent")} == {"slack"}


async def test_the_session_tools_narrow_what_the_model_is_offered(
    make_session_runtime: HarnessFactory,
) -> None:
    @tool(name="shout", inline=True)
    def shout(text: str) -> str:
        """Say it loudly."""
        return text.upper()

    model = FakeModel(lambda request: ",".join(t.name for t in request.tools))
    h = make_session_runtime(model, [add, shout])
    assert h.sessions is not None
    narrow = await h.sessions.create(ALICE, channel="cli", tools=["add"])
    wide = await h.sessions.create(ALICE, channel="cli")

    assert (await h.runtime.run("?", session_id=narrow.id, principal=ALICE)).text == "add"
    assert (await h.runtime.run("?", session_id=wide.id, principal=ALICE)).text == "add,shout"


async def test_a_run_on_a_session_the_principal_cannot_see_is_refused_unrecorded(
    make_session_runtime: HarnessFactory,
) -> None:
    model = FakeModel()
    h = make_session_runtime(model)
    assert h.sessions is not None
    session = await h.sessions.create(ALICE, channel="cli")
    before = await h.store.count()

    with pytest.raises(NotFoundError):
        await h.runtime.start_run("let me in", session_id=session.id, principal=BOB)

    assert await h.store.count() == before
    assert model.requests == []
    assert not h.runtime.busy(session.id)


async def test_a_run_cancelled_during_a_tool_call_records_it_and_frees_the_session(
    make_session_runtime: HarnessFactory,
) -> None:
    def reply(request: ModelRequest) -> Message | str:
        if request.messages[-1].text == "wait":
            return calling("wait_here", call_id="call_wait")
        return "ready again"

    model, gate = FakeModel(reply), Gate()
    h = make_session_runtime(model, [gate.tool])
    assert h.sessions is not None
    session = await h.sessions.create(ALICE, channel="cli")
    run = await h.runtime.start_run("wait", session_id=session.id, principal=ALICE)
    await gate.entered.wait()
    assert h.runtime.busy(session.id)

    assert run.cancel("changed my mind")
    result = await run.result()

    assert result.status == "cancelled"
    assert not h.runtime.busy(session.id)
    assert h.runtime.active == []
    events = [e for e in await h.events(session.id) if e.run_id == run.id]
    tool_result = only(events, "tool_result").data.result
    assert tool_result.metadata["outcome"] == "cancelled"
    assert tool_result.call_id == "call_wait"
    cancelled = only(events, "run_cancelled").data
    assert (cancelled.reason, cancelled.cancelled_by) == ("changed my mind", "user")
    assert states(events)[-2:] == ["stopping", "stopped"]
    assert "run_completed" not in types(events)

    # The next run on the session works, and its model gets a well-formed conversation:
    # the cancelled call is answered (the fake model refuses it otherwise, as providers do).
    again = await h.runtime.run("hello again", session_id=session.id, principal=ALICE)
    assert again.ok, again.error
    assert again.text == "ready again"
    sent = model.requests[-1].messages
    answered = [m for m in sent if m.role == "tool"]
    assert [m.tool_call_id for m in answered] == ["call_wait"]
    assert answered[0].metadata == {"is_error": True}
    assert gate.calls == 1
