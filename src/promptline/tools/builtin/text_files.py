"""Telling text from binary: what file_read, codebase_search and web_get agree to show a model."""

from __future__ import annotations

__all__ = ["SNIFF_BYTES", "looks_binary"]

SNIFF_BYTES = 8192
"""How much of the start of a file is looked at to decide whether it is binary."""


def looks_binary(data: bytes) -> bool:
    """True when ``data`` (the start of a file) holds a NUL byte.

    The same test git and grep use: text in any ASCII-compatible encoding, UTF-8 included, has
    no NUL bytes, while nearly every binary format has some in its first few kilobytes. UTF-16
    text counts as binary, which is what a model would make of it too.
    """
    return b"\x00" in data[:SNIFF_BYTES]
