"""Key paths: how a place in the settings tree is written, e.g. ``models.providers.x.models[0]``."""

from __future__ import annotations

import re

KeyPath = tuple[str | int, ...]
"""A place in the settings tree: mapping keys are strings, list positions are ints."""

_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def format_path(path: KeyPath) -> str:
    """Write ``("a", "b", 0)`` as ``a.b[0]``; the empty path is ``<root>``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "<root>"


def parse_path(text: str) -> KeyPath:
    """Read ``a.b[0]`` back into ``("a", "b", 0)``; raises ``ValueError`` when malformed."""
    parts: list[str | int] = []
    pos = 0
    while pos < len(text):
        if parts and text[pos] == ".":
            pos += 1
        elif parts and text[pos] != "[":
            raise ValueError(f"malformed key path {text!r}")
        match = _PART.match(text, pos)
        if match is None or (match.group(1) is not None and parts and text[pos - 1] != "."):
            raise ValueError(f"malformed key path {text!r}")
        name, index = match.groups()
        parts.append(int(index) if index is not None else name)
        pos = match.end()
    if not parts:
        raise ValueError("empty key path")
    return tuple(parts)
