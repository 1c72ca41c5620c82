"""Sortable unique ids (ULID): 48-bit millisecond time + 80 random bits, Crockford base32.

Ids made in the same process sort in creation order even within one millisecond,
because the random part is incremented instead of redrawn when the clock has not moved.
"""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {c: i for i, c in enumerate(_ALPHABET)}
_RANDOM_MAX = (1 << 80) - 1
# Every 10-bit value as its two characters: ids are on the hot path of every event and model
# call, and 13 table lookups cost a fraction of 26 single-character steps.
_PAIRS = tuple(a + b for a in _ALPHABET for b in _ALPHABET)

_lock = threading.Lock()
_last_ms = 0
_last_rand = 0
# The first 22 characters of the last id (time and the random part's top 60 bits): ids made
# in the same millisecond differ only by an increment, so mostly just the tail is new.
_last_head = _PAIRS[0] * 11


def _encode_head(ms: int, high: int) -> str:
    """The 10 characters of a 48-bit time (top two bits zero) and 12 of 60 random bits."""
    p = _PAIRS
    return (
        p[ms >> 40]
        + p[(ms >> 30) & 1023]
        + p[(ms >> 20) & 1023]
        + p[(ms >> 10) & 1023]
        + p[ms & 1023]
        + p[high >> 50]
        + p[(high >> 40) & 1023]
        + p[(high >> 30) & 1023]
        + p[(high >> 20) & 1023]
        + p[(high >> 10) & 1023]
        + p[high & 1023]
    )


def new_id(prefix: str = "") -> str:
    """Return a new 26-character ULID, optionally prefixed (``"ses_01J..."``)."""
    global _last_ms, _last_rand, _last_head
    ms = time.time_ns() // 1_000_000
    with _lock:
        if ms <= _last_ms:
            ms = _last_ms
            rand = _last_rand + 1
            if rand > _RANDOM_MAX:  # 2**80 ids in one millisecond: move the clock on.
                ms += 1
                rand = int.from_bytes(os.urandom(10), "big")
        else:
            rand = int.from_bytes(os.urandom(10), "big")
        if ms != _last_ms or rand >> 20 != _last_rand >> 20:
            _last_head = _encode_head(ms, rand >> 20)
        _last_ms, _last_rand = ms, rand
        head = _last_head
    tail = rand & 0xFFFFF
    return prefix + head + _PAIRS[tail >> 10] + _PAIRS[tail & 1023]


def id_timestamp_ms(value: str) -> int:
    """Milliseconds since the epoch at which a ULID (with or without prefix) was made."""
    body = value[-26:].upper()
    number = 0
    for ch in body:
        try:
            number = (number << 5) | _DECODE[ch]
        except KeyError:
            raise ValueError(f"not a ULID: {value!r}") from None
    return number >> 80
