"""Remembered grants: per session and per user, kept in the state store, revocable."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import pytest

from promptline.core.clock import ManualClock
from promptline.core.errors import InvalidInputError
from promptline.events.bus import InProcessEventBus
from promptline.events.protocols import EventFilter, EventStore
from promptline.security.approvals import ApprovalOutcome, ApprovalRequest
from promptline.security.grants import GrantStore
from promptline.state.evented import EventedStateStore
from promptline.state.file import FileStateStore
from promptline.state.protocols import StateStore
from promptline.state.redis import RedisStateStore
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


async def test_a_bound_grant_covers_only_its_binding(grants: GrantStore, state: StateStore) -> None:
    await grants.add("session", "shell_execute", session_id="s1", binding="b1")
    assert await state.get("session", "permissions/grants/shell_execute/b1", namespace="s1")
    await grants.add("session", "shell_execute", session_id="s1", binding="b2")
    await grants.add("always", "shell_execute", user_id="alice", binding="b3")

    found = await grants.find("shell_execute", session_id="s1", user_id="alice", binding="b1")

    assert found is not None
    assert (found.scope, found.binding) == ("session", "b1")
    assert await grants.find("shell_execute", session_id="s1", binding="b9") is None
    assert await grants.find("shell_execute", session_id="s1") is None
    always = await grants.find("shell_execute", session_id="s1", user_id="alice", binding="b3")
    assert always is not None
    assert always.scope == "always"
    listed = await grants.list_grants("session", session_id="s1")
    assert [(g.tool, g.binding) for g in listed] == [
        ("shell_execute", "b1"),
        ("shell_execute", "b2"),
    ]
    assert await grants.revoke("session", "shell_execute", session_id="s1", binding="b1")
    assert await grants.find("shell_execute", session_id="s1", binding="b1") is None
    assert await grants.find("shell_execute", session_id="s1", binding="b2") is not None


async def test_remember_keeps_the_binding_of_the_request(grants: GrantStore) -> None:
    bound = dataclasses.replace(
        outcome("session"),
        request=dataclasses.replace(outcome("session").request, tool="shell_execute", binding="b1"),
    )

    grant = await grants.remember(bound)

    assert grant is not None
    assert grant.binding == "b1"
    assert await grants.find("shell_execute", session_id="s1", binding="b1") is not None


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


@pytest.fixture(
    params=[
        pytest.param("file", id="file"),
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
        pytest.param("redis", id="redis", marks=pytest.mark.redis),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str, str]:
    """A state backend's name, where its fresh storage is, and (Redis) its key prefix."""
    name = str(request.param)
    if name == "file":
        return name, str(tmp_path / "state"), ""
    if name == "redis":
        url = str(request.getfixturevalue("redis_url"))
        return name, url, str(request.getfixturevalue("redis_prefix"))
    return name, str(request.getfixturevalue(f"{name}_url")), ""


@pytest.fixture
async def any_state(backend: tuple[str, str, str], clock: ManualClock) -> AsyncIterator[StateStore]:
    """Each state backend in turn, on fresh storage."""
    name, location, prefix = backend
    store: StateStore
    if name == "file":
        store = FileStateStore(location, clock=clock)
    elif name == "redis":
        store = RedisStateStore(location, prefix=prefix, clock=clock)
    else:
        store = SqlStateStore(create_engine(location), clock=clock, owns_engine=True)
    try:
        yield store
    finally:
        await store.close()


# (tenant, user) pairs that were one key once their ids were joined raw.
ALIKE = [
    (("a/b", "c"), ("a", "b/c")),
    (("t1:x", "y"), ("t1", "x:y")),
    (("a%2Fb", "c"), ("a/b", "c")),
]


@pytest.mark.parametrize(("first", "second"), ALIKE)
async def test_always_grants_of_users_whose_ids_join_alike_stay_apart(
    any_state: StateStore, clock: ManualClock, first: tuple[str, str], second: tuple[str, str]
) -> None:
    grants = GrantStore(any_state, clock=clock)
    await grants.add("always", "file_write", tenant_id=first[0], user_id=first[1])

    theirs = await grants.find("file_write", tenant_id=second[0], user_id=second[1])
    listed = await grants.list_grants("always", tenant_id=second[0], user_id=second[1])
    revoked = await grants.revoke("always", "file_write", tenant_id=second[0], user_id=second[1])
    mine = await grants.find("file_write", tenant_id=first[0], user_id=first[1])

    assert (theirs, listed, revoked) == (None, [], False)
    assert mine is not None
    assert (mine.tenant_id, mine.user_id) == first


async def _legacy_always_grant(state: StateStore, tenant: str, user: str, tool: str) -> None:
    """An always grant as it was kept when ids were escaped with `urllib.parse.quote`."""
    key = (
        f"permissions/always/{quote(tenant, safe='')}/{quote(user, safe='')}/{quote(tool, safe='')}"
    )
    value = {"tool": tool, "granted_at": "2026-01-01T00:00:00+00:00", "tenant_id": tenant}
    await state.set("global", key, {**value, "user_id": user, "decided_by": "ops"})


async def test_grants_kept_under_the_older_escaping_are_found_listed_and_revoked(
    any_state: StateStore, clock: ManualClock
) -> None:
    grants = GrantStore(any_state, clock=clock)
    await _legacy_always_grant(any_state, "acme", "bob@example.com", "mcp.files.read")
    await _legacy_always_grant(any_state, "acme", "bob@example.com", "git_commit")
    await grants.add("always", "file_write", tenant_id="acme", user_id="bob@example.com")

    found = await grants.find("mcp.files.read", tenant_id="acme", user_id="bob@example.com")
    listed = await grants.list_grants("always", tenant_id="acme", user_id="bob@example.com")
    revoked = await grants.revoke(
        "always", "git_commit", tenant_id="acme", user_id="bob@example.com"
    )

    assert found is not None
    assert found.decided_by == "ops"
    assert [g.tool for g in listed] == ["file_write", "git_commit", "mcp.files.read"]
    assert revoked is True
    assert await grants.find("git_commit", tenant_id="acme", user_id="bob@example.com") is None


async def test_granting_again_moves_a_grant_to_its_current_key(
    any_state: StateStore, clock: ManualClock
) -> None:
    grants = GrantStore(any_state, clock=clock)
    await _legacy_always_grant(any_state, "acme", "bob@example.com", "file_write")

    await grants.add("always", "file_write", tenant_id="acme", user_id="bob@example.com")

    keys = [e.key for e in await any_state.list("global", prefix="permissions/always/")]
    assert keys == ["permissions/always/acme/bob@example.com/file_write"]
    listed = await grants.list_grants("always", tenant_id="acme", user_id="bob@example.com")
    assert [(g.tool, g.decided_by) for g in listed] == [("file_write", None)]


async def test_an_always_grant_belongs_to_its_user_in_the_event_log(
    bus: InProcessEventBus, store: EventStore, clock: ManualClock, tmp_path: Path
) -> None:
    state = EventedStateStore(FileStateStore(tmp_path / "evented", clock=clock), bus, clock=clock)
    grants = GrantStore(state, clock=clock)

    await grants.add("always", "file_write", tenant_id="t1:x", user_id="y")
    await grants.revoke("always", "file_write", tenant_id="t1:x", user_id="y")

    changes = await store.read_all(EventFilter(types=frozenset({"state_change"})))
    assert [(e.tenant_id, e.user_id) for e in changes] == [("t1:x", "y"), ("t1:x", "y")]
