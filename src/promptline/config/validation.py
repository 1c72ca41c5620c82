"""Pydantic's validation errors as `ConfigIssue`s naming the source, the key and what is allowed."""

from __future__ import annotations

import difflib
import typing
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from promptline.config.fieldpath import FieldTarget, describe, resolve_field
from promptline.config.interpolation import Unresolved
from promptline.config.issues import ConfigIssue
from promptline.config.keypath import KeyPath
from promptline.config.layers import MergedLayers

# Errors from our own validators carry a sentence of their own; all others are type/range errors.
_OWN_MESSAGE = {"value_error", "assertion_error"}


def validation_issues(
    exc: ValidationError, root: type[BaseModel], merged: MergedLayers
) -> list[ConfigIssue]:
    """One issue per pydantic error, attributed to the file line or variable that set the key."""
    issues = []
    for error in exc.errors(include_url=False):
        path: KeyPath = tuple(error["loc"])
        issues.append(
            ConfigIssue(_message(error, path, root), key=path or None, origin=merged.origin(path))
        )
    return issues


def _message(error: Any, path: KeyPath, root: type[BaseModel]) -> str:
    kind: str = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        return _unknown_key(path, root)
    if isinstance(value, Unresolved):
        return (
            f"needs environment variable {value.var}, which is not set, and this key cannot be "
            f"empty; export {value.var}=... or write ${{{value.var}:-default}}"
        )
    if kind in _OWN_MESSAGE:
        return str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    target = resolve_field(root, path)
    if target is None:
        return str(error["msg"])
    message = f"expected {describe(target)}, got {_shown(value, target)}"
    guess = _closest_choice(value, target)
    if guess is not None:
        message += f" (did you mean {guess!r}?)"
    elif target.annotation is str and isinstance(value, int | float | bool):
        message += "; put quotes around it to make it text"
    return message


def _unknown_key(path: KeyPath, root: type[BaseModel]) -> str:
    key = str(path[-1])
    parent = resolve_field(root, path[:-1])
    allowed: list[str] = []
    model = parent.annotation if parent is not None else None
    if isinstance(model, type) and issubclass(model, BaseModel):
        allowed = list(model.model_fields)
    if key == "profiles" and len(path) == 1:
        return (
            "unknown key 'profiles': profile blocks belong in the main config file, not in a "
            "profile block or overlay file"
        )
    close = difflib.get_close_matches(key, allowed, n=1)
    guess = f" (did you mean {close[0]!r}?)" if close else ""
    allowed_text = f"; allowed here: {', '.join(allowed)}" if allowed else ""
    return f"unknown key {key!r}{guess}{allowed_text}"


def _closest_choice(value: Any, target: FieldTarget) -> str | None:
    if typing.get_origin(target.annotation) is not Literal or not isinstance(value, str):
        return None
    choices = [str(choice) for choice in typing.get_args(target.annotation)]
    close = difflib.get_close_matches(value.lower(), choices, n=1)
    return close[0] if close else None


def _shown(value: Any, target: FieldTarget) -> str:
    """The offending value as the user would recognise it; secrets only by kind."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if target.secret:
        return f"a value of type {type(value).__name__}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
