"""The layout of callers' state (escaped ids) and whom a stored address belongs to."""

from __future__ import annotations

import pytest

from promptline.state.evented import Owner
from promptline.state.owners import (
    StateOwners,
    local_namespace,
    owner_of_address,
    tenant_key,
)
from promptline.state.rules import MAX_NAMESPACE_LENGTH, check_address


def test_callers_whose_ids_join_alike_get_two_local_namespaces() -> None:
    first = local_namespace("t1:x", "y")
    second = local_namespace("t1", "x:y")

    assert first != second
    assert owner_of_address("local", first, "k") == Owner("t1:x", "y")
    assert owner_of_address("local", second, "k") == Owner("t1", "x:y")


def test_addresses_of_plain_ids_are_the_ones_written_before_ids_were_escaped() -> None:
    assert local_namespace("acme", "alice") == "acme:alice"
    assert local_namespace("acme", "bob@example.com") == "acme:bob@example.com"
    assert tenant_key("acme", "prices/eu") == "tenants/acme/prices/eu"
    assert tenant_key("t1:x", "k") == "tenants/t1:x/k"


def test_a_tenant_holding_a_slash_cannot_reach_into_another_tenants_keys() -> None:
    assert tenant_key("a/b", "k") != tenant_key("a", "b/k")
    assert owner_of_address("global", "", tenant_key("a/b", "k")) == Owner("a/b", None)
    assert owner_of_address("global", "", tenant_key("a", "b/k")) == Owner("a", None)


def test_ids_too_long_for_a_namespace_get_a_hashed_one_that_no_pair_of_ids_has() -> None:
    long_tenant, long_user = "t" * 200, "u" * 200
    namespace = local_namespace(long_tenant, long_user)
    other = local_namespace(long_tenant, long_user + "v")

    check_address("local", namespace, "k")  # the store takes it
    assert len(namespace) <= MAX_NAMESPACE_LENGTH
    assert ":" not in namespace
    assert namespace != other
    assert owner_of_address("local", namespace, "k") is None


@pytest.mark.parametrize(
    ("scope", "namespace", "key"),
    [
        ("local", "run_9", "k"),  # a run's own namespace
        ("local", "a:b:c", "k"),  # three parts: not a caller's
        ("local", "a%zz:b", "k"),  # not made by the escaping
        ("global", "", "settings/model"),  # the installation's own key
        ("global", "", "tenants/no-end"),
        ("session", "ses_1", "k"),  # only the sessions know
    ],
)
def test_addresses_outside_the_layout_have_no_owner(scope: str, namespace: str, key: str) -> None:
    assert owner_of_address(scope, namespace, key) is None  # type: ignore[arg-type]


async def test_a_sessions_owner_is_looked_up_once_and_remembered() -> None:
    asked: list[str] = []

    async def session_owner(session_id: str) -> Owner | None:
        asked.append(session_id)
        return Owner("acme", "alice") if session_id == "ses_1" else None

    owners = StateOwners(session_owner)

    first = await owners("session", "ses_1", "a")
    again = await owners("session", "ses_1", "b")
    unknown = await owners("session", "ses_gone", "a")
    unknown_again = await owners("session", "ses_gone", "a")
    local = await owners("local", "acme:alice", "a")

    assert first == again == Owner("acme", "alice")
    assert unknown is None
    assert unknown_again is None
    assert local == Owner("acme", "alice")
    # A session that was not found may yet be created: it is asked about again.
    assert asked == ["ses_1", "ses_gone", "ses_gone"]
