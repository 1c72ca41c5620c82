"""``${VAR}`` / ``${VAR:-default}`` substitution in string values; ``$$`` is a literal ``$``;
``${secret:NAME}`` is a value of the encrypted secret store.

A reference to an unset variable without a default does not fail here: the whole value becomes
`Unresolved`, and the loader decides whether the key may stay empty. A value that took a secret
comes back as `SecretText`, so the loader knows where secrets landed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET_PREFIX = "secret:"
SYNTAX_HINT = "write ${NAME} or ${NAME:-default}, ${secret:NAME}, and $$ for a literal $"

SecretLookup = Callable[[str], str]
"""The value of a named secret; raises (a `ConfigError`) when it cannot be had."""


class SecretText(str):
    """A value that took a secret: the text itself, plus the value as written (``template``)
    and the secrets it names, so the value can be shown as written instead of as it is."""

    template: str
    names: tuple[str, ...]

    def __new__(cls, value: str, template: str, names: tuple[str, ...]) -> SecretText:
        made = super().__new__(cls, value)
        made.template = template
        made.names = names
        return made

    def __repr__(self) -> str:
        # Whatever prints it by accident (an error message, a log line) shows it as written.
        return repr(self.template)

    def __reduce__(self) -> tuple[object, ...]:
        # Copies (the layers' deep merge) keep the marker.
        return (SecretText, (str(self), self.template, self.names))


@dataclass(frozen=True)
class Unresolved:
    """A value that referenced the unset environment variable ``var`` (and had no default)."""

    var: str


class InterpolationSyntaxError(ValueError):
    """A ``${`` that is not a well-formed reference."""


def interpolate(
    text: str, environ: Mapping[str, str], secrets: SecretLookup | None = None
) -> str | Unresolved:
    """Substitute every reference in ``text`` from ``environ`` (and ``secrets``).

    ``${VAR:-default}`` uses the default when VAR is unset or empty (shell semantics) and the
    default may itself contain references; a default that is not used is not looked up.
    A ``$`` followed by anything else stays as it is. Raises `InterpolationSyntaxError` for a
    malformed reference (its message never repeats ``text``, which may be a secret), or for a
    ``${secret:NAME}`` when ``secrets`` is None.
    """
    if "$" not in text:
        return text
    scope = _Scope(environ, secrets)
    value, _, missing = _expand(text, 0, scope, nested=False)
    if missing is not None:
        return Unresolved(missing)
    return SecretText(value, text, tuple(scope.used)) if scope.used else value


@dataclass
class _Scope:
    environ: Mapping[str, str]
    secrets: SecretLookup | None
    live: bool = True
    """False inside a default that is not used: its secrets are not looked up."""
    used: list[str] = field(default_factory=list)


def _expand(text: str, pos: int, scope: _Scope, *, nested: bool) -> tuple[str, int, str | None]:
    """Expand from ``pos`` to the end (or, when ``nested``, to the closing ``}``)."""
    parts: list[str] = []
    missing: str | None = None
    while pos < len(text):
        char = text[pos]
        if char == "$" and text.startswith("$$", pos):
            parts.append("$")
            pos += 2
        elif char == "$" and text.startswith("${" + _SECRET_PREFIX, pos):
            value, pos = _secret(text, pos + 2 + len(_SECRET_PREFIX), scope)
            parts.append(value)
        elif char == "$" and text.startswith("${", pos):
            value, pos, absent = _reference(text, pos + 2, scope)
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


def _secret(text: str, pos: int, scope: _Scope) -> tuple[str, int]:
    """Read ``NAME}`` of a ``${secret:NAME}`` starting at ``pos``; return value and end."""
    from promptline.config.secrets import SECRET_NAME

    match = SECRET_NAME.match(text, pos)
    if match is None or not text.startswith("}", match.end()):
        raise InterpolationSyntaxError(
            f"expected a secret name and '}}' after the '${{secret:' at character "
            f"{pos - 2 - len(_SECRET_PREFIX)} (a name is an upper-case letter, then upper-case "
            "letters, digits and _)"
        )
    name = match.group()
    if not scope.live:
        return "", match.end() + 1
    if scope.secrets is None:
        raise InterpolationSyntaxError(f"${{secret:{name}}} is not understood here")
    scope.used.append(name)
    return scope.secrets(name), match.end() + 1


def _reference(text: str, pos: int, scope: _Scope) -> tuple[str, int, str | None]:
    """Read ``NAME}`` or ``NAME:-default}`` starting at ``pos``; return value, end, missing var."""
    match = _NAME.match(text, pos)
    if match is None:
        raise InterpolationSyntaxError(
            f"expected a variable name after the '${{' at character {pos - 1}"
        )
    name = match.group()
    pos = match.end()
    value = scope.environ.get(name)
    if text.startswith("}", pos):
        return ("", pos + 1, name) if value is None else (value, pos + 1, None)
    if text.startswith(":-", pos):
        live = scope.live
        scope.live = live and not value
        try:
            default, pos, absent = _expand(text, pos + 2, scope, nested=True)
        finally:
            scope.live = live
        if value:
            return value, pos + 1, None
        return default, pos + 1, absent
    if pos >= len(text):
        raise InterpolationSyntaxError("unterminated '${'")
    raise InterpolationSyntaxError(
        f"unexpected {text[pos]!r} after '${{{name}'; only ${{{name}}} and "
        f"${{{name}:-default}} are understood"
    )
