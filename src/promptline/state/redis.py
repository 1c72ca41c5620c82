"""State in Redis: one hash per entry, a sorted-set index per namespace, Lua for atomicity.

Keys: ``<prefix>state:{<scope>:<hex namespace>}:<key>`` (a hash with fields ``v`` value,
``ver`` version, ``upd`` updated at, ``exp`` expires at) and ``<prefix>state-index:{…}``
(a sorted set of the namespace's keys, all scored 0 so ``ZRANGEBYLEX`` lists by prefix).
The braces are a cluster hash tag: an entry and its index share a slot, as scripts need.
"""

from __future__ import annotations

import builtins
import contextlib
import math
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from promptline.core.clock import Clock, SystemClock, to_micros
from promptline.core.errors import ServiceUnavailableError, StorageError
from promptline.state.codec import decode_value, encode_value, expiry_micros, is_live, make_entry
from promptline.state.protocols import Scope, StateEntry
from promptline.state.rules import (
    check_address,
    check_listing,
    check_namespace,
    check_write,
    version_conflict,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

# Expiry is judged by the caller's clock (so tests can move time), not by Redis: a version
# is the live one unless ``exp`` lies at or before ``now``.
_LIVE_VERSION = """
local function live_version(key, now)
  local cur = redis.call('HMGET', key, 'ver', 'exp')
  local ver = tonumber(cur[1]) or 0
  if ver > 0 and cur[2] and tonumber(cur[2]) <= now then return 0 end
  return ver
end
"""

# KEYS: entry, index. ARGV: key, value, now, expires_at|'', expected|'', pexpire ms|''.
_SET = (
    _LIVE_VERSION
    + """
local ver = live_version(KEYS[1], tonumber(ARGV[3]))
if ARGV[5] ~= '' and tonumber(ARGV[5]) ~= ver then return {0, ver} end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'ver', ver + 1, 'upd', ARGV[3])
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'exp', ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
else
  redis.call('HDEL', KEYS[1], 'exp')
  redis.call('PERSIST', KEYS[1])
end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return {1, ver + 1}
"""
)

# KEYS: entry, index. ARGV: key, now, expected|''. Returns {done, live version before}.
_DELETE = (
    _LIVE_VERSION
    + """
local ver = live_version(KEYS[1], tonumber(ARGV[2]))
if ARGV[3] ~= '' and tonumber(ARGV[3]) ~= ver then return {0, ver} end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return {1, ver}
"""
)

# KEYS: index. ARGV: entry key base, min, max, now, limit (-1: none).
# Returns key, value, version, updated, expires ('' none) for each live entry; drops index
# members whose hash is gone (Redis expired it) or has expired by the caller's clock.
_LIST = """
local now = tonumber(ARGV[4])
local limit = tonumber(ARGV[5])
local out = {}
local found = 0
local low = ARGV[2]
local batch = 200
while true do
  local members = redis.call('ZRANGEBYLEX', KEYS[1], low, ARGV[3], 'LIMIT', 0, batch)
  for _, member in ipairs(members) do
    if limit >= 0 and found >= limit then return out end
    local entry = ARGV[1] .. member
    local cur = redis.call('HMGET', entry, 'v', 'ver', 'upd', 'exp')
    if not cur[2] then
      redis.call('ZREM', KEYS[1], member)
    elseif cur[4] and tonumber(cur[4]) <= now then
      redis.call('DEL', entry)
      redis.call('ZREM', KEYS[1], member)
    else
      out[#out + 1] = member
      out[#out + 1] = cur[1]
      out[#out + 1] = cur[2]
      out[#out + 1] = cur[3]
      out[#out + 1] = cur[4] or ''
      found = found + 1
    end
  end
  if #members < batch then return out end
  low = '(' .. members[#members]
end
"""


class RedisStateStore:
    """`StateStore` on Redis (standalone, or a cluster thanks to hash tags)."""

    def __init__(
        self,
        url_or_client: str | Redis,
        *,
        prefix: str = "promptline:",
        clock: Clock = SystemClock(),
    ) -> None:
        """Pass a URL (the store opens and closes its client) or a client you own."""
        import redis.asyncio as aioredis

        if isinstance(url_or_client, str):
            self._client: Redis = aioredis.Redis.from_url(url_or_client)
            self._owns_client = True
        else:
            self._client = url_or_client
            self._owns_client = False
        self._prefix = prefix
        self._clock = clock
        self._set_script = self._client.register_script(_SET)
        self._delete_script = self._client.register_script(_DELETE)
        self._list_script = self._client.register_script(_LIST)

    async def get(self, scope: Scope, key: str, *, namespace: str = "") -> StateEntry | None:
        """The live entry, or None (also when it has expired)."""
        check_address(scope, namespace, key)
        now = to_micros(self._clock.now())
        entry_key = self._entry_base(scope, namespace) + key
        async with _translated("reading state"):
            raw = await self._client.hmget(entry_key, ["v", "ver", "upd", "exp"])
        value, version, updated, expires = raw
        if value is None or version is None or updated is None:
            return None
        expires_at = _optional_int(expires)
        if not is_live(expires_at, now):
            return None
        return make_entry(
            scope,
            namespace,
            key,
            decode_value(value, key=key),
            int(version),
            int(updated),
            expires_at,
        )

    async def set(
        self,
        scope: Scope,
        key: str,
        value: Any,
        *,
        namespace: str = "",
        ttl: float | None = None,
        expected_version: int | None = None,
    ) -> StateEntry:
        """Write ``value``; a compare-and-set when ``expected_version`` is given."""
        check_address(scope, namespace, key)
        check_write(scope, ttl, expected_version)
        data = encode_value(key, value)
        now = to_micros(self._clock.now())
        expires_at = expiry_micros(now, ttl)
        # Redis frees the hash by itself a little after the logical expiry; never before.
        pexpire = "" if ttl is None else str(max(1, math.ceil(ttl * 1000)))
        async with _translated("writing state"):
            done, version = await self._set_script(
                keys=[self._entry_base(scope, namespace) + key, self._index(scope, namespace)],
                args=[
                    key,
                    data,
                    now,
                    "" if expires_at is None else expires_at,
                    "" if expected_version is None else expected_version,
                    pexpire,
                ],
            )
        if not done:
            assert expected_version is not None
            raise version_conflict(
                scope, namespace, key, expected=expected_version, actual=int(version)
            )
        return make_entry(
            scope, namespace, key, decode_value(data, key=key), int(version), now, expires_at
        )

    async def delete(
        self, scope: Scope, key: str, *, namespace: str = "", expected_version: int | None = None
    ) -> bool:
        """Remove the key; True if it was live. ``expected_version`` as in `set`."""
        check_address(scope, namespace, key)
        check_write(scope, None, expected_version)
        now = to_micros(self._clock.now())
        async with _translated("deleting state"):
            done, version = await self._delete_script(
                keys=[self._entry_base(scope, namespace) + key, self._index(scope, namespace)],
                args=[key, now, "" if expected_version is None else expected_version],
            )
        if not done:
            assert expected_version is not None
            raise version_conflict(
                scope, namespace, key, expected=expected_version, actual=int(version)
            )
        return int(version) > 0

    async def list(
        self, scope: Scope, *, namespace: str = "", prefix: str = "", limit: int | None = None
    ) -> builtins.list[StateEntry]:
        """Live entries whose key starts with ``prefix``, sorted by key, at most ``limit``."""
        check_namespace(scope, namespace)
        check_listing(prefix, limit)
        if limit == 0:
            return []
        now = to_micros(self._clock.now())
        if prefix:
            # Valid UTF-8 never contains 0xFF, so it bounds every key that has the prefix.
            low: bytes = b"[" + prefix.encode("utf-8")
            high: bytes = b"(" + prefix.encode("utf-8") + b"\xff"
        else:
            low, high = b"-", b"+"
        async with _translated("listing state"):
            flat = await self._list_script(
                keys=[self._index(scope, namespace)],
                args=[
                    self._entry_base(scope, namespace),
                    low,
                    high,
                    now,
                    -1 if limit is None else limit,
                ],
            )
        entries = []
        for i in range(0, len(flat), 5):
            member, value, version, updated, expires = flat[i : i + 5]
            key = member.decode("utf-8") if isinstance(member, bytes) else member
            entries.append(
                make_entry(
                    scope,
                    namespace,
                    key,
                    decode_value(value, key=key),
                    int(version),
                    int(updated),
                    _optional_int(expires),
                )
            )
        return entries

    async def close(self) -> None:
        """Close the client if this store opened it."""
        if self._owns_client:
            await self._client.aclose()

    def _tag(self, scope: Scope, namespace: str) -> str:
        # Hex keeps braces, colons and any other byte of the namespace out of the key syntax.
        return "{" + scope + ":" + namespace.encode("utf-8").hex() + "}"

    def _entry_base(self, scope: Scope, namespace: str) -> str:
        return f"{self._prefix}state:{self._tag(scope, namespace)}:"

    def _index(self, scope: Scope, namespace: str) -> str:
        return f"{self._prefix}state-index:{self._tag(scope, namespace)}"


def _optional_int(raw: bytes | str | None) -> int | None:
    return None if raw is None or raw in (b"", "") else int(raw)


@contextlib.asynccontextmanager
async def _translated(what: str) -> AsyncIterator[None]:
    """Turn redis-py errors into ours: an unreachable server, or anything else."""
    from redis.exceptions import ConnectionError, RedisError, TimeoutError

    try:
        yield
    except (ConnectionError, TimeoutError, OSError) as exc:
        raise ServiceUnavailableError(
            f"{what}: Redis does not answer ({exc})",
            hint="check that Redis runs and state.redis_url points at it",
        ) from exc
    except RedisError as exc:
        raise StorageError(f"{what}: Redis refused the command ({exc})") from exc
