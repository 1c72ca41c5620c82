"""Isolation: a user reaches only its own sessions, in its own tenant, on every path."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sessions_support import ACME_ADMIN, ALICE, BOB, GLOBEX_ADMIN, GLOBEX_ALICE, Stack

from promptline.core.errors import NotFoundError, PermissionDeniedError
from promptline.core.messages import Message
from promptline.sessions import Principal, Session, SessionManager

OUTSIDERS = [BOB, GLOBEX_ALICE]
"""Who must not reach a session of acme's alice: another user of acme, and the same user id
in another tenant."""


@pytest.fixture
async def alices(sessions: SessionManager) -> Session:
    session = await sessions.create(ALICE, channel="cli", context={"secret": "s3"})
    await sessions.append_message(session.id, Message(role="user", content="pineapple"), ALICE)
    return session


def _single_ops(
    sessions: SessionManager, session_id: str
) -> dict[str, Callable[[Principal], Awaitable[Any]]]:
    return {
        "get": lambda p: sessions.get(session_id, p),
        "append": lambda p: sessions.append_message(
            session_id, Message(role="user", content="intrusion"), p
        ),
        "update": lambda p: sessions.update(session_id, p, context={"owned": True}),
        "export": lambda p: sessions.export(session_id, p),
        "search_in": lambda p: sessions.search(p, "pineapple", session_id=session_id),
        "list_before": lambda p: sessions.list(p, before=session_id),
    }


@pytest.mark.parametrize("op", ["get", "append", "update", "export", "search_in", "list_before"])
async def test_outsiders_get_not_found_and_change_nothing(
    stack: Stack, alices: Session, op: str
) -> None:
    before = await stack.store.last_seq(alices.id)
    for outsider in OUTSIDERS:
        with pytest.raises(NotFoundError) as info:
            await _single_ops(stack.manager, alices.id)[op](outsider)
        # The same answer as for an id that does not exist: no existence leak.
        with pytest.raises(NotFoundError) as missing:
            await _single_ops(stack.manager, "ses_nothing_here")[op](outsider)
        assert info.value.message.replace(alices.id, "?") == missing.value.message.replace(
            "ses_nothing_here", "?"
        )
    assert await stack.store.last_seq(alices.id) == before
    session = await stack.manager.get(alices.id, ALICE)
    assert session.context == {"secret": "s3"}
    assert [m.text for m in session.history] == ["pineapple"]


async def test_list_shows_users_their_own_sessions_and_admins_every_tenant(
    sessions: SessionManager, alices: Session
) -> None:
    bobs = await sessions.create(BOB, channel="cli")
    globex = await sessions.create(GLOBEX_ALICE, channel="cli")
    assert [s.id for s in await sessions.list(ALICE)] == [alices.id]
    assert [s.id for s in await sessions.list(BOB)] == [bobs.id]
    assert [s.id for s in await sessions.list(GLOBEX_ALICE)] == [globex.id]
    everything = {alices.id, bobs.id, globex.id}
    assert {s.id for s in await sessions.list(ACME_ADMIN)} == everything
    assert {s.id for s in await sessions.list(GLOBEX_ADMIN)} == everything
    in_acme = await sessions.list(GLOBEX_ADMIN, tenant_id="acme")
    assert {s.id for s in in_acme} == {alices.id, bobs.id}
    all_alices = await sessions.list(ACME_ADMIN, user_id="alice")
    assert {s.id for s in all_alices} == {alices.id, globex.id}
    one = await sessions.list(GLOBEX_ADMIN, user_id="alice", tenant_id="globex")
    assert one == [await sessions.get(globex.id, GLOBEX_ALICE, history_limit=0)]


@pytest.mark.parametrize(
    ("filters", "word"), [({"user_id": "alice"}, "user"), ({"tenant_id": "globex"}, "tenant")]
)
async def test_a_user_may_not_list_another_users_or_tenants_sessions(
    sessions: SessionManager, alices: Session, filters: dict[str, str], word: str
) -> None:
    with pytest.raises(
        PermissionDeniedError, match=f"only an admin may list another {word}"
    ) as info:
        await sessions.list(BOB, **filters)  # type: ignore[arg-type]
    assert info.value.hint
    mine = await sessions.list(ALICE, user_id="alice", tenant_id="acme")
    assert [s.id for s in mine] == [alices.id]


async def test_search_never_returns_other_users_or_tenants_messages(
    sessions: SessionManager, alices: Session
) -> None:
    bobs = await sessions.create(BOB, channel="cli")
    await sessions.append_message(bobs.id, Message(role="user", content="pineapple pie"), BOB)
    globex = await sessions.create(GLOBEX_ALICE, channel="cli")
    await sessions.append_message(
        globex.id, Message(role="user", content="pineapple juice"), GLOBEX_ALICE
    )
    assert [h.session_id for h in await sessions.search(ALICE, "pineapple")] == [alices.id]
    assert [h.session_id for h in await sessions.search(BOB, "pineapple")] == [bobs.id]
    assert [h.session_id for h in await sessions.search(GLOBEX_ALICE, "pineapple")] == [globex.id]
    everyone = {alices.id, bobs.id, globex.id}
    assert {h.session_id for h in await sessions.search(ACME_ADMIN, "pineapple")} == everyone
    assert {h.session_id for h in await sessions.search(GLOBEX_ADMIN, "pineapple")} == everyone


async def test_an_admin_reads_and_writes_any_session_of_any_tenant(
    sessions: SessionManager, alices: Session
) -> None:
    await sessions.append_message(alices.id, Message(role="system", content="note"), ACME_ADMIN)
    await sessions.update(alices.id, GLOBEX_ADMIN, metadata={"reviewed": True})
    assert (await sessions.export(alices.id, GLOBEX_ADMIN))["session"]["id"] == alices.id
    seen = await sessions.get(alices.id, GLOBEX_ADMIN)
    assert [m.text for m in seen.history] == ["pineapple", "note"]
    assert seen.metadata == {"reviewed": True}
    assert seen.user_id == "alice"  # still alice's


async def test_import_refuses_a_non_admin_importing_another_users_session(
    sessions: SessionManager, alices: Session
) -> None:
    document = await sessions.export(alices.id, ALICE)
    with pytest.raises(PermissionDeniedError, match="only your own"):
        await sessions.import_(document, BOB, as_new_id=True)
    assert await sessions.list(BOB) == []


async def test_import_puts_the_session_in_the_importers_tenant(
    sessions: SessionManager, alices: Session
) -> None:
    document = await sessions.export(alices.id, ALICE)
    copy = await sessions.import_(document, GLOBEX_ADMIN, as_new_id=True)
    assert (copy.tenant_id, copy.user_id) == ("globex", "alice")
    assert [s.id for s in await sessions.list(GLOBEX_ALICE)] == [copy.id]
    assert [s.id for s in await sessions.list(ALICE)] == [alices.id]


ACME_TENANT_ADMIN = Principal(tenant_id=ALICE.tenant_id, user_id="ops", tenant_admin=True)
GLOBEX_TENANT_ADMIN = Principal(tenant_id=GLOBEX_ALICE.tenant_id, user_id="ops", tenant_admin=True)


async def test_a_tenant_admin_reaches_every_session_of_its_tenant_and_no_other(
    stack: Stack, alices: Session
) -> None:
    bobs = await stack.manager.create(BOB, channel="cli")
    globex = await stack.manager.create(GLOBEX_ALICE, channel="cli")

    assert (await stack.manager.get(alices.id, ACME_TENANT_ADMIN)).user_id == ALICE.user_id
    listed = {s.id for s in await stack.manager.list(ACME_TENANT_ADMIN)}
    assert {alices.id, bobs.id} <= listed
    assert globex.id not in listed
    assert {s.id for s in await stack.manager.list(ACME_TENANT_ADMIN, user_id=BOB.user_id)} == {
        bobs.id
    }
    hits = await stack.manager.search(ACME_TENANT_ADMIN, "pineapple")
    assert [h.session_id for h in hits] == [alices.id]
    with pytest.raises(NotFoundError):
        await stack.manager.get(alices.id, GLOBEX_TENANT_ADMIN)
    with pytest.raises(PermissionDeniedError):
        await stack.manager.list(ACME_TENANT_ADMIN, tenant_id=GLOBEX_ALICE.tenant_id)
