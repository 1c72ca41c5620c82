"""How state values and times are stored on every backend: JSON via orjson, integer micros."""

from __future__ import annotations

import math
from typing import Any

import orjson

from promptline.core.clock import from_micros
from promptline.core.errors import InvalidInputError, StorageError
from promptline.core.jsonvalues import INT64_HINT, fits_int64, int_text
from promptline.state.protocols import Scope, StateEntry

# orjson refuses to nest deeper than 254; stop earlier with an error that says where.
MAX_DEPTH = 200


def encode_value(key: str, value: Any) -> bytes:
    """``value`` as JSON bytes; `InvalidInputError` naming the key, type and path if it is not JSON.

    The walk is strict on purpose: orjson would silently write ``NaN`` as ``null`` and
    turn a ``datetime`` or ``UUID`` into a string, so the value read back would differ.
    """
    problem = _find_problem(value, "$", 0)
    if problem is not None:
        path, bad, reason = problem
        field = "value" + path[1:]  # as the argument (and the REST body member) is named
        if isinstance(bad, int) and not isinstance(bad, bool):
            raise InvalidInputError(
                f"the value for state key {key!r} holds {int_text(bad)} at "
                f"{field}, outside the signed 64-bit range",
                hint=INT64_HINT,
                key=key,
                type="int",
                path=path,
                field=field,
            )
        raise InvalidInputError(
            f"the value for state key {key!r} is not JSON-serialisable: "
            f"{reason} ({type(bad).__name__}) at {path}",
            hint="store only dict (str keys), list, str, int, finite float, bool and None; "
            "convert other types first",
            key=key,
            type=type(bad).__name__,
            path=path,
            field=field,
        )
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as exc:  # e.g. a string with an unpaired surrogate
        raise InvalidInputError(
            f"the value for state key {key!r} is not JSON-serialisable: {exc}",
            hint="store only JSON types",
            key=key,
        ) from exc


def decode_value(raw: bytes | str, *, key: str) -> Any:
    """Parse a stored JSON value; a damaged one is a `StorageError`, never a crash."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise StorageError(
            f"the stored value of state key {key!r} is not valid JSON ({exc})",
            hint="delete the key and write it again",
            key=key,
        ) from exc


def make_entry(
    scope: Scope,
    namespace: str,
    key: str,
    value: Any,
    version: int,
    updated_at: int,
    expires_at: int | None,
) -> StateEntry:
    """A `StateEntry` from its stored form (times in microseconds since the epoch)."""
    return StateEntry(
        scope=scope,
        namespace=namespace,
        key=key,
        value=value,
        version=version,
        updated_at=from_micros(updated_at),
        expires_at=None if expires_at is None else from_micros(expires_at),
    )


def expiry_micros(now: int, ttl: float | None) -> int | None:
    """When an entry written at ``now`` (micros) with ``ttl`` (seconds) stops being live."""
    return None if ttl is None else now + max(1, math.ceil(ttl * 1_000_000))


def is_live(expires_at: int | None, now: int) -> bool:
    """True while an entry has no expiry or it lies after ``now`` (both in micros)."""
    return expires_at is None or expires_at > now


def _find_problem(value: Any, path: str, depth: int) -> tuple[str, Any, str] | None:
    if value is None or isinstance(value, str | bool):
        return None
    if isinstance(value, int):
        return None if fits_int64(value) else (path, value, "integer outside the 64-bit range")
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, value, "NaN or infinity")
    if depth >= MAX_DEPTH:
        return path, value, f"nested deeper than {MAX_DEPTH} levels"
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                return f"{path}[{k!r}]", k, "a dict key that is not a string"
            found = _find_problem(item, f"{path}.{k}", depth + 1)
            if found is not None:
                return found
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _find_problem(item, f"{path}[{index}]", depth + 1)
            if found is not None:
                return found
        return None
    return path, value, "not a JSON type"
