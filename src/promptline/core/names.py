"""What a name a caller gives may be (a session id, a channel): letters, digits and
``_ . : @ -``, starting with a letter or digit."""

from __future__ import annotations

import re

__all__ = ["MAX_CHANNEL", "NAME_PATTERN"]

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]*")
"""A session id or a channel name (whole-string match)."""

MAX_CHANNEL = 64
"""The longest channel name a session stores."""
