"""The `StateStore` rules every backend enforces the same way, checked before any I/O."""

from __future__ import annotations

import math
from typing import Any

from promptline.core.errors import ConflictError, InvalidInputError
from promptline.state.protocols import SCOPES, Scope

MAX_KEY_LENGTH = 512
MAX_NAMESPACE_LENGTH = 255
# Keeps ``expires_at`` in microseconds far inside a signed 64-bit column.
MAX_TTL_SECONDS = 100 * 365 * 86_400


def check_address(scope: Any, namespace: Any, key: Any) -> None:
    """Refuse an unknown scope, a namespace the scope does not allow, or a bad key."""
    check_namespace(scope, namespace)
    _check_text("key", key, max_length=MAX_KEY_LENGTH, allow_empty=False)


def check_namespace(scope: Any, namespace: Any) -> None:
    """Refuse an unknown scope or a namespace that scope does not allow."""
    if scope not in SCOPES:
        raise InvalidInputError(
            f"unknown state scope {scope!r}",
            hint="use one of: " + ", ".join(SCOPES),
            scope=scope,
        )
    _check_text("namespace", namespace, max_length=MAX_NAMESPACE_LENGTH, allow_empty=True)
    if scope == "global" and namespace != "":
        raise InvalidInputError(
            f"the global scope has only the namespace '', not {namespace!r}",
            hint="drop the namespace, or use the session or local scope",
            scope=scope,
            namespace=namespace,
        )
    if scope == "session" and namespace == "":
        raise InvalidInputError(
            "the session scope needs the session id as its namespace",
            hint="pass namespace=<session id>",
            scope=scope,
        )


def check_write(scope: Scope, ttl: Any, expected_version: Any) -> None:
    """Refuse a TTL outside ``local`` or out of range, and a malformed expected version."""
    if ttl is not None:
        if scope != "local":
            raise InvalidInputError(
                f"ttl is only allowed on the local scope, not on {scope!r}",
                hint="drop ttl, or keep short-lived values in the local scope",
                scope=scope,
                ttl=ttl,
            )
        if (
            isinstance(ttl, bool)
            or not isinstance(ttl, int | float)
            or not math.isfinite(ttl)
            or ttl <= 0
            or ttl > MAX_TTL_SECONDS
        ):
            raise InvalidInputError(
                f"ttl must be a number of seconds > 0 and <= {MAX_TTL_SECONDS}, got {ttl!r}",
                hint="pass ttl=None for an entry that never expires",
                ttl=repr(ttl),
            )
    check_expected_version(expected_version)


def check_expected_version(expected_version: Any) -> None:
    """``expected_version`` is None or an integer >= 0."""
    if expected_version is None:
        return
    if (
        isinstance(expected_version, bool)
        or not isinstance(expected_version, int)
        or expected_version < 0
    ):
        raise InvalidInputError(
            f"expected_version must be an integer >= 0, got {expected_version!r}",
            hint="pass the version of the entry you read (0: the key must not exist yet)",
            expected_version=repr(expected_version),
        )


def check_listing(prefix: Any, limit: Any) -> None:
    """``prefix`` is a string (may be empty); ``limit`` is None or an integer >= 0."""
    _check_text("prefix", prefix, max_length=None, allow_empty=True)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InvalidInputError(
            f"limit must be an integer >= 0 or None, got {limit!r}",
            hint="pass limit=None for every matching entry",
            limit=repr(limit),
        )


def version_conflict(
    scope: Scope, namespace: str, key: str, *, expected: int, actual: int
) -> ConflictError:
    """The error a compare-and-set raises when the live version is not the expected one."""
    found = "does not exist" if actual == 0 else f"is at version {actual}"
    wanted = "not to exist" if expected == 0 else f"to be at version {expected}"
    return ConflictError(
        f"state key {key!r} ({scope}:{namespace}) {found}, expected it {wanted}",
        hint="read the entry again and retry with its current version",
        scope=scope,
        namespace=namespace,
        key=key,
        expected=expected,
        actual=actual,
    )


def _check_text(what: str, text: Any, *, max_length: int | None, allow_empty: bool) -> None:
    if not isinstance(text, str):
        raise InvalidInputError(
            f"state {what} must be a string, got {type(text).__name__}",
            hint=f"convert the {what} to str",
            **{what: repr(text)},
        )
    if not text and not allow_empty:
        raise InvalidInputError(f"state {what} must not be empty", hint=f"give a non-empty {what}")
    if max_length is not None and len(text) > max_length:
        raise InvalidInputError(
            f"state {what} is {len(text)} characters long; at most {max_length} are allowed",
            hint=f"use a shorter {what} (a hash of a long one, for instance)",
            **{what: text[:80] + "…"},
        )
    if "\x00" in text:
        raise InvalidInputError(
            f"state {what} {text!r} contains a NUL character",
            hint=f"remove NUL characters from the {what}",
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"state {what} {text!r} is not valid Unicode (unpaired surrogate)",
            hint=f"decode the {what} properly before using it",
        ) from exc
