"""Input checks and refusals every event store applies alike, so each backend refuses the same
input with the same words."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from promptline.core.errors import ConflictError, InvalidInputError
from promptline.core.events import GLOBAL_STREAM, Event, EventEnvelope, parse_event
from promptline.events.protocols import EventFilter

__all__ = [
    "MAX_ID",
    "MAX_NAME",
    "MAX_TYPE",
    "already_stored",
    "check_cursor",
    "check_expected",
    "check_filter",
    "check_limit",
    "check_name",
    "check_text",
    "checked_batch",
    "checked_event",
    "stream_moved",
]

MAX_ID = 64
MAX_TYPE = 64
MAX_NAME = 255


def checked_event(event: Any, index: int) -> Event:
    """The event as a typed model, or `InvalidInputError` saying which one and why."""
    if isinstance(event, EventEnvelope) and _plainly_valid(event.__dict__):
        return event  # type: ignore[return-value]  # an envelope with a str type is an event
    where = f"event #{index}" if index else "event"
    if isinstance(event, Mapping):
        try:
            event = parse_event(dict(event))
        except InvalidInputError as exc:
            raise InvalidInputError(
                f"{where} is not valid: {exc.message}",
                hint="check the event's `type` and the fields of its `data`",
                index=index,
                **exc.details,
            ) from None
    if not isinstance(event, EventEnvelope) or not isinstance(getattr(event, "type", None), str):
        raise InvalidInputError(
            f"{where} is a {type(event).__name__}, not an event",
            hint="pass an event model from promptline.core.events (or a dict of one)",
            index=index,
        )
    checked: Event = event  # type: ignore[assignment]  # an envelope with a type is an event
    check_text(checked.id, "id", MAX_ID, where)
    check_text(checked.type, "type", MAX_TYPE, where)
    check_text(checked.stream_name, "stream", MAX_NAME, where)
    for field in ("tenant_id", "user_id", "session_id", "run_id"):
        value = getattr(checked, field)
        if value is not None:
            check_text(value, field, MAX_NAME, where)
    return checked


def _plainly_valid(fields: dict[str, Any]) -> bool:
    """True when every name of an event is a short string without NUL: the common case,
    checked in one pass; otherwise `checked_event` checks field by field to say what is
    wrong."""
    event_id, kind, session_id = fields["id"], fields.get("type"), fields["session_id"]
    stream = fields["stream"] or session_id or GLOBAL_STREAM
    if not (
        type(event_id) is str
        and 0 < len(event_id) <= MAX_ID
        and type(kind) is str
        and 0 < len(kind) <= MAX_TYPE
        and type(stream) is str
        and len(stream) <= MAX_NAME
    ):
        return False
    text = event_id + kind + stream
    for value in (fields["tenant_id"], fields["user_id"], session_id, fields["run_id"]):
        if value is not None:
            if type(value) is not str or not 0 < len(value) <= MAX_NAME:
                return False
            text += value
    return "\x00" not in text


def check_text(value: Any, field: str, limit: int, where: str) -> None:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InvalidInputError(
            f"{where} has an invalid {field} {value!r}",
            hint=f"{field} must be a non-empty string of at most {limit} characters",
            field=field,
        )
    if "\x00" in value:
        # A name, not data: refused alike everywhere, as PostgreSQL could not store it.
        raise InvalidInputError(
            f"{where} has a {field} holding a NUL character (U+0000): {value!r}",
            hint=f"remove NUL characters from the {field}",
            field=field,
        )


def check_name(value: Any, field: str) -> None:
    check_text(value, field, MAX_NAME, "the request")


def check_cursor(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(
            f"{name} must be a non-negative integer, not {value!r}",
            hint=f"pass the last {name.removeprefix('from_')} seen, or 0 for the beginning",
        )


def check_limit(limit: Any) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InvalidInputError(
            f"limit must be a non-negative integer or None, not {limit!r}",
            hint="leave limit out to read everything",
        )


def check_expected(expected: Mapping[str, int]) -> None:
    for stream, seq in expected.items():
        check_name(stream, "stream")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise InvalidInputError(
                f"expected seq for stream {stream!r} must be a non-negative integer, not {seq!r}",
                hint="pass the last seq you read (0 for a stream that must not exist yet)",
            )


def checked_batch(events: Any) -> list[Event]:
    """The events of an `append_batch` as typed models: a list, each valid, no id twice."""
    if isinstance(events, (str, bytes, Mapping)) or not isinstance(events, Sequence):
        raise InvalidInputError(
            "append_batch takes a list of events",
            hint="pass a list, e.g. store.append_batch([event1, event2])",
        )
    checked = [checked_event(event, index) for index, event in enumerate(events)]
    ids = [e.id for e in checked]
    if len(set(ids)) != len(ids):
        dupes = sorted(i for i, n in Counter(ids).items() if n > 1)
        raise InvalidInputError(
            f"the batch holds the same event id more than once: {', '.join(dupes)}",
            hint="give every event its own id (leave `id` unset to get a fresh one)",
            ids=dupes,
        )
    return checked


def check_filter(filter: Any) -> None:
    """`InvalidInputError` unless ``filter`` is None or an `EventFilter`."""
    if filter is not None and not isinstance(filter, EventFilter):
        raise InvalidInputError(
            f"filter must be an EventFilter, not {type(filter).__name__}",
            hint="build one with promptline.events.protocols.EventFilter(...)",
        )


def stream_moved(stream: str, expected: int, actual: int) -> ConflictError:
    """The refusal of an append whose expected seq is not the stream's last seq."""
    return ConflictError(
        f"stream {stream!r} is at seq {actual}, expected {expected}",
        hint="read the stream again and retry with its current seq",
        stream=stream,
        expected=expected,
        actual=actual,
    )


def already_stored(ids: Sequence[str]) -> ConflictError:
    """The refusal of an append holding events whose ids are already in the log."""
    taken = sorted(ids)
    return ConflictError(
        f"event id already stored: {', '.join(taken)}; nothing of this append was kept",
        hint="an event is appended once; give a new event a fresh id",
        ids=taken,
    )
