"""Key paths are written ``a.b[0]`` and read back to the same tuple."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promptline.config.keypath import format_path, parse_path

names = st.from_regex(r"[a-z_][a-z0-9_<>-]{0,10}", fullmatch=True)
parts = st.one_of(names, st.integers(min_value=0, max_value=999))


@given(
    st.tuples(names).flatmap(
        lambda head: st.lists(parts, max_size=5).map(lambda t: head + tuple(t))
    )
)
def test_format_then_parse_is_identity(path: tuple[str | int, ...]) -> None:
    assert parse_path(format_path(path)) == path


def test_format_writes_dots_and_brackets() -> None:
    assert format_path(("models", "providers", "x", "models", 0)) == "models.providers.x.models[0]"
    assert format_path(()) == "<root>"


@pytest.mark.parametrize("text", ["", "a..b", ".a", "a.", "a[0]b", "a[x]"])
def test_malformed_paths_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="key path"):
        parse_path(text)
