"""How big a session's parts may be; a write over a limit is refused before anything is stored."""

from __future__ import annotations

from dataclasses import dataclass

from promptline.core.errors import InvalidInputError

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Size limits, counted in bytes of the part's JSON form (UTF-8).

    ``max_message_bytes`` bounds one message (text, images and files included);
    ``max_field_bytes`` bounds each of a session's ``context``, ``tools``, ``permissions`` and
    ``metadata``; ``max_import_messages`` bounds the history of one imported document.
    """

    max_message_bytes: int = MIB
    max_field_bytes: int = MIB
    max_import_messages: int = 100_000

    def __post_init__(self) -> None:
        for name in ("max_message_bytes", "max_field_bytes", "max_import_messages"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidInputError(
                    f"SessionLimits.{name} must be a positive integer, not {value!r}",
                    hint="give a number of bytes (or messages) greater than zero",
                    field=name,
                )
