"""``${VAR}`` / ``${VAR:-default}`` substitution in string values; ``$$`` is a literal ``$``.

A reference to an unset variable without a default does not fail here: the whole value becomes
`Unresolved`, and the loader decides whether the key may stay empty.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SYNTAX_HINT = "write ${NAME} or ${NAME:-default}, and $$ for a literal $"


@dataclass(frozen=True)
class Unresolved:
    """A value that referenced the unset environment variable ``var`` (and had no default)."""

    var: str


class InterpolationSyntaxError(ValueError):
    """A ``${`` that is not a well-formed reference."""


def interpolate(text: str, environ: Mapping[str, str]) -> str | Unresolved:
    """Substitute every reference in ``text`` from ``environ``.

    ``${VAR:-default}`` uses the default when VAR is unset or empty (shell semantics) and the
    default may itself contain references. A ``$`` followed by anything else stays as it is.
    Raises `InterpolationSyntaxError` for a malformed reference (its message never repeats
    ``text``, which may be a secret).
    """
    if "$" not in text:
        return text
    value, _, missing = _expand(text, 0, environ, nested=False)
    return Unresolved(missing) if missing is not None else value


def _expand(
    text: str, pos: int, environ: Mapping[str, str], *, nested: bool
) -> tuple[str, int, str | None]:
    """Expand from ``pos`` to the end (or, when ``nested``, to the closing ``}``)."""
    parts: list[str] = []
    missing: str | None = None
    while pos < len(text):
        char = text[pos]
        if char == "$" and text.startswith("$$", pos):
            parts.append("$")
            pos += 2
        elif char == "$" and text.startswith("${", pos):
            value, pos, absent = _reference(text, pos + 2, environ)
            parts.append(value)
            missing = missing or absent
        elif nested and char == "}":
            return "".join(parts), pos, missing
        else:
            parts.append(char)
            pos += 1
    if nested:
        raise InterpolationSyntaxError("unterminated '${'")
    return "".join(parts), pos, missing


def _reference(text: str, pos: int, environ: Mapping[str, str]) -> tuple[str, int, str | None]:
    """Read ``NAME}`` or ``NAME:-default}`` starting at ``pos``; return value, end, missing var."""
    match = _NAME.match(text, pos)
    if match is None:
        raise InterpolationSyntaxError(
            f"expected a variable name after the '${{' at character {pos - 1}"
        )
    name = match.group()
    pos = match.end()
    value = environ.get(name)
    if text.startswith("}", pos):
        return ("", pos + 1, name) if value is None else (value, pos + 1, None)
    if text.startswith(":-", pos):
        default, pos, absent = _expand(text, pos + 2, environ, nested=True)
        if value:
            return value, pos + 1, None
        return default, pos + 1, absent
    if pos >= len(text):
        raise InterpolationSyntaxError("unterminated '${'")
    raise InterpolationSyntaxError(
        f"unexpected {text[pos]!r} after '${{{name}'; only ${{{name}}} and "
        f"${{{name}:-default}} are understood"
    )
