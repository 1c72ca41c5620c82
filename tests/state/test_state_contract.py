"""The `StateStore` conformance suite: every rule of the protocol, on every backend."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from promptline.core.clock import ManualClock
from promptline.core.errors import ConflictError, InvalidInputError
from promptline.state.owners import local_namespace, tenant_key
from promptline.state.protocols import StateStore

StoreFactory = Callable[[], Awaitable[StateStore]]

# Keys that trip up file names, LIKE patterns, byte order and collations.
TRICKY_KEYS = [
    "a",
    "b",
    "A",
    "B",
    "a/b",
    "a%",
    "a%b",
    "a_b",
    "a_",
    "a.b",
    "a b",
    "a\\b",
    "..",
    "../x",
    "../../etc/passwd",
    "/etc/passwd",
    ".hidden",
    "_",
    "%",
    "%2F",
    "~",
    "ä",
    "a\u0308",  # the same letter, decomposed: must stay a different key
    "日本",
    "日本語",
    "😀",
    "\uffff",
    "x" * 512,
    "é" * 512,
]


async def _increment(store: StateStore, key: str) -> int:
    """Add one to a counter with a compare-and-set retry loop; returns the conflicts seen."""
    conflicts = 0
    while True:
        entry = await store.get("global", key)
        current = 0 if entry is None else entry.value
        version = 0 if entry is None else entry.version
        try:
            await store.set("global", key, current + 1, expected_version=version)
            return conflicts
        except ConflictError:
            conflicts += 1


# -- values and versions ------------------------------------------------------------------


async def test_get_of_a_missing_key_returns_none(state_store: StateStore) -> None:
    assert await state_store.get("global", "nothing") is None


async def test_first_set_gives_version_1_and_get_returns_the_same_entry(
    state_store: StateStore, clock: ManualClock
) -> None:
    written = await state_store.set("global", "k", {"a": 1})
    assert written.version == 1
    assert written.value == {"a": 1}
    assert (written.scope, written.namespace, written.key) == ("global", "", "k")
    assert written.updated_at == clock.now()
    assert written.expires_at is None
    assert await state_store.get("global", "k") == written


async def test_each_set_raises_the_version_by_one_and_stamps_the_clock(
    state_store: StateStore, clock: ManualClock
) -> None:
    for expected in range(1, 6):
        clock.advance(1.5)
        entry = await state_store.set("global", "k", expected)
        assert entry.version == expected
        assert entry.updated_at == clock.now()
    got = await state_store.get("global", "k")
    assert got is not None
    assert (got.version, got.value) == (5, 5)


JSON_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -(2**63),
    2**63 - 1,
    1.5,
    -0.0,
    1e308,
    "",
    "plain",
    "unicode ✓ 日本語 😀 \u0000 nul inside a value is fine",
    {"nul \u0000 in a key": ["and \u0000 in values", {"\u0000": "\u0000"}]},
    [],
    {},
    [1, "two", 3.0, None, [True, {"deep": [{}]}]],
    {"nested": {"list": [1, 2, {"k": "v"}], "empty": {}}, "ключ": "значение"},
]


async def test_json_values_round_trip_unchanged(state_store: StateStore) -> None:
    for index, value in enumerate(JSON_VALUES):
        written = await state_store.set("global", f"v{index}", value)
        got = await state_store.get("global", f"v{index}")
        assert got is not None
        assert got.value == value == written.value, value
        assert type(got.value) is type(value), value
    listed = await state_store.list("global")
    assert sorted(e.key for e in listed) == sorted(f"v{i}" for i in range(len(JSON_VALUES)))


async def test_a_tuple_comes_back_as_a_list(state_store: StateStore) -> None:
    written = await state_store.set("global", "t", (1, (2, 3)))
    got = await state_store.get("global", "t")
    assert got is not None
    assert got.value == written.value == [1, [2, 3]]


async def test_large_values_round_trip(state_store: StateStore) -> None:
    text = "0123456789abcdef" * 131_072  # 2 MiB
    items = [{"i": i, "s": f"item-{i}"} for i in range(20_000)]
    await state_store.set("global", "text", text)
    await state_store.set("global", "items", items)
    got_text = await state_store.get("global", "text")
    got_items = await state_store.get("global", "items")
    assert got_text is not None
    assert got_text.value == text
    assert got_items is not None
    assert got_items.value == items
    assert [e.key for e in await state_store.list("global")] == ["items", "text"]


class _Custom:
    pass


def _circular() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


NON_JSON_VALUES: list[tuple[str, Any, str]] = [
    ("set", {1, 2}, "set"),
    ("custom object", _Custom(), "_Custom"),
    ("bytes", b"bytes", "bytes"),
    ("nan", math.nan, "float"),
    ("inf", math.inf, "float"),
    ("datetime", {"when": datetime(2026, 1, 1, tzinfo=UTC)}, "datetime"),
    ("int dict key", {1: "int key"}, "int"),
    ("huge int", {"n": 2**70}, "int"),
    ("object deep inside", [1, 2, {"x": [object()]}], "object"),
    ("circular", _circular(), "list"),
    ("too deep", _nested(300), "list"),
]


async def test_non_json_value_is_refused_naming_key_and_type_and_prior_value_stays(
    state_store: StateStore,
) -> None:
    await state_store.set("global", "k", {"keep": "me"})
    for case, value, type_name in NON_JSON_VALUES:
        with pytest.raises(InvalidInputError) as caught:
            await state_store.set("global", "k", value)
        assert "'k'" in caught.value.message, case
        assert type_name in caught.value.message, case
        assert caught.value.details["key"] == "k", case
        assert caught.value.hint, case
    got = await state_store.get("global", "k")
    assert got is not None
    assert (got.value, got.version) == ({"keep": "me"}, 1)


@pytest.mark.parametrize(
    "number",
    [2**64, 2**63, -(2**63) - 1, 10**30],
    ids=["2**64", "2**63", "-(2**63)-1", "10**30"],
)
async def test_an_integer_beyond_64_bits_signed_is_refused_naming_its_path(
    state_store: StateStore, number: int
) -> None:
    await state_store.set("global", "k", 1)
    with pytest.raises(InvalidInputError) as caught:
        await state_store.set("global", "k", {"a": [number]})
    assert caught.value.details["path"] == "$.a[0]"
    assert caught.value.details["field"] == "value.a[0]"
    assert str(number) in caught.value.message
    assert caught.value.hint is not None
    assert "64 bits, signed" in caught.value.hint
    got = await state_store.get("global", "k")
    assert got is not None
    assert (got.value, got.version) == (1, 1)


async def test_non_json_value_for_a_new_key_stores_nothing(state_store: StateStore) -> None:
    with pytest.raises(InvalidInputError):
        await state_store.set("global", "new", {"s": {1}})
    with pytest.raises(InvalidInputError):
        await state_store.set("global", "new", "lone \ud800 surrogate")
    assert await state_store.get("global", "new") is None
    assert await state_store.list("global") == []


# -- addresses: scopes, namespaces, keys ----------------------------------------------------


async def test_unknown_scope_is_refused(state_store: StateStore) -> None:
    with pytest.raises(InvalidInputError, match="unknown state scope"):
        await state_store.set("tenant", "k", 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await state_store.get("GLOBAL", "k")  # type: ignore[arg-type]


async def test_global_scope_refuses_a_namespace(state_store: StateStore) -> None:
    with pytest.raises(InvalidInputError, match="global scope"):
        await state_store.set("global", "k", 1, namespace="ses_1")
    with pytest.raises(InvalidInputError):
        await state_store.list("global", namespace="ses_1")


async def test_session_scope_requires_the_session_id_as_namespace(
    state_store: StateStore,
) -> None:
    with pytest.raises(InvalidInputError, match="session id"):
        await state_store.set("session", "k", 1)
    with pytest.raises(InvalidInputError):
        await state_store.get("session", "k")
    with pytest.raises(InvalidInputError):
        await state_store.list("session")


async def test_local_scope_takes_the_empty_or_any_namespace(state_store: StateStore) -> None:
    await state_store.set("local", "k", "empty")
    await state_store.set("local", "k", "run", namespace="run_1")
    empty = await state_store.get("local", "k")
    run = await state_store.get("local", "k", namespace="run_1")
    assert empty is not None
    assert empty.value == "empty"
    assert run is not None
    assert run.value == "run"


async def test_scopes_and_namespaces_are_isolated(state_store: StateStore) -> None:
    await state_store.set("global", "k", "g")
    await state_store.set("session", "k", "s1", namespace="ses_1")
    await state_store.set("session", "k", "s2", namespace="ses_2")
    await state_store.set("local", "k", "l1", namespace="ses_1")
    await state_store.set("local", "k", "l", namespace="")
    seen = {
        ("global", ""): "g",
        ("session", "ses_1"): "s1",
        ("session", "ses_2"): "s2",
        ("local", "ses_1"): "l1",
        ("local", ""): "l",
    }
    for (scope, namespace), value in seen.items():
        entry = await state_store.get(scope, "k", namespace=namespace)  # type: ignore[arg-type]
        assert entry is not None
        assert (entry.value, entry.version) == (value, 1)
        listed = await state_store.list(scope, namespace=namespace)  # type: ignore[arg-type]
        assert [(e.key, e.value) for e in listed] == [("k", value)]
    assert await state_store.delete("session", "k", namespace="ses_1")
    assert await state_store.get("session", "k", namespace="ses_2") is not None
    assert await state_store.get("local", "k", namespace="ses_1") is not None


async def test_namespaces_that_look_alike_stay_apart(state_store: StateStore) -> None:
    names = ["a", "A", "a:b", "a}b", "{a}", "a/b", "a/../b", "..", "%41", "ä", "a" * 255]
    for name in names:
        await state_store.set("session", "k", name, namespace=name)
    for name in names:
        entry = await state_store.get("session", "k", namespace=name)
        assert entry is not None
        assert entry.value == name
        assert [e.value for e in await state_store.list("session", namespace=name)] == [name]


async def test_the_local_state_of_callers_whose_ids_join_alike_stays_apart(
    state_store: StateStore,
) -> None:
    # tenant "t1:x" with user "y", and tenant "t1" with user "x:y": once "t1:x:y" both.
    first = local_namespace("t1:x", "y")
    second = local_namespace("t1", "x:y")
    await state_store.set("local", "draft", "first's", namespace=first)
    await state_store.set("local", "draft", "second's", namespace=second)
    await state_store.set("local", "draft", "first's again", namespace=first)

    mine = await state_store.get("local", "draft", namespace=first)
    theirs = await state_store.get("local", "draft", namespace=second)
    assert mine is not None
    assert theirs is not None
    assert (mine.value, mine.version) == ("first's again", 2)
    assert (theirs.value, theirs.version) == ("second's", 1)
    assert await state_store.delete("local", "draft", namespace=second)
    assert await state_store.get("local", "draft", namespace=first) == mine
    assert [e.value for e in await state_store.list("local", namespace=first)] == [mine.value]


async def test_a_tenants_global_keys_stay_apart_from_a_tenant_whose_id_holds_a_slash(
    state_store: StateStore,
) -> None:
    # tenant "a" with key "b/k", and tenant "a/b" with key "k": once "tenants/a/b/k" both.
    await state_store.set("global", tenant_key("a", "b/k"), "a's")
    await state_store.set("global", tenant_key("a/b", "k"), "a/b's")

    of_a = await state_store.list("global", prefix=tenant_key("a", ""))
    of_ab = await state_store.list("global", prefix=tenant_key("a/b", ""))
    assert [(e.key, e.value) for e in of_a] == [("tenants/a/b/k", "a's")]
    assert [(e.key, e.value) for e in of_ab] == [("tenants/a%2Fb/k", "a/b's")]


BAD_KEYS: list[Any] = ["", "x" * 513, "nul\x00key", "lone \udc00 surrogate", 42, None, b"bytes"]


async def test_bad_keys_are_refused_everywhere(state_store: StateStore) -> None:
    for key in BAD_KEYS:
        with pytest.raises(InvalidInputError) as caught:
            await state_store.set("global", key, 1)
        assert caught.value.hint, key
        with pytest.raises(InvalidInputError):
            await state_store.get("global", key)
        with pytest.raises(InvalidInputError):
            await state_store.delete("global", key)
    assert await state_store.list("global") == []


async def test_bad_namespaces_are_refused(state_store: StateStore) -> None:
    for namespace in ["x" * 256, "nul\x00ns", 7]:
        with pytest.raises(InvalidInputError):
            await state_store.set("local", "k", 1, namespace=namespace)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError):
            await state_store.list("local", namespace=namespace)  # type: ignore[arg-type]
    assert await state_store.list("local") == []


async def test_tricky_keys_round_trip_and_list_in_code_point_order(
    state_store: StateStore,
) -> None:
    for index, key in enumerate(TRICKY_KEYS):
        await state_store.set("session", key, index, namespace="ses_1")
    for index, key in enumerate(TRICKY_KEYS):
        entry = await state_store.get("session", key, namespace="ses_1")
        assert entry is not None, key
        assert entry.value == index
    listed = await state_store.list("session", namespace="ses_1")
    assert [e.key for e in listed] == sorted(TRICKY_KEYS)
    assert all(e.value == TRICKY_KEYS.index(e.key) for e in listed)


PREFIXES = [
    "",
    "a",
    "A",
    "a%",
    "a_",
    "a.",
    "%",
    "_",
    "..",
    "../",
    "/",
    "ä",
    "a\u0308",
    "日本",
    "😀",
]


async def test_list_prefix_matches_exactly_the_keys_that_start_with_it(
    state_store: StateStore,
) -> None:
    for key in TRICKY_KEYS:
        await state_store.set("local", key, key, namespace="run")
    for prefix in [*PREFIXES, "x", "no-such-prefix"]:
        listed = await state_store.list("local", namespace="run", prefix=prefix)
        expected = sorted(k for k in TRICKY_KEYS if k.startswith(prefix))
        assert [e.key for e in listed] == expected, prefix
        assert [e.value for e in listed] == expected, prefix


async def test_list_prefix_finds_long_keys(state_store: StateStore) -> None:
    long_keys = ["é" * 200 + tail for tail in ("a", "b", "c")] + ["é" * 511 + "z", "é" * 10]
    for key in long_keys:
        await state_store.set("global", key, len(key))
    assert [e.key for e in await state_store.list("global", prefix="é" * 200)] == sorted(
        long_keys[:4]
    )
    assert [e.key for e in await state_store.list("global", prefix="é" * 200 + "b")] == [
        long_keys[1]
    ]
    assert [e.key for e in await state_store.list("global", prefix="é" * 300)] == [long_keys[3]]
    assert await state_store.list("global", prefix="é" * 200 + "q") == []


async def test_list_honours_limit(state_store: StateStore) -> None:
    for key in ["d", "b", "a", "c", "e"]:
        await state_store.set("global", key, key)
    assert await state_store.list("global", limit=0) == []
    assert [e.key for e in await state_store.list("global", limit=2)] == ["a", "b"]
    assert [e.key for e in await state_store.list("global", limit=50)] == list("abcde")
    assert [e.key for e in await state_store.list("global", prefix="c", limit=1)] == ["c"]


async def test_list_refuses_a_bad_limit(state_store: StateStore) -> None:
    for limit in [-1, 1.5, "3", True]:
        with pytest.raises(InvalidInputError, match="limit"):
            await state_store.list("global", limit=limit)  # type: ignore[arg-type]


async def test_list_of_an_unused_namespace_is_empty(state_store: StateStore) -> None:
    assert await state_store.list("session", namespace="never-used") == []
    assert await state_store.list("global", prefix="zzz") == []


async def test_two_clients_of_one_storage_see_each_others_writes(
    open_store: StoreFactory,
) -> None:
    first, second = await open_store(), await open_store()
    await first.set("global", "shared", 1)
    entry = await second.get("global", "shared")
    assert entry is not None
    await second.set("global", "shared", 2, expected_version=entry.version)
    with pytest.raises(ConflictError):
        await first.set("global", "shared", 3, expected_version=1)
    assert [e.value for e in await first.list("global")] == [2]


# -- compare-and-set -------------------------------------------------------------------------


async def test_expected_version_zero_creates_only_a_missing_key(state_store: StateStore) -> None:
    created = await state_store.set("global", "k", "first", expected_version=0)
    assert created.version == 1
    with pytest.raises(ConflictError) as caught:
        await state_store.set("global", "k", "second", expected_version=0)
    assert caught.value.details["expected"] == 0
    assert caught.value.details["actual"] == 1
    got = await state_store.get("global", "k")
    assert got is not None
    assert (got.value, got.version) == ("first", 1)


async def test_matching_expected_version_writes_the_next_version(
    state_store: StateStore,
) -> None:
    await state_store.set("global", "k", 1)
    await state_store.set("global", "k", 2)
    entry = await state_store.set("global", "k", 3, expected_version=2)
    assert (entry.version, entry.value) == (3, 3)


async def test_stale_expected_version_raises_conflict_and_changes_nothing(
    state_store: StateStore, clock: ManualClock
) -> None:
    before = await state_store.set("global", "k", "a")
    await state_store.set("global", "k", "b")
    current = await state_store.get("global", "k")
    clock.advance(5)
    with pytest.raises(ConflictError) as caught:
        await state_store.set("global", "k", "stale", expected_version=before.version)
    error = caught.value
    assert (error.details["expected"], error.details["actual"]) == (1, 2)
    assert error.details["key"] == "k"
    assert error.hint
    assert await state_store.get("global", "k") == current


async def test_expected_version_on_a_missing_key_conflicts_with_actual_zero(
    state_store: StateStore,
) -> None:
    with pytest.raises(ConflictError) as caught:
        await state_store.set("session", "k", 1, namespace="s", expected_version=3)
    assert (caught.value.details["expected"], caught.value.details["actual"]) == (3, 0)
    assert await state_store.get("session", "k", namespace="s") is None


async def test_malformed_expected_version_is_refused(state_store: StateStore) -> None:
    await state_store.set("global", "k", 1)
    for expected in [-1, True, 1.0, "1"]:
        with pytest.raises(InvalidInputError, match="expected_version"):
            await state_store.set("global", "k", 2, expected_version=expected)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="expected_version"):
            await state_store.delete("global", "k", expected_version=expected)  # type: ignore[arg-type]
    got = await state_store.get("global", "k")
    assert got is not None
    assert (got.value, got.version) == (1, 1)


async def test_concurrent_cas_increments_end_at_exactly_n(open_store: StoreFactory) -> None:
    first, second = await open_store(), await open_store()
    workers = 24
    # Half the coroutines go through a second client of the same storage.
    conflicts = await asyncio.gather(
        *(_increment(first if i % 2 else second, "counter") for i in range(workers))
    )
    entry = await first.get("global", "counter")
    assert entry is not None
    assert entry.value == workers
    assert entry.version == workers
    assert sum(conflicts) >= 0


async def test_concurrent_creates_with_expected_zero_have_one_winner(
    state_store: StateStore,
) -> None:
    async def create(i: int) -> int | None:
        try:
            await state_store.set("global", "lock", i, expected_version=0)
            return i
        except ConflictError:
            return None

    winners = [w for w in await asyncio.gather(*(create(i) for i in range(16))) if w is not None]
    assert len(winners) == 1
    entry = await state_store.get("global", "lock")
    assert entry is not None
    assert (entry.value, entry.version) == (winners[0], 1)


async def test_concurrent_plain_sets_each_get_their_own_version(open_store: StoreFactory) -> None:
    first, second = await open_store(), await open_store()
    entries = await asyncio.gather(
        *((first if i % 2 else second).set("global", "k", i) for i in range(20))
    )
    assert sorted(e.version for e in entries) == list(range(1, 21))
    last = max(entries, key=lambda e: e.version)
    got = await first.get("global", "k")
    assert got is not None
    assert (got.version, got.value) == (20, last.value)


# -- delete ----------------------------------------------------------------------------------


async def test_delete_removes_a_live_key_and_says_so(state_store: StateStore) -> None:
    await state_store.set("global", "k", 1)
    assert await state_store.delete("global", "k") is True
    assert await state_store.get("global", "k") is None
    assert await state_store.list("global") == []
    assert await state_store.delete("global", "k") is False


async def test_delete_of_a_missing_key_returns_false(state_store: StateStore) -> None:
    assert await state_store.delete("session", "nope", namespace="ses") is False
    assert await state_store.delete("session", "nope", namespace="ses", expected_version=0) is False


async def test_delete_with_a_stale_version_conflicts_and_keeps_the_entry(
    state_store: StateStore,
) -> None:
    await state_store.set("global", "k", "a")
    await state_store.set("global", "k", "b")
    with pytest.raises(ConflictError) as caught:
        await state_store.delete("global", "k", expected_version=1)
    assert (caught.value.details["expected"], caught.value.details["actual"]) == (1, 2)
    with pytest.raises(ConflictError):
        await state_store.delete("global", "k", expected_version=0)
    got = await state_store.get("global", "k")
    assert got is not None
    assert (got.value, got.version) == ("b", 2)
    assert await state_store.delete("global", "k", expected_version=2) is True
    assert await state_store.get("global", "k") is None


async def test_delete_with_a_version_of_a_missing_key_conflicts(state_store: StateStore) -> None:
    with pytest.raises(ConflictError) as caught:
        await state_store.delete("global", "ghost", expected_version=1)
    assert caught.value.details["actual"] == 0


async def test_set_after_delete_starts_again_at_version_1(state_store: StateStore) -> None:
    await state_store.set("global", "k", 1)
    await state_store.set("global", "k", 2)
    await state_store.delete("global", "k")
    entry = await state_store.set("global", "k", 3, expected_version=0)
    assert entry.version == 1


# -- TTL ------------------------------------------------------------------------------------


async def test_ttl_outside_the_local_scope_is_refused(state_store: StateStore) -> None:
    for scope, namespace in [("global", ""), ("session", "ses_1")]:
        with pytest.raises(InvalidInputError, match="local scope"):
            await state_store.set(scope, "k", 1, namespace=namespace, ttl=10)  # type: ignore[arg-type]
        assert await state_store.get(scope, "k", namespace=namespace) is None  # type: ignore[arg-type]


async def test_ttl_must_be_a_positive_finite_number_of_seconds(state_store: StateStore) -> None:
    for ttl in [0, -1, math.nan, math.inf, "10", True, 10**12]:
        with pytest.raises(InvalidInputError, match="ttl"):
            await state_store.set("local", "k", 1, namespace="run", ttl=ttl)  # type: ignore[arg-type]
    assert await state_store.get("local", "k", namespace="run") is None


async def test_entry_with_ttl_lives_until_its_expiry_then_is_absent(
    state_store: StateStore, clock: ManualClock
) -> None:
    entry = await state_store.set("local", "k", "v", namespace="run", ttl=10)
    assert entry.expires_at == clock.now() + timedelta(seconds=10)
    clock.advance(9.999)
    got = await state_store.get("local", "k", namespace="run")
    assert got is not None
    assert got.expires_at == entry.expires_at
    assert [e.key for e in await state_store.list("local", namespace="run")] == ["k"]
    clock.advance(0.001)  # exactly at expires_at: gone
    assert await state_store.get("local", "k", namespace="run") is None
    assert await state_store.list("local", namespace="run") == []


async def test_fractional_ttl_is_kept_to_the_microsecond(
    state_store: StateStore, clock: ManualClock
) -> None:
    entry = await state_store.set("local", "k", 1, ttl=0.25)
    assert entry.expires_at == clock.now() + timedelta(milliseconds=250)
    clock.advance(0.249)
    assert await state_store.get("local", "k") is not None
    clock.advance(0.001)
    assert await state_store.get("local", "k") is None


async def test_list_skips_expired_entries_and_still_fills_the_limit(
    state_store: StateStore, clock: ManualClock
) -> None:
    for key in ["a", "b", "c"]:
        await state_store.set("local", key, key, namespace="run", ttl=5)
    for key in ["d", "e", "f"]:
        await state_store.set("local", key, key, namespace="run")
    clock.advance(5)
    listed = await state_store.list("local", namespace="run", limit=2)
    assert [e.key for e in listed] == ["d", "e"]
    assert [e.key for e in await state_store.list("local", namespace="run")] == ["d", "e", "f"]


async def test_set_on_an_expired_key_starts_again_at_version_1(
    state_store: StateStore, clock: ManualClock
) -> None:
    await state_store.set("local", "k", 1, ttl=5)
    await state_store.set("local", "k", 2, ttl=5)
    clock.advance(6)
    entry = await state_store.set("local", "k", 3)
    assert entry.version == 1
    assert entry.expires_at is None


async def test_expired_key_counts_as_absent_for_compare_and_set(
    state_store: StateStore, clock: ManualClock
) -> None:
    await state_store.set("local", "k", "old", namespace="run", ttl=5)
    clock.advance(5)
    with pytest.raises(ConflictError) as caught:
        await state_store.set("local", "k", "x", namespace="run", expected_version=1)
    assert caught.value.details["actual"] == 0
    entry = await state_store.set("local", "k", "new", namespace="run", expected_version=0)
    assert (entry.version, entry.value) == (1, "new")


async def test_delete_of_an_expired_key_returns_false(
    state_store: StateStore, clock: ManualClock
) -> None:
    await state_store.set("local", "k", 1, ttl=1)
    clock.advance(2)
    with pytest.raises(ConflictError):
        await state_store.delete("local", "k", expected_version=1)
    assert await state_store.delete("local", "k") is False
    assert await state_store.get("local", "k") is None


async def test_set_without_ttl_makes_an_entry_permanent_again(
    state_store: StateStore, clock: ManualClock
) -> None:
    await state_store.set("local", "k", 1, ttl=5)
    entry = await state_store.set("local", "k", 2)
    assert entry.expires_at is None
    assert entry.version == 2
    clock.advance(3600)
    got = await state_store.get("local", "k")
    assert got is not None
    assert (got.value, got.version, got.expires_at) == (2, 2, None)


async def test_set_with_a_new_ttl_renews_the_expiry(
    state_store: StateStore, clock: ManualClock
) -> None:
    await state_store.set("local", "k", 1, ttl=5)
    clock.advance(4)
    await state_store.set("local", "k", 2, ttl=5, expected_version=1)
    clock.advance(4)
    got = await state_store.get("local", "k")
    assert got is not None
    assert (got.value, got.version) == (2, 2)
    clock.advance(1)
    assert await state_store.get("local", "k") is None


# -- against a reference model ----------------------------------------------------------------


class _Model:
    """The rules of the protocol in a few lines of Python, to compare every backend with."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.rows: dict[tuple[str, str, str], tuple[Any, int, datetime | None]] = {}

    def live(self, address: tuple[str, str, str]) -> tuple[Any, int, datetime | None] | None:
        row = self.rows.get(address)
        if row is None or (row[2] is not None and row[2] <= self.clock.now()):
            return None
        return row

    def set(
        self, address: tuple[str, str, str], value: Any, ttl: float | None, expected: int | None
    ) -> int:
        row = self.live(address)
        current = 0 if row is None else row[1]
        if expected is not None and expected != current:
            raise ConflictError("model", actual=current)
        expires = None if ttl is None else self.clock.now() + timedelta(seconds=ttl)
        self.rows[address] = (value, current + 1, expires)
        return current + 1

    def delete(self, address: tuple[str, str, str], expected: int | None) -> bool:
        row = self.live(address)
        current = 0 if row is None else row[1]
        if expected is not None and expected != current:
            raise ConflictError("model", actual=current)
        self.rows.pop(address, None)
        return current > 0

    def list(self, scope: str, namespace: str, prefix: str, limit: int | None) -> list[Any]:
        keys = sorted(
            k for (s, n, k) in self.rows if (s, n) == (scope, namespace) and k.startswith(prefix)
        )
        out = []
        for key in keys:
            row = self.live((scope, namespace, key))
            if row is not None:
                out.append((key, row[0], row[1]))
        return out[:limit]


