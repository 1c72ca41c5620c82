"""A session's own sandbox, on SQLite and PostgreSQL: given at creation, changed by an update,
read back after a restart, rebuilt from the log alone, checked before anything is written, and
left out of an export."""

from __future__ import annotations

import pytest
from sessions_support import ALICE, Stack, StackOpener

from promptline.core.errors import InvalidInputError
from promptline.core.messages import Message
from promptline.events.replay import replay
from promptline.sessions import SessionProjection
from promptline.sessions.projection import sandbox_of


async def test_a_sessions_sandbox_is_kept_changed_and_read_back_after_a_restart(
    stack: Stack, opener: StackOpener, db_url: str
) -> None:
    sessions = stack.manager
    boxed = await sessions.create(ALICE, channel="slack", sandbox="bubblewrap")
    plain = await sessions.create(ALICE, channel="slack")
    await sessions.append_message(boxed.id, Message(role="user", content="hi"), ALICE)

    changed = await sessions.update(boxed.id, ALICE, sandbox="docker")

    assert boxed.sandbox == "bubblewrap"
    assert plain.sandbox is None
    assert changed.sandbox == "docker"
    again = opener(db_url).manager
    assert (await again.get(boxed.id, ALICE)).sandbox == "docker"
    assert (await again.get(plain.id, ALICE)).sandbox is None
    # An update of other fields, or a message, leaves it as it is.
    await again.update(boxed.id, ALICE, context={"a": 1})
    await again.append_message(boxed.id, Message(role="user", content="again"), ALICE)
    assert (await again.get(boxed.id, ALICE)).sandbox == "docker"
    # `none` takes the session's own choice back: it then tightens nothing.
    assert (await again.update(boxed.id, ALICE, sandbox="none")).sandbox == "none"


async def test_the_log_alone_rebuilds_a_sessions_sandbox(stack: Stack) -> None:
    session = await stack.manager.create(ALICE, channel="cli", sandbox="process")
    await stack.manager.update(session.id, ALICE, sandbox="docker")

    projection = SessionProjection()
    await replay(stack.store, projection, stream=session.id)

    assert projection.session(session.id) == await stack.manager.get(session.id, ALICE)
    assert projection.session(session.id).sandbox == "docker"


async def test_a_sandbox_that_is_not_one_is_refused_before_anything_is_written(
    stack: Stack,
) -> None:
    session = await stack.manager.create(ALICE, channel="cli")
    before = await stack.store.last_position()

    with pytest.raises(InvalidInputError, match="'jail' is not a sandbox") as refused:
        await stack.manager.create(ALICE, channel="cli", sandbox="jail")
    with pytest.raises(InvalidInputError, match="is not a sandbox"):
        await stack.manager.update(session.id, ALICE, sandbox="chroot")

    assert refused.value.details["field"] == "sandbox"
    assert "bubblewrap" in (refused.value.hint or "")
    assert await stack.store.last_position() == before


async def test_an_export_leaves_the_sandbox_out(stack: Stack) -> None:
    session = await stack.manager.create(ALICE, channel="cli", sandbox="docker")

    document = await stack.manager.export(session.id, ALICE)
    imported = await stack.manager.import_(document, ALICE, as_new_id=True)

    assert "sandbox" not in document["session"]
    assert imported.sandbox is None


def test_a_sandbox_this_release_does_not_know_reads_as_the_strongest_it_knows() -> None:
    assert sandbox_of("gvisor") == "docker"
    assert sandbox_of("process") == "process"
    assert sandbox_of(None) is None
