"""What the settings schema expects at a key path: the type, its limits, whether it may be empty."""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from promptline.config.fieldtypes import is_secret_field
from promptline.config.keypath import KeyPath


@dataclass(frozen=True)
class FieldTarget:
    """The expectation at one key path."""

    annotation: Any
    """The type with ``None`` and ``Annotated`` stripped off."""
    metadata: tuple[Any, ...] = ()
    """Constraints such as ``annotated_types.Ge``."""
    nullable: bool = False
    """True when the key may be left empty (``None``)."""
    secret: bool = False
    """True for credentials, whose values are never echoed."""


def resolve_field(root: type[BaseModel], path: KeyPath) -> FieldTarget | None:
    """The `FieldTarget` at ``path`` below ``root``, or None when the schema has no such key."""
    target = FieldTarget(annotation=root)
    for part in path:
        tp = target.annotation
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            target = _target(field.annotation, tuple(field.metadata))
            if is_secret_field(field.json_schema_extra):
                target = FieldTarget(target.annotation, target.metadata, target.nullable, True)
        elif typing.get_origin(tp) is dict and isinstance(part, str):
            target = _target(typing.get_args(tp)[1], ())
        elif typing.get_origin(tp) is list and isinstance(part, int):
            target = _target(typing.get_args(tp)[0], ())
        else:
            return None
    return target


def _target(annotation: Any, metadata: tuple[Any, ...]) -> FieldTarget:
    nullable = False
    while True:
        if typing.get_origin(annotation) is typing.Annotated:
            for item in annotation.__metadata__:
                # A `Field(ge=1)` nested in a union stays a FieldInfo; its constraints are inside.
                metadata = (*metadata, *(item.metadata if isinstance(item, FieldInfo) else [item]))
            annotation = annotation.__origin__
        elif _is_union(annotation):
            members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            nullable = nullable or len(members) < len(typing.get_args(annotation))
            if len(members) != 1:
                break
            annotation = members[0]
        else:
            break
    return FieldTarget(annotation=annotation, metadata=metadata, nullable=nullable)


def _is_union(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    return origin is typing.Union or origin is types.UnionType


def is_text(target: FieldTarget) -> bool:
    """True when the key holds text (a string, a path or a choice of words)."""
    tp = target.annotation
    return tp is str or tp is Path or typing.get_origin(tp) is Literal


def is_path(target: FieldTarget) -> bool:
    """True when the key holds a filesystem path."""
    return target.annotation is Path


def describe(target: FieldTarget) -> str:
    """The expectation in words, for error messages: "an integer between 1 and 65535"."""
    tp = target.annotation
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(choice) for choice in typing.get_args(tp))
    if tp is bool:
        return "true or false"
    if tp is int:
        return _describe_int(target.metadata)
    if tp is str:
        return "a string"
    if tp is Path:
        return "a file path"
    if typing.get_origin(tp) is list:
        item = _target(typing.get_args(tp)[0], ())
        return f"a list of {_plural(describe(item))}"
    if typing.get_origin(tp) is dict:
        value = _target(typing.get_args(tp)[1], ())
        return f"a mapping of names to {describe(value)}"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        custom = getattr(tp, "config_description", None)
        if isinstance(custom, str):
            return custom
        return "a mapping with the keys " + ", ".join(tp.model_fields)
    return f"a value of type {getattr(tp, '__name__', tp)}"


def _describe_int(metadata: tuple[Any, ...]) -> str:
    low: int | None = None
    high: int | None = None
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            low = int(item.ge)  # type: ignore[call-overload]
        elif isinstance(item, annotated_types.Gt):
            low = int(item.gt) + 1  # type: ignore[call-overload]
        elif isinstance(item, annotated_types.Le):
            high = int(item.le)  # type: ignore[call-overload]
        elif isinstance(item, annotated_types.Lt):
            high = int(item.lt) - 1  # type: ignore[call-overload]
    if low is not None and high is not None:
        return f"an integer between {low} and {high}"
    if low == 1:
        return "a positive integer"
    if low is not None:
        return f"an integer of at least {low}"
    if high is not None:
        return f"an integer of at most {high}"
    return "an integer"


def _plural(description: str) -> str:
    for article in ("an ", "a "):
        if description.startswith(article):
            noun, _, rest = description[len(article) :].partition(" ")
            return f"{noun}s {rest}".strip()
    return description
