"""Remembered grants: per session and per user, kept in the state store, revocable."""

from __future__ import annotations

from datetime import datetime

import pytest

from promptline.core.clock import ManualClock
from promptline.core.errors import InvalidInputError
from promptline.security.approvals import ApprovalOutcome, ApprovalRequest
from promptline.security.grants import GrantStore
from promptline.state.protocols import StateStore
from promptline.state.sql import SqlStateStore
from promptline.storage.database import create_engine


@pytest.fixture
def grants(state: StateStore, clock: ManualClock) -> GrantStore:
    return GrantStore(state, clock=clock)


def outcome(scope: str, *, approved: bool = True, session: str | None = "s1") -> ApprovalOutcome:
    when = datetime(2026, 1, 1).astimezone()
    request = ApprovalRequest(
        request_id="perm_1",
        tool="file_write",
        arguments={},
        reason=None,
        requested_at=when,
        expires_at=when,
        session_id=session,
        user_id="alice",
        tenant_id="acme",
    )
    return ApprovalOutcome(request, approved, scope, "alice", None, when)  # type: ignore[arg-type]


async def test_a_session_grant_covers_that_session_only(grants: GrantStore) -> None:
    await grants.add("session", "file_write", session_id="s1", user_id="alice")

    found = await grants.find("file_write", session_id="s1", user_id="alice")

    assert found is not None
    assert (found.scope, found.tool, found.session_id) == ("session", "file_write", "s1")
    assert await grants.find("file_write", session_id="s2", user_id="alice") is None
    assert await grants.find("git_commit", session_id="s1", user_id="alice") is None


async def test_an_always_grant_covers_the_user_in_every_session(grants: GrantStore) -> None:
    await grants.add("always", "file_write", user_id="alice", tenant_id="acme")

    found = await grants.find("file_write", session_id="s9", user_id="alice", tenant_id="acme")

    assert found is not None
    assert found.scope == "always"
    assert await grants.find("file_write", user_id="bob", tenant_id="acme") is None
    assert await grants.find("file_write", user_id="alice", tenant_id="other") is None


async def test_ids_with_slashes_do_not_reach_into_other_ids(grants: GrantStore) -> None:
    await grants.add("always", "x", user_id="a/b")

    assert await grants.list_grants("always", user_id="a") == []
    assert [g.tool for g in await grants.list_grants("always", user_id="a/b")] == ["x"]


async def test_remember_keeps_session_and_always_approvals_only(grants: GrantStore) -> None:
    assert await grants.remember(outcome("once")) is None
    assert await grants.remember(outcome("always", approved=False)) is None
    assert await grants.list_grants("session", session_id="s1") == []

    session = await grants.remember(outcome("session"))
    always = await grants.remember(outcome("always"))

    assert session is not None
    assert always is not None
    assert (session.session_id, session.request_id, session.decided_by) == ("s1", "perm_1", "alice")
    assert always.session_id is None
    assert [g.tool for g in await grants.list_grants("session", session_id="s1")] == ["file_write"]
    assert [g.tool for g in await grants.list_grants("always", user_id="alice", tenant_id="acme")]


async def test_a_revoked_grant_no_longer_applies(grants: GrantStore) -> None:
    await grants.add("session", "file_write", session_id="s1")
    await grants.add("always", "file_write", user_id="alice")

    assert await grants.revoke("session", "file_write", session_id="s1") is True
    assert await grants.revoke("session", "file_write", session_id="s1") is False
    found = await grants.find("file_write", session_id="s1", user_id="alice")
    assert found is not None
    assert found.scope == "always"
    assert await grants.revoke("always", "file_write", user_id="alice") is True
    assert await grants.find("file_write", session_id="s1", user_id="alice") is None


async def test_grants_need_a_scope_they_can_remember(grants: GrantStore) -> None:
    with pytest.raises(InvalidInputError, match="needs the session"):
        await grants.add("session", "file_write")
    with pytest.raises(InvalidInputError, match="not 'once'"):
        await grants.add("once", "file_write")  # type: ignore[arg-type]


async def test_always_grants_survive_a_restart(sqlite_url: str, clock: ManualClock) -> None:
    first = SqlStateStore(create_engine(sqlite_url), clock=clock, owns_engine=True)
    await GrantStore(first, clock=clock).add("always", "file_write", user_id="alice")
    await first.close()

    second = SqlStateStore(create_engine(sqlite_url), clock=clock, owns_engine=True)
    try:
        found = await GrantStore(second).find("file_write", user_id="alice")
    finally:
        await second.close()

    assert found is not None
    assert found.granted_at == clock.now()
