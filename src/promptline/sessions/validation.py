"""Checks on what callers hand the session manager: names, JSON values, messages and sizes.

Every check raises `InvalidInputError` naming the field and saying how to fix it, before
anything is written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from promptline.core.errors import InvalidInputError
from promptline.core.jsonvalues import INT64_HINT, fits_int64, int_text
from promptline.core.messages import Message
from promptline.core.names import NAME_PATTERN
from promptline.core.sandbox import SANDBOX_CHOICES, SandboxChoice
from promptline.sessions.models import PermissionSet, ToolRef

MAX_SESSION_ID = 64
M = TypeVar("M", bound=BaseModel)


def check_name(value: Any, field: str, *, max_length: int) -> str:
    """A session id or channel: letters, digits and ``_ . : @ -``, not empty, not too long."""
    if not isinstance(value, str):
        raise InvalidInputError(
            f"{field} must be a string, not {type(value).__name__}",
            hint=f"pass {field} as text, e.g. 'cli'",
            field=field,
        )
    if len(value) > max_length or not NAME_PATTERN.fullmatch(value):
        raise InvalidInputError(
            f"{field} {value[:80]!r} is not a valid name",
            hint=f"use 1 to {max_length} letters, digits or _ . : @ - (starting with a letter "
            "or digit)",
            field=field,
        )
    return value


def check_sandbox(value: Any, field: str = "sandbox") -> SandboxChoice:
    """A session's sandbox: one of ``auto``, ``none``, ``process``, ``bubblewrap``,
    ``docker``."""
    for choice in SANDBOX_CHOICES:
        if value == choice:
            return choice
    raise InvalidInputError(
        f"{field} {str(value)[:80]!r} is not a sandbox",
        hint=f"use one of {', '.join(SANDBOX_CHOICES)} (none: the session tightens nothing)",
        field=field,
    )


def check_when(value: Any, field: str) -> datetime:
    """A timezone-aware datetime."""
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidInputError(
            f"{field} must be a timezone-aware datetime, not {value!r}",
            hint="pass e.g. datetime.now(UTC) + timedelta(days=1)",
            field=field,
        )
    return value


def check_json_object(value: Any, field: str, *, max_bytes: int) -> dict[str, Any]:
    """A JSON object (string keys; strings, numbers, booleans, null, lists, objects) in size."""
    if not isinstance(value, Mapping):
        raise InvalidInputError(
            f"{field} must be a JSON object (a dict), not {type(value).__name__}",
            hint=f"pass {field} as a dict, e.g. {{'topic': 'billing'}}",
            field=field,
        )
    _check_json(value, field)
    check_size(encode_json(value), field, max_bytes=max_bytes)
    return dict(value)


def check_tools(value: Any, *, max_bytes: int) -> list[ToolRef]:
    """Tool references: `ToolRef`, a dict of its fields, or a bare tool name."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)):
        raise InvalidInputError(
            f"tools must be a list, not {type(value).__name__}",
            hint="pass e.g. ['file_read', {'name': 'shell', 'config': {'cwd': '/tmp'}}]",
            field="tools",
        )
    refs: list[ToolRef] = []
    for index, item in enumerate(value):
        if isinstance(item, ToolRef):
            refs.append(item)
        elif isinstance(item, str):
            refs.append(validate_model(ToolRef, {"name": item}, f"tools.{index}"))
        else:
            refs.append(validate_model(ToolRef, item, f"tools.{index}"))
    for index, ref in enumerate(refs):
        _check_json(ref.config, f"tools.{index}.config")
    check_size(encode_json([r.model_dump() for r in refs]), "tools", max_bytes=max_bytes)
    return refs


def check_permissions(value: Any, *, max_bytes: int) -> PermissionSet:
    """A `PermissionSet`, or a mapping of tool name to ``allow`` / ``ask`` / ``deny``."""
    if isinstance(value, PermissionSet):
        permissions = value
    elif isinstance(value, Mapping):
        permissions = validate_model(PermissionSet, {"rules": dict(value)}, "permissions")
    else:
        raise InvalidInputError(
            f"permissions must be a PermissionSet or a dict, not {type(value).__name__}",
            hint="pass e.g. {'file_read': 'allow', 'shell_execute': 'ask'}",
            field="permissions",
        )
    check_size(encode_json(permissions.model_dump()), "permissions", max_bytes=max_bytes)
    return permissions


