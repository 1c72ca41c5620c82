"""Questions (an MCP server's elicitation) in the approval broker: asked and recorded like
approvals, answered with content checked against their schema (which the log does not keep),
answered only where they were asked, withdrawn when their call goes away even while the
process stops, and timed like approvals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from security_support import STUCK, next_event, next_request, scope

from promptline.core.clock import ManualClock
from promptline.core.errors import ConflictError, InvalidInputError
from promptline.core.events import PermissionGrantedEvent
from promptline.events.bus import BusSubscription, InProcessEventBus
from promptline.events.protocols import EventFilter, EventStore
from promptline.security.approvals import (
    CANCELLED,
    TIMEOUT,
    ApprovalBroker,
    ApprovalOutcome,
    is_question,
)

QUESTION = "mcp.docs:elicitation"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "email": {"type": "string", "format": "email"},
        "colour": {"type": "string", "enum": ["red", "blue"]},
    },
    "required": ["name"],
}


@pytest.fixture
async def broker(
    bus: InProcessEventBus, store: EventStore, clock: ManualClock
) -> AsyncIterator[ApprovalBroker]:
    b = ApprovalBroker(bus, store, timeout=60, clock=clock)
    try:
        yield b
    finally:
        await b.close()


def ask(
    broker: ApprovalBroker, schema: dict[str, Any] | None = SCHEMA
) -> asyncio.Task[ApprovalOutcome]:
    arguments = {"message": "Who are you?", "requested_schema": schema}
    return asyncio.create_task(
        broker.ask(QUESTION, arguments, scope(), "MCP server 'docs' asks", schema=schema)
    )


async def test_a_question_is_recorded_like_an_approval_and_its_answer_carries_the_content(
    broker: ApprovalBroker, requests: BusSubscription, decisions: BusSubscription
) -> None:
    task = ask(broker)
    request = await next_request(requests)

    outcome = await broker.respond(
        request.data.request_id,
        approve=True,
        decided_by="alice",
        content={"name": "Ann", "age": 30, "colour": "red"},
    )

    assert (request.data.tool, request.session_id) == (QUESTION, "s1")
    assert request.data.arguments["message"] == "Who are you?"
    assert outcome.content == {"name": "Ann", "age": 30, "colour": "red"}
    waited = await asyncio.wait_for(task, STUCK)
    assert (waited.approved, waited.content) == (True, {"name": "Ann", "age": 30, "colour": "red"})
    granted = await next_event(decisions)
    assert isinstance(granted, PermissionGrantedEvent)
    assert granted.data.decided_by == "alice"
    assert "Ann" not in granted.model_dump_json()  # the log keeps that it was answered


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ({"age": 3}, "'name' is a required property"),
        ({"name": "Ann", "age": "three"}, "age: 'three' is not of type 'integer'"),
        ({"name": "Ann", "age": -1}, "age: -1 is less than the minimum of 0"),
        ({"name": "Ann", "email": "not an address"}, "email: 'not an address' is not a 'email'"),
        ({"name": "Ann", "colour": "green"}, "colour: 'green' is not one of ['red', 'blue']"),
        ({"name": {"first": "Ann"}}, "name: must be text, a number, true/false, null or a list"),
    ],
)
async def test_content_that_does_not_match_the_schema_is_refused_and_the_question_stays_open(
    broker: ApprovalBroker,
    requests: BusSubscription,
    content: dict[str, Any],
    problem: str,
) -> None:
    task = ask(broker)
    request_id = (await next_request(requests)).data.request_id

    with pytest.raises(InvalidInputError) as refused:
        await broker.respond(request_id, approve=True, content=content)

    assert problem in refused.value.message
    assert refused.value.details["field"] == "content"
    assert (await broker.get(request_id)).status == "pending"
    await broker.respond(request_id, approve=True, content={"name": "Ann"})
    assert (await asyncio.wait_for(task, STUCK)).content == {"name": "Ann"}


async def test_a_question_is_answered_once_without_content_when_refused(
    broker: ApprovalBroker, requests: BusSubscription
) -> None:
    task = ask(broker)
    request_id = (await next_request(requests)).data.request_id

    with pytest.raises(InvalidInputError, match="scope is once"):
        await broker.respond(request_id, approve=True, scope="session", content={"name": "A"})
    with pytest.raises(InvalidInputError, match="carries no content"):
        await broker.respond(request_id, approve=False, content={"name": "A"})
    outcome = await broker.respond(request_id, approve=False, decided_by="alice")

    assert (outcome.approved, outcome.content, outcome.decided_by) == (False, None, "alice")
    assert (await asyncio.wait_for(task, STUCK)).approved is False


async def test_a_question_without_a_schema_takes_a_yes_without_content(
    broker: ApprovalBroker, requests: BusSubscription
) -> None:
    task = ask(broker, schema=None)
    request_id = (await next_request(requests)).data.request_id

    with pytest.raises(InvalidInputError, match="takes no content"):
        await broker.respond(request_id, approve=True, content={"ok": True})
    await broker.respond(request_id, approve=True)

    assert (await asyncio.wait_for(task, STUCK)).content is None


async def test_an_approval_takes_no_content(
    broker: ApprovalBroker, requests: BusSubscription
) -> None:
    task = asyncio.create_task(broker.request("file_write", {}, scope(), None))
    request_id = (await next_request(requests)).data.request_id

    with pytest.raises(InvalidInputError, match="it takes no content"):
        await broker.respond(request_id, approve=True, content={"x": 1})
    await broker.respond(request_id, approve=True)

    assert (await asyncio.wait_for(task, STUCK)).approved


async def test_a_question_asked_by_another_broker_is_not_answered_here(
    broker: ApprovalBroker,
    requests: BusSubscription,
    bus: InProcessEventBus,
    store: EventStore,
    clock: ManualClock,
) -> None:
    task = ask(broker)
    request_id = (await next_request(requests)).data.request_id
    elsewhere = ApprovalBroker(bus, store, timeout=60, clock=clock)
    try:
        assert [r.request_id for r in await elsewhere.pending()] == [request_id]
        with pytest.raises(ConflictError, match="asked by another PromptLine process"):
            await elsewhere.respond(request_id, approve=False)
    finally:
        await elsewhere.close()
    assert (await broker.get(request_id)).status == "pending"
    await broker.respond(request_id, approve=True, content={"name": "Ann"})
    assert (await asyncio.wait_for(task, STUCK)).approved


async def test_a_question_whose_call_is_cancelled_is_withdrawn_even_while_stopping(
    broker: ApprovalBroker, requests: BusSubscription
) -> None:
    question = ask(broker)
    question_id = (await next_request(requests)).data.request_id
    approval = asyncio.create_task(broker.request("file_write", {}, scope(), None))
    approval_id = (await next_request(requests)).data.request_id

    assert broker.keep_pending() == ["run1", "run1"]
    question.cancel()
    approval.cancel()
    for task in (question, approval):
        with pytest.raises(asyncio.CancelledError):
            await task

    withdrawn = (await broker.get(question_id)).outcome
    assert withdrawn is not None
    assert withdrawn.decided_by == CANCELLED
    assert (await broker.get(approval_id)).status == "pending"  # kept for after the restart


async def test_an_unanswered_question_times_out_as_an_approval_does(
    broker: ApprovalBroker, requests: BusSubscription, clock: ManualClock
) -> None:
    task = ask(broker)
    await next_request(requests)

    clock.advance(61)
    [expired] = await broker.expire_due()

    assert expired.decided_by == TIMEOUT
    assert (await asyncio.wait_for(task, STUCK)).approved is False


async def test_only_a_question_can_be_asked_and_only_with_a_json_schema_of_an_object(
    broker: ApprovalBroker, store: EventStore
) -> None:
    with pytest.raises(InvalidInputError, match="not the name of a question"):
        await broker.ask("file_write", {}, scope(), None, schema=SCHEMA)
    with pytest.raises(InvalidInputError, match="not a valid JSON schema"):
        await broker.ask(QUESTION, {}, scope(), None, schema={"type": "object", "required": 3})
    with pytest.raises(InvalidInputError, match="must describe an object"):
        await broker.ask(QUESTION, {}, scope(), None, schema={"type": "string"})

    assert is_question(QUESTION)
    assert not is_question("mcp.docs.elicitation")  # a tool of that name is a tool
    recorded = await store.read_all(EventFilter(types=frozenset({"permission_request"})))
    assert recorded == []
