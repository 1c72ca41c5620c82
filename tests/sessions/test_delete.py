"""Deleting a session: the log keeps it (a ``session_expired`` with reason ``deleted``), every
read hides it, nothing writes to it, and a rebuild from the log agrees."""

from __future__ import annotations

import pytest
from sessions_support import ACME_ADMIN, ALICE, BOB, Stack

from promptline.core.errors import NotFoundError
from promptline.core.events import SessionExpiredEvent
from promptline.core.messages import Message
from promptline.events.replay import replay
from promptline.sessions import SessionManager
from promptline.sessions.projection import SessionProjection


async def test_a_deleted_session_is_hidden_from_every_read_and_refuses_writes(
    sessions: SessionManager, stack: Stack
) -> None:
    session = await sessions.create(ALICE, channel="cli")
    kept = await sessions.create(ALICE, channel="cli")
    await sessions.append_message(session.id, Message(role="user", content="delete me"), ALICE)

    await sessions.delete(session.id, ALICE)

    for who in (ALICE, ACME_ADMIN):
        with pytest.raises(NotFoundError):
            await sessions.get(session.id, who)
        assert [s.id for s in await sessions.list(who)] == [kept.id]
    with pytest.raises(NotFoundError):
        await sessions.export(session.id, ALICE)
    assert await sessions.search(ALICE, "delete") == []
    with pytest.raises(NotFoundError):
        await sessions.append_message(session.id, Message(role="user", content="x"), ALICE)
    with pytest.raises(NotFoundError):
        await sessions.delete(session.id, ALICE)
    [last] = (await stack.store.read_stream(session.id))[-1:]
    assert isinstance(last, SessionExpiredEvent)
    assert last.data.reason == "deleted"


async def test_only_who_may_see_a_session_may_delete_it(sessions: SessionManager) -> None:
    session = await sessions.create(ALICE, channel="cli")

    with pytest.raises(NotFoundError):
        await sessions.delete(session.id, BOB)

    assert (await sessions.get(session.id, ALICE)).status == "active"


async def test_a_rebuild_from_the_log_finds_the_session_deleted(
    sessions: SessionManager, stack: Stack
) -> None:
    session = await sessions.create(ALICE, channel="cli")
    await sessions.delete(session.id, ALICE)

    projection = SessionProjection()
    await replay(stack.store, projection, stream=session.id)
    await sessions.recover(full=True)

    assert projection.session(session.id).status == "deleted"
    with pytest.raises(NotFoundError):
        await sessions.get(session.id, ALICE)
