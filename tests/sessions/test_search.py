"""Full-text search over message text: word matching, ranking, snippets and hostile queries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sessions_support import ALICE

from promptline.core.clock import ManualClock
from promptline.core.errors import InvalidInputError, NotFoundError
from promptline.core.messages import ImagePart, Message, TextPart
from promptline.sessions import Session, SessionManager


@pytest.fixture
async def chat(sessions: SessionManager) -> Session:
    session = await sessions.create(ALICE, channel="cli")
    for message in [
        Message(role="user", content="Please send the March invoice to accounting"),
        Message(role="assistant", content="The invoice for March is attached."),
        Message(role="user", content="Thanks! What about the weather tomorrow?"),
    ]:
        await sessions.append_message(session.id, message, ALICE)
    return session


async def test_a_word_finds_the_messages_that_hold_it(
    sessions: SessionManager, chat: Session
) -> None:
    hits = await sessions.search(ALICE, "weather")
    assert [(h.session_id, h.idx) for h in hits] == [(chat.id, 2)]
    assert hits[0].message.text == "Thanks! What about the weather tomorrow?"
    assert hits[0].snippet is not None
    assert "[weather]" in hits[0].snippet
    assert hits[0].rank is not None


async def test_every_word_must_match_in_any_order_and_case(
    sessions: SessionManager, chat: Session
) -> None:
    assert {h.idx for h in await sessions.search(ALICE, "INVOICE march")} == {0, 1}
    assert [h.idx for h in await sessions.search(ALICE, "accounting invoice")] == [0]
    assert await sessions.search(ALICE, "invoice weather") == []
    assert await sessions.search(ALICE, "nonexistentword") == []


async def test_query_syntax_characters_are_plain_text(
    sessions: SessionManager, chat: Session
) -> None:
    for query in [
        'invoice"',
        "invoice OR weather",
        "text:invoice",
        "invoice*",
        "NEAR(invoice march)",
        "-invoice",
        "(invoice",
        "invoice & march | !x",
        "'; DROP TABLE sessions; --",
    ]:
        hits = await sessions.search(ALICE, query)
        assert all("invoice" in h.message.text.lower() for h in hits), query
    assert (await sessions.get(chat.id, ALICE)).message_count == 3


async def test_limit_and_session_id_narrow_the_hits(
    sessions: SessionManager, chat: Session
) -> None:
    other = await sessions.create(ALICE, channel="cli")
    await sessions.append_message(other.id, Message(role="user", content="invoice again"), ALICE)
    assert len(await sessions.search(ALICE, "invoice")) == 3
    assert len(await sessions.search(ALICE, "invoice", limit=1)) == 1
    assert {h.session_id for h in await sessions.search(ALICE, "invoice", session_id=other.id)} == {
        other.id
    }


async def test_only_text_parts_are_searched(sessions: SessionManager) -> None:
    session = await sessions.create(ALICE, channel="cli")
    await sessions.append_message(
        session.id,
        Message(
            role="user",
            content=[TextPart(text="look at this"), ImagePart(url="https://x/zebra.png")],
        ),
        ALICE,
    )
    assert await sessions.search(ALICE, "zebra") == []
    assert [h.idx for h in await sessions.search(ALICE, "look")] == [0]


async def test_expired_sessions_stay_searchable(
    sessions: SessionManager, clock: ManualClock
) -> None:
    session = await sessions.create(ALICE, channel="cli", ttl=timedelta(seconds=1))
    await sessions.append_message(session.id, Message(role="user", content="archived"), ALICE)
    clock.advance(2)
    await sessions.expire_due()
    assert [h.session_id for h in await sessions.search(ALICE, "archived")] == [session.id]


@pytest.mark.parametrize("query", ["", "   ", "?!*", 42, "x" * 1001, " ".join(["w"] * 33)])
async def test_a_query_without_usable_words_is_refused(
    sessions: SessionManager, query: object
) -> None:
    with pytest.raises(InvalidInputError) as info:
        await sessions.search(ALICE, query)  # type: ignore[arg-type]
    assert info.value.hint
    assert info.value.details["field"] == "query"


async def test_searching_in_an_unknown_session_is_not_found(sessions: SessionManager) -> None:
    with pytest.raises(NotFoundError):
        await sessions.search(ALICE, "x", session_id="ses_missing")
