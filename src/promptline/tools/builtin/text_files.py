"""Telling text from binary, and reading a text file a page of lines at a time: what
file_read, read_skill_file, codebase_search and web_get agree to show a model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from promptline.tools.base import ToolError

__all__ = ["SNIFF_BYTES", "looks_binary", "read_text_page"]

SNIFF_BYTES = 8192
"""How much of the start of a file is looked at to decide whether it is binary."""


def looks_binary(data: bytes) -> bool:
    """True when ``data`` (the start of a file) holds a NUL byte.

    The same test git and grep use: text in any ASCII-compatible encoding, UTF-8 included, has
    no NUL bytes, while nearly every binary format has some in its first few kilobytes. UTF-16
    text counts as binary, which is what a model would make of it too.
    """
    return b"\x00" in data[:SNIFF_BYTES]


def read_text_page(
    target: Path | BinaryIO,
    shown: str,
    *,
    tool: str,
    offset: int = 1,
    limit: int | None = None,
    max_bytes: int,
    max_chars: int,
    too_big_hint: str,
    binary_hint: str,
) -> str:
    """Lines of the text file ``target`` (called ``shown`` in messages) from line ``offset``:
    ``limit`` of them, or as many whole lines as fit in ``max_chars``; when the file goes on,
    the text ends saying how to call ``tool`` for the rest. A file over ``max_bytes``, a
    binary one, or an offset past the end is a `ToolError` (with the hints given).
    ``target`` may be a file already open (for reading, in binary)."""
    size = target.stat().st_size if isinstance(target, Path) else os.fstat(target.fileno()).st_size
    if size > max_bytes:
        raise ToolError(
            f"{shown!r} is {size / 1048576:.1f} MiB, more than {tool}'s limit of "
            f"{max_bytes // 1048576} MiB",
            hint=too_big_hint,
        )
    data = target.read_bytes() if isinstance(target, Path) else target.read()
    if looks_binary(data):
        raise ToolError(
            f"{shown!r} is a binary file ({size} bytes); {tool} returns text only",
            hint=binary_hint,
        )
    lines = data.decode("utf-8", errors="replace").splitlines(keepends=True)
    if not lines:
        return "(the file is empty)"
    if offset > len(lines):
        raise ToolError(
            f"offset {offset} is past the end of {shown!r}, which has {len(lines)} lines",
            hint=f"give an offset from 1 to {len(lines)}",
        )
    start = offset - 1
    stop = len(lines) if limit is None else min(len(lines), start + limit)
    taken: list[str] = []
    used = 0
    for line in lines[start:stop]:
        if taken and used + len(line) > max_chars:
            break
        taken.append(line[:max_chars])
        used += len(line)
    last = start + len(taken)  # the number of the last line returned
    text = "".join(taken)
    if last < len(lines) and (limit is None or last < stop):
        text += (
            f"\n[lines {offset}-{last} of {len(lines)}; the rest did not fit in one answer: "
            f"call {tool} with offset={last + 1} to read on]"
        )
    return text