def check_message(value: Any, *, max_bytes: int) -> tuple[Message, bytes]:
    """A `Message` (or a dict of one) within the size limit, with its stored JSON form.

    Its free-form JSON (``metadata``, each tool call's ``arguments``) is held to the rules of
    `check_json_object`: pydantic would write ``NaN`` as null and a datetime as text.
    """
    message = value if isinstance(value, Message) else validate_model(Message, value, "message")
    _check_json(message.metadata, "message.metadata")
    for index, call in enumerate(message.tool_calls):
        _check_json(call.arguments, f"message.tool_calls.{index}.arguments")
    try:
        body = message.model_dump_json().encode()
    except PydanticSerializationError:
        # Its JSON is checked above, so what is left is text: a lone surrogate.
        raise InvalidInputError(
            "message holds text that is not valid Unicode (a lone surrogate)",
            hint="pair the surrogate or remove it; message text must be valid UTF-8",
            field="message",
        ) from None
    check_size(body, "message", max_bytes=max_bytes)
    return message, body


def check_size(encoded: bytes, field: str, *, max_bytes: int) -> None:
    """Refuse a value whose JSON form is longer than ``max_bytes``."""
    if len(encoded) > max_bytes:
        raise InvalidInputError(
            f"{field} is {len(encoded):,} bytes as JSON, over the limit of {max_bytes:,}",
            hint="store large content elsewhere and refer to it by URL, or raise the limit "
            "(SessionLimits)",
            field=field,
            size=len(encoded),
            limit=max_bytes,
        )


def validate_model(model: type[M], value: Any, field: str) -> M:
    """``model.model_validate(value)``, with errors that name the field."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise invalid(exc, field) from None


def invalid(exc: ValidationError, field: str) -> InvalidInputError:
    """An `InvalidInputError` naming where in ``field`` validation failed."""
    first = exc.errors(include_url=False)[0]
    where = ".".join([p for p in (field, *(str(p) for p in first["loc"])) if p]) or "(document)"
    return InvalidInputError(
        f"{where}: {first['msg']}",
        hint=f"fix {where} and try again",
        field=where,
        errors=exc.errors(include_url=False, include_context=False),
    )


def encode_json(value: Any) -> bytes:
    """The compact JSON form used for storage and size checks."""
    return orjson.dumps(value)


def _check_json(value: Any, where: str) -> None:
    # Strict on purpose: anything orjson or pydantic would silently turn into a string
    # (datetimes, UUIDs, sets) would not come back as what was stored.
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        _check_text(value, where)
        return
    if isinstance(value, int):
        if not fits_int64(value):
            raise InvalidInputError(
                f"{where} holds {int_text(value)}, outside the signed 64-bit range",
                hint=INT64_HINT,
                field=where,
            )
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(
                f"{where} holds {value}, which JSON cannot represent",
                hint="use null or a finite number",
                field=where,
            )
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInputError(
                    f"{where} has a key of type {type(key).__name__}; JSON keys are strings",
                    hint="convert the key to a string",
                    field=where,
                )
            _check_text(key, where)
            _check_json(item, f"{where}.{key}")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_json(item, f"{where}.{index}")
        return
    raise InvalidInputError(
        f"{where} holds a {type(value).__name__}, which is not a JSON value",
        hint="use strings, numbers, booleans, null, lists and dicts (e.g. a date as ISO text)",
        field=where,
    )


def _check_text(value: str, where: str) -> None:
    # A lone surrogate (which JSON's \ud800 escapes can carry in) cannot be written as UTF-8.
    if value.isascii():
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(
            f"{where} holds text that is not valid Unicode (a lone surrogate)",
            hint="pair the surrogate or remove it; JSON text must be valid UTF-8",
            field=where,
        ) from None
