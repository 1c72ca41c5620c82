"""Numbers in a session's JSON come back exactly as given, or are refused by name: integers
must fit in 64 bits, signed; floats must be finite. Nothing is stored for a refusal."""

from __future__ import annotations

from typing import Any

import pytest
from sessions_support import ALICE, Stack

from promptline.core.errors import InvalidInputError
from promptline.core.messages import Message, ToolCall
from promptline.sessions import SessionManager

TOO_BIG = [
    pytest.param(2**64, id="2**64"),
    pytest.param(2**63, id="2**63"),
    pytest.param(-(2**63) - 1, id="-(2**63)-1"),
    pytest.param(10**30, id="10**30"),
    pytest.param(-(10**5000), id="-(10**5000)"),  # too long even to print
]
EDGES = {"max": 2**63 - 1, "min": -(2**63), "zero": 0, "big_float": 1e308, "tiny": 5e-324}


def _refused_for_size(info: pytest.ExceptionInfo[InvalidInputError], field: str) -> None:
    error = info.value
    assert error.details["field"] == field
    assert field in error.message
    assert "64-bit" in error.message
    assert error.hint is not None
    assert "64 bits, signed" in error.hint
    assert "as strings" in error.hint


@pytest.mark.parametrize("number", TOO_BIG)
async def test_create_refuses_an_integer_beyond_64_bits_naming_its_path(
    stack: Stack, number: int
) -> None:
    sessions = stack.manager
    for kwargs, field in (
        ({"context": {"n": number}}, "context.n"),
        ({"metadata": {"deep": [{"n": number}]}}, "metadata.deep.0.n"),
        ({"tools": [{"name": "shell", "config": {"n": number}}]}, "tools.0.config.n"),
    ):
        with pytest.raises(InvalidInputError) as info:
            await sessions.create(ALICE, channel="cli", **kwargs)
        _refused_for_size(info, field)
    assert await sessions.list(ALICE) == []
    assert await stack.store.count() == 0


@pytest.mark.parametrize("number", TOO_BIG)
async def test_update_refuses_an_integer_beyond_64_bits_and_keeps_the_stored_values(
    sessions: SessionManager, number: int
) -> None:
    session = await sessions.create(ALICE, channel="cli", context={"n": 1}, metadata={"m": 2})

    with pytest.raises(InvalidInputError) as info:
        await sessions.update(session.id, ALICE, context={"n": number})
    _refused_for_size(info, "context.n")
    with pytest.raises(InvalidInputError) as info:
        await sessions.update(session.id, ALICE, metadata={"m": [number]})
    _refused_for_size(info, "metadata.m.0")

    got = await sessions.get(session.id, ALICE)
    assert (got.context, got.metadata, got.last_seq) == ({"n": 1}, {"m": 2}, 1)


@pytest.mark.parametrize("number", TOO_BIG)
async def test_import_refuses_an_integer_beyond_64_bits_and_stores_nothing(
    stack: Stack, number: int
) -> None:
    sessions = stack.manager
    session = await sessions.create(ALICE, channel="cli", session_id="ses_source")
    document = await sessions.export(session.id, ALICE)
    before = await stack.store.count()

    document["session"]["context"] = {"n": number}
    with pytest.raises(InvalidInputError) as info:
        await sessions.import_(document, ALICE, as_new_id=True)
    _refused_for_size(info, "session.context.n")

    assert [s.id for s in await sessions.list(ALICE)] == [session.id]
    assert await stack.store.count() == before


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (Message(role="user", content="x", metadata={"n": 2**64}), "message.metadata.n"),
        (
            Message(
                role="assistant",
                content="",
                tool_calls=[ToolCall(name="calc", arguments={"x": [-(2**63) - 1]})],
            ),
            "message.tool_calls.0.arguments.x.0",
        ),
    ],
)
async def test_a_message_holding_an_integer_beyond_64_bits_is_refused(
    sessions: SessionManager, message: Message, field: str
) -> None:
    session = await sessions.create(ALICE, channel="cli")

    with pytest.raises(InvalidInputError) as info:
        await sessions.append_message(session.id, message, ALICE)
    _refused_for_size(info, field)

    assert (await sessions.get(session.id, ALICE)).history == []


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
async def test_a_message_holding_a_non_finite_float_is_refused_not_turned_into_null(
    sessions: SessionManager, number: float
) -> None:
    session = await sessions.create(ALICE, channel="cli")
    message = Message(role="user", content="x", metadata={"f": number})

    with pytest.raises(InvalidInputError) as info:
        await sessions.append_message(session.id, message, ALICE)

    assert info.value.details["field"] == "message.metadata.f"
    assert (await sessions.get(session.id, ALICE)).history == []


async def test_the_64_bit_edges_and_extreme_floats_round_trip_exactly(
    sessions: SessionManager,
) -> None:
    values: dict[str, Any] = {**EDGES, "list": list(EDGES.values())}
    session = await sessions.create(ALICE, channel="cli", context=values, metadata=values)
    message = Message(role="user", content="x", metadata=values)
    await sessions.append_message(session.id, message, ALICE)
    updated = await sessions.update(session.id, ALICE, metadata={"again": values})

    got = await sessions.get(session.id, ALICE)
    copy = await sessions.import_(await sessions.export(session.id, ALICE), ALICE, as_new_id=True)

    for found in (got.context, got.history[0].metadata, copy.context, copy.history[0].metadata):
        assert found == values
        assert [type(v) for v in found.values()] == [type(v) for v in values.values()]
    assert updated.metadata == {"again": values}
