"""The layout of callers' state: escaped ids, so no two callers share an address."""

from __future__ import annotations

from promptline.state.owners import local_namespace, tenant_key
from promptline.state.rules import MAX_NAMESPACE_LENGTH, check_address


def test_callers_whose_ids_join_alike_get_two_local_namespaces() -> None:
    first = local_namespace("t1:x", "y")
    second = local_namespace("t1", "x:y")

    assert first != second


def test_addresses_of_plain_ids_are_the_ones_written_before_ids_were_escaped() -> None:
    assert local_namespace("acme", "alice") == "acme:alice"
    assert local_namespace("acme", "bob@example.com") == "acme:bob@example.com"
    assert tenant_key("acme", "prices/eu") == "tenants/acme/prices/eu"
    assert tenant_key("t1:x", "k") == "tenants/t1:x/k"


def test_a_tenant_holding_a_slash_cannot_reach_into_another_tenants_keys() -> None:
    assert tenant_key("a/b", "k") != tenant_key("a", "b/k")


def test_ids_too_long_for_a_namespace_get_a_hashed_one_that_no_pair_of_ids_has() -> None:
    long_tenant, long_user = "t" * 200, "u" * 200
    namespace = local_namespace(long_tenant, long_user)
    other = local_namespace(long_tenant, long_user + "v")

    check_address("local", namespace, "k")  # the store takes it
    assert len(namespace) <= MAX_NAMESPACE_LENGTH
    assert ":" not in namespace
    assert namespace != other
