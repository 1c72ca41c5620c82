"""The skill list of a system prompt: each skill's name and one-line description, kept within a
number of characters by shortening descriptions, then by naming the last skills only."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["MIN_DESCRIPTION_CHARS", "SKILLS_HEADER", "render_skill_list"]

SKILLS_HEADER = (
    "Skills: when a request matches one, call use_skill with its name first, then follow it."
)
"""The first line of the section; the tools' names are part of the contract."""

MIN_DESCRIPTION_CHARS = 24
"""Descriptions are not shortened below this (shorter ones tell the model nothing)."""

_ELLIPSIS = "…"


def render_skill_list(skills: Sequence[tuple[str, str]], max_chars: int) -> str | None:
    """The prompt section listing ``skills`` (``(name, one-line description)``, in the order to
    show), at most ``max_chars`` long; None when there is no skill or no room for any."""
    if not skills:
        return None
    text = _compose(skills, None)
    if len(text) <= max_chars:
        return text
    longest = max(len(d) for _, d in skills)
    if len(_compose(skills, MIN_DESCRIPTION_CHARS)) <= max_chars:
        # The longest common description length that fits.
        low, high = MIN_DESCRIPTION_CHARS, longest
        while low < high:
            middle = (low + high + 1) // 2
            if len(_compose(skills, middle)) <= max_chars:
                low = middle
            else:
                high = middle - 1
        return _compose(skills, low)
    # Too many skills: the first ones described briefly, the rest by name only.
    low, high = 0, len(skills) - 1
    while low < high:
        middle = (low + high + 1) // 2
        if len(_compose_split(skills, middle, max_chars)) <= max_chars:
            low = middle
        else:
            high = middle - 1
    text = _compose_split(skills, low, max_chars)
    return text if len(text) <= max_chars else None


def _shorten(text: str, limit: int | None) -> str:
    if limit is None or len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)].rstrip() + _ELLIPSIS


def _compose(skills: Sequence[tuple[str, str]], limit: int | None) -> str:
    lines = [SKILLS_HEADER]
    lines.extend(f"- {name}: {_shorten(summary, limit)}" for name, summary in skills)
    return "\n".join(lines)


def _compose_split(skills: Sequence[tuple[str, str]], described: int, max_chars: int) -> str:
    """The first ``described`` skills with short descriptions, then the others' names on one
    line, cut (with how many were left out) where the room ends."""
    head = _compose(skills[:described], MIN_DESCRIPTION_CHARS)
    rest = [name for name, _ in skills[described:]]
    prefix = "- also: "
    room = max_chars - len(head) - 1 - len(prefix)
    shown: list[str] = []
    for index, name in enumerate(rest):
        left = len(rest) - index - 1
        tail = f", and {left} more" if left else ""
        candidate = ", ".join([*shown, name])
        if len(candidate) + len(tail) > room:
            break
        shown.append(name)
    omitted = len(rest) - len(shown)
    line = ", ".join(shown) if shown else ""
    if omitted:
        line = f"{line}, and {omitted} more" if line else f"{omitted} more skills"
    return f"{head}\n{prefix}{line}"
