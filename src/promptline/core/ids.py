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

_lock = threading.Lock()
_last_ms = 0
_last_rand = 0


def _encode(value: int) -> str:
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str = "") -> str:
    """Return a new 26-character ULID, optionally prefixed (``"ses_01J..."``)."""
    global _last_ms, _last_rand
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
        _last_ms, _last_rand = ms, rand
    return prefix + _encode((ms << 80) | rand)


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
