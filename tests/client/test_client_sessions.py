"""The client's sessions against a real gateway: create, list, page, read, delete, export,
import and search."""

from __future__ import annotations

import pytest
from client_support import Served

from promptline.client import AsyncPromptLine, NotFoundError, Page, PermissionDeniedError, Session


async def test_create_get_and_list_sessions(client: AsyncPromptLine) -> None:
    made = await client.sessions.create(context={"topic": "tests"}, metadata={"origin": "x"})
    other = await client.sessions.create(channel="mobile")

    read = await client.sessions.get(made.id)
    page = await client.sessions.list()
    mobile = await client.sessions.list(channel="mobile")

    assert isinstance(made, Session)
    assert made.user_id == "alice"
    assert made.tenant_id == "acme"
    assert made.channel == "http"
    assert made.context == {"topic": "tests"}
    assert read.id == made.id
    assert read.history == []
    assert isinstance(page, Page)
    assert [s.id for s in page.items] == [other.id, made.id]
    assert page.next_cursor is None
    assert [s.id for s in mobile.items] == [other.id]


async def test_pages_follow_the_cursor_and_iterate_reads_them_all(
    client: AsyncPromptLine,
) -> None:
    made = [await client.sessions.create() for _ in range(5)]

    first = await client.sessions.list(limit=2)
    second = await client.sessions.list(limit=2, cursor=first.next_cursor)
    everything = [s.id async for s in client.sessions.iterate(page_size=2)]

    newest_first = [s.id for s in reversed(made)]
    assert [s.id for s in first.items] == newest_first[:2]
    assert [s.id for s in second.items] == newest_first[2:4]
    assert everything == newest_first


async def test_history_of_a_session_after_a_message(client: AsyncPromptLine) -> None:
    session = await client.sessions.create()
    await client.sessions.send_and_wait(session.id, "hello there")

    full = await client.sessions.get(session.id)
    latest = await client.sessions.get(session.id, history_limit=1)

    assert [m.role for m in full.history] == ["user", "assistant"]
    assert full.history[0].text == "hello there"
    assert full.message_count == 2
    assert [m.role for m in latest.history] == ["assistant"]


async def test_deleting_a_session_hides_it(client: AsyncPromptLine) -> None:
    session = await client.sessions.create()

    await client.sessions.delete(session.id)

    with pytest.raises(NotFoundError):
        await client.sessions.get(session.id)
    assert session.id not in [s.id for s in (await client.sessions.list()).items]


async def test_export_then_import_copies_a_session(client: AsyncPromptLine) -> None:
    session = await client.sessions.create()
    await client.sessions.send_and_wait(session.id, "remember the blue door")

    document = await client.sessions.export(session.id)
    copy = await client.sessions.import_(document, as_new_id=True)

    assert document["format"] == "promptline.session"
    assert copy.id != session.id
    assert copy.message_count == 2
    read = await client.sessions.get(copy.id)
    assert read.history[0].text == "remember the blue door"


async def test_search_finds_messages_of_the_callers_sessions_only(served: Served) -> None:
    async with (
        AsyncPromptLine(served.url, served.keys.alice) as alice,
        AsyncPromptLine(served.url, served.keys.bob) as bob,
    ):
        mine = await alice.sessions.create()
        theirs = await bob.sessions.create()
        await alice.sessions.send_and_wait(mine.id, "zebra crossing")
        await bob.sessions.send_and_wait(theirs.id, "zebra stripes")

        hits = await alice.sessions.search("zebra")
        narrowed = await alice.sessions.search("zebra", session_id=mine.id, limit=1)

    assert {h.session_id for h in hits} == {mine.id}
    assert hits[0].snippet is not None
    assert "[zebra]" in hits[0].snippet
    assert len(narrowed) == 1
    assert "zebra" in narrowed[0].message.text.lower()


async def test_an_operators_client_chooses_a_sessions_sandbox_and_a_users_is_refused(
    client: AsyncPromptLine, served: Served
) -> None:
    session = await client.sessions.create()

    with pytest.raises(PermissionDeniedError, match="sessions:sandbox"):
        await client.sessions.set_sandbox(session.id, "docker")
    with pytest.raises(PermissionDeniedError, match="sessions:sandbox"):
        await client.sessions.create(sandbox="docker")
    async with AsyncPromptLine(served.url, served.keys.acme_admin) as admin:
        chosen = await admin.sessions.set_sandbox(session.id, "docker")
        made = await admin.sessions.create(sandbox="bubblewrap")

    assert chosen.sandbox == "docker"
    assert (await client.sessions.get(session.id)).sandbox == "docker"
    assert made.sandbox == "bubblewrap"
