"""What a name a caller gives may be (a session id, a channel): letters, digits and
``_ . : @ -``, starting with a letter or digit; and how a tool name matches a pattern."""

from __future__ import annotations

import fnmatch
import re

__all__ = ["MAX_CHANNEL", "NAME_PATTERN", "matches"]

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]*")
"""A session id or a channel name (whole-string match)."""

MAX_CHANNEL = 64
"""The longest channel name a session stores."""


def matches(pattern: str, name: str) -> bool:
    """True when tool ``name`` matches ``pattern`` (``*`` and ``?`` wildcards, ``git_*``,
    ``mcp.*``; a pattern without wildcards matches the name exactly)."""
    if pattern == name:
        return True
    return any(c in pattern for c in "*?[") and fnmatch.fnmatchcase(name, pattern)
