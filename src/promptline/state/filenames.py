"""Reversible, filesystem-safe file names for state keys and namespaces.

Only ``a-z 0-9 _ -`` (and ``.`` after the first character) appear as themselves; every other
byte of the UTF-8 form becomes ``%XX``. So no name is ``.``, ``..``, hidden, contains a
separator or NUL, or differs only by case or Unicode normalisation (both of which macOS
file systems ignore). Names too long for a file system keep a readable head and end in
``~`` and a hash of the full text; those cannot be decoded, so the file holds the key too.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import unquote_to_bytes

_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_-")
_DOT = ord(".")
# Well under the 255-byte limit of common file systems, leaving room for a suffix.
MAX_ENCODED = 120
HASH_MARK = "~"
_HASH_CHARS = 32
_HEAD = MAX_ENCODED - len(HASH_MARK) - _HASH_CHARS
_ENCODED = re.compile(r"(?:[a-z0-9_.\-]|%[0-9A-F]{2})*")


def encode_name(text: str) -> str:
    """A file name for ``text`` (which must be valid Unicode)."""
    parts: list[str] = []
    for index, byte in enumerate(text.encode("utf-8")):
        if byte in _SAFE or (byte == _DOT and index > 0):
            parts.append(chr(byte))
        else:
            parts.append(f"%{byte:02X}")
    encoded = "".join(parts)
    if len(encoded) <= MAX_ENCODED:
        return encoded
    head = encoded[:_HEAD]
    # Never cut a %XX escape in half: drop a partial escape at the end of the head.
    cut = head.rfind("%", len(head) - 2)
    if cut != -1:
        head = head[:cut]
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:_HASH_CHARS]
    return f"{head}{HASH_MARK}{digest}"


def decode_name(name: str) -> tuple[bytes, bool]:
    """The UTF-8 bytes a name stands for, and whether they are only a prefix (hashed name).

    Raises ValueError for a name `encode_name` cannot have produced.
    """
    hashed = HASH_MARK in name
    visible = name.split(HASH_MARK, 1)[0] if hashed else name
    if not visible and not hashed:
        raise ValueError("empty name")
    if not _ENCODED.fullmatch(visible) or visible.startswith("."):
        raise ValueError(f"not an encoded name: {name!r}")
    return unquote_to_bytes(visible), hashed
