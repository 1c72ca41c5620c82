"""Keys built from several ids (a tenant and a user, a tenant and a key...): each part is
escaped before the parts are joined, so two different tuples of ids never give the same key.

Joining raw ids with a separator is ambiguous as soon as an id may hold the separator: the
tenant ``t1:x`` with the user ``y`` and the tenant ``t1`` with the user ``x:y`` would both be
``t1:x:y``. `join_key` percent-encodes, in every part, the separator and ``%`` itself (and
nothing else), so the separators left in a key are exactly the ones between parts, and
`split_key` gives the parts back. Ids holding neither character come out unchanged, which
keeps keys made before escaping was introduced where they were.

A joined key is text like any other: where it ends up in a file name or a Redis key, the
backend's own encoding (`promptline.state.filenames`, the Redis state store's hex
namespaces) still applies on top.
"""

from __future__ import annotations

import re

__all__ = ["join_key", "key_part", "split_key"]

_ESCAPES: dict[str, re.Pattern[str]] = {}


def key_part(value: str, sep: str = ":") -> str:
    """``value`` escaped for a key whose parts are separated by ``sep``: ``%`` becomes
    ``%25`` and ``sep`` its own ``%XX`` form; every other character stays as it is."""
    _check_sep(sep)
    if not isinstance(value, str):
        raise TypeError(f"a key part must be a string, not {type(value).__name__}")
    if "%" not in value and sep not in value:
        return value
    return value.translate({ord("%"): "%25", ord(sep): _escape(sep)})


def join_key(*parts: str, sep: str = ":") -> str:
    """The key of ``parts``, each escaped with `key_part` and joined by ``sep``.

    Distinct tuples give distinct keys (tuples of different lengths included), and
    `split_key` with the same ``sep`` returns the parts.
    """
    if not parts:
        raise ValueError("a key needs at least one part")
    return sep.join(key_part(part, sep) for part in parts)


def split_key(key: str, sep: str = ":") -> tuple[str, ...]:
    """The parts `join_key` made ``key`` of; `ValueError` for text it cannot have made."""
    _check_sep(sep)
    escape = _escape(sep)
    pattern = _ESCAPES.get(sep)
    if pattern is None:
        pattern = _ESCAPES[sep] = re.compile("%(?:25|" + re.escape(escape[1:]) + ")?")

    def unescape(match: re.Match[str]) -> str:
        if match.group() == "%":
            raise ValueError(f"{key!r} was not made by join_key: it holds a stray '%'")
        return "%" if match.group() == "%25" else sep

    return tuple(pattern.sub(unescape, part) for part in key.split(sep))


def _escape(sep: str) -> str:
    return "".join(f"%{byte:02X}" for byte in sep.encode("utf-8"))


def _check_sep(sep: str) -> None:
    # A letter or digit could be part of an escape ("%3A") and split one in two.
    if not isinstance(sep, str) or len(sep) != 1 or sep == "%" or sep.isalnum():
        raise ValueError(f"a key separator is one character, not a letter, digit or '%': {sep!r}")