async def test_random_operations_match_a_reference_model(
    state_store: StateStore, clock: ManualClock
) -> None:
    rng = random.Random(20260101)
    model = _Model(clock)
    places = [("global", ""), ("session", "ses_1"), ("session", "ses_2"), ("local", "run")]
    keys = ["a", "ab", "a/b", "b", "é", "%", "ä"]
    for step in range(400):
        scope, namespace = rng.choice(places)
        key = rng.choice(keys)
        address = (scope, namespace, key)
        op = rng.random()
        row = model.live(address)
        expected = rng.choice([None, None, 0, 1, 2, 0 if row is None else row[1]])
        if op < 0.45:
            ttl = rng.choice([None, None, 1.0, 3.5]) if scope == "local" else None
            value = rng.choice([step, f"s{step}", [step], {"n": step}, None])
            try:
                want: Any = model.set(address, value, ttl, expected)
            except ConflictError as exc:
                want = ("conflict", exc.details["actual"])
            try:
                entry = await state_store.set(
                    scope,
                    key,
                    value,
                    namespace=namespace,
                    ttl=ttl,
                    expected_version=expected,  # type: ignore[arg-type]
                )
                got: Any = entry.version
            except ConflictError as exc:
                got = ("conflict", exc.details["actual"])
        elif op < 0.6:
            try:
                want = model.delete(address, expected)
            except ConflictError as exc:
                want = ("conflict", exc.details["actual"])
            try:
                got = await state_store.delete(
                    scope, key, namespace=namespace, expected_version=expected
                )  # type: ignore[arg-type]
            except ConflictError as exc:
                got = ("conflict", exc.details["actual"])
        elif op < 0.8:
            want = None if row is None else (row[0], row[1])
            entry_or_none = await state_store.get(scope, key, namespace=namespace)  # type: ignore[arg-type]
            got = None if entry_or_none is None else (entry_or_none.value, entry_or_none.version)
        elif op < 0.95:
            prefix = rng.choice(["", "a", "é", "%", "z"])
            limit = rng.choice([None, 1, 3])
            want = model.list(scope, namespace, prefix, limit)
            listed = await state_store.list(scope, namespace=namespace, prefix=prefix, limit=limit)  # type: ignore[arg-type]
            got = [(e.key, e.value, e.version) for e in listed]
        else:
            clock.advance(rng.choice([0.5, 1.0, 2.0]))
            continue
        assert got == want, (step, op, address, expected)
