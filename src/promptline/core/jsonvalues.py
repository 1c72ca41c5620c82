"""The integers a JSON value may hold: those that come back unchanged from every store and wire.

orjson, which reads and writes JSON almost everywhere here, refuses to write an integer beyond
64 bits and reads one as a float; most JSON readers outside Python stop at 64 bits as well. So
an integer outside the signed 64-bit range is refused where it comes in, with `INT64_HINT`,
rather than failing later or coming back as another number.
"""

from __future__ import annotations

__all__ = ["INT64_HINT", "INT64_MAX", "INT64_MIN", "fits_int64", "int_text"]

INT64_MIN = -(2**63)
"""The smallest integer a JSON value may hold."""

INT64_MAX = 2**63 - 1
"""The largest integer a JSON value may hold."""

INT64_HINT = (
    f"integers must fit in 64 bits, signed ({INT64_MIN} to {INT64_MAX}); "
    "send bigger numbers as strings"
)
"""What to tell a caller whose value holds an integer outside that range."""

_SHOWN_BITS = 256


def fits_int64(value: int) -> bool:
    """True when ``value`` lies in the signed 64-bit range."""
    return INT64_MIN <= value <= INT64_MAX


def int_text(value: int) -> str:
    """``value`` for an error message: "the integer 123", or its size when it is too long to
    show (Python refuses to turn an integer of more than 4300 digits into text)."""
    if value.bit_length() <= _SHOWN_BITS:
        return f"the integer {value}"
    sign = "a negative" if value < 0 else "an"
    return f"{sign} integer of {value.bit_length()} bits"
