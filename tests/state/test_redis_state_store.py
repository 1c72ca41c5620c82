"""What only the Redis backend promises: Redis frees expired entries by itself, listing
repairs its index, and a client passed in stays the caller's."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from promptline.core.clock import ManualClock
from promptline.core.errors import ServiceUnavailableError
from promptline.state.redis import RedisStateStore

pytestmark = pytest.mark.redis


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(client: aioredis.Redis, redis_prefix: str, clock: ManualClock) -> RedisStateStore:
    return RedisStateStore(client, prefix=redis_prefix, clock=clock)


async def _keys(client: aioredis.Redis, prefix: str) -> list[bytes]:
    return sorted([k async for k in client.scan_iter(match=prefix + "*")])


async def test_ttl_also_sets_a_redis_expiry_and_no_ttl_clears_it(
    store: RedisStateStore, client: aioredis.Redis, redis_prefix: str
) -> None:
    await store.set("local", "k", 1, namespace="run", ttl=30)
    (entry_key,) = [k for k in await _keys(client, redis_prefix) if b"state:" in k]
    pttl = await client.pttl(entry_key)
    assert 0 < pttl <= 30_000
    await store.set("local", "k", 2, namespace="run")
    assert await client.pttl(entry_key) == -1


async def test_list_drops_index_members_whose_entry_redis_already_freed(
    store: RedisStateStore, client: aioredis.Redis, redis_prefix: str
) -> None:
    for key in ["a", "b", "c"]:
        await store.set("local", key, key, namespace="run", ttl=60)
    entry_keys = [k for k in await _keys(client, redis_prefix) if b"state:" in k]
    (index_key,) = [k for k in await _keys(client, redis_prefix) if b"state-index:" in k]
    await client.delete(entry_keys[1])  # as if Redis had expired "b" on its own
    assert [e.key for e in await store.list("local", namespace="run")] == ["a", "c"]
    assert await client.zrange(index_key, 0, -1) == [b"a", b"c"]


async def test_list_deletes_entries_expired_by_the_clock(
    store: RedisStateStore, client: aioredis.Redis, redis_prefix: str, clock: ManualClock
) -> None:
    await store.set("local", "gone", 1, namespace="run", ttl=5)
    await store.set("local", "kept", 2, namespace="run")
    clock.advance(5)
    assert [e.key for e in await store.list("local", namespace="run")] == ["kept"]
    remaining = await _keys(client, redis_prefix)
    assert len(remaining) == 2  # the kept entry and the index
    assert all(b"gone" not in k for k in remaining)


async def test_listing_more_entries_than_one_script_batch(store: RedisStateStore) -> None:
    keys = [f"k{i:04d}" for i in range(450)]
    for key in keys:
        await store.set("global", key, key)
    assert [e.key for e in await store.list("global")] == keys
    assert [e.key for e in await store.list("global", prefix="k03", limit=7)] == keys[300:307]


async def test_a_client_passed_in_is_left_open(
    store: RedisStateStore, client: aioredis.Redis
) -> None:
    await store.close()
    assert await client.ping()


async def test_a_client_decoding_responses_works_too(
    redis_url: str, redis_prefix: str, clock: ManualClock
) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    store = RedisStateStore(client, prefix=redis_prefix, clock=clock)
    try:
        await store.set("local", "ключ", {"v": "значение"}, ttl=10)
        entry = await store.get("local", "ключ")
        assert entry is not None
        assert entry.value == {"v": "значение"}
        assert [e.key for e in await store.list("local", prefix="кл")] == ["ключ"]
    finally:
        await client.aclose()


async def test_an_unreachable_server_is_service_unavailable() -> None:
    store = RedisStateStore("redis://127.0.0.1:1/0")
    try:
        with pytest.raises(ServiceUnavailableError) as caught:
            await store.get("global", "k")
        assert "state.redis_url" in (caught.value.hint or "")
    finally:
        await store.close()
