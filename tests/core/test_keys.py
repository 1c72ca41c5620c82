"""Keys joined from several ids: distinct tuples of ids never give the same key."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promptline.core.keys import join_key, key_part, split_key

ids = st.text(alphabet=st.sampled_from("ab:/%-_@253AF"), max_size=6)
tuples = st.lists(ids, min_size=1, max_size=4).map(tuple)
separators = st.sampled_from([":", "/", "-", "|", "\x1f"])


def test_a_tenant_and_a_user_holding_the_separator_give_two_keys() -> None:
    first = join_key("t1:x", "y")
    second = join_key("t1", "x:y")

    assert first != second
    assert (first, second) == ("t1%3Ax:y", "t1:x%3Ay")
    assert split_key(first) == ("t1:x", "y")
    assert split_key(second) == ("t1", "x:y")


@given(tuples, tuples, separators)
def test_distinct_tuples_of_ids_never_join_to_the_same_key(
    a: tuple[str, ...], b: tuple[str, ...], sep: str
) -> None:
    if a != b:
        assert join_key(*a, sep=sep) != join_key(*b, sep=sep)


@given(tuples, separators)
def test_split_key_gives_back_the_ids_join_key_was_given(parts: tuple[str, ...], sep: str) -> None:
    assert split_key(join_key(*parts, sep=sep), sep) == parts


@given(ids, separators)
def test_an_escaped_part_holds_no_separator(value: str, sep: str) -> None:
    assert sep not in key_part(value, sep)


@pytest.mark.parametrize(
    ("parts", "sep", "key"),
    [
        (("acme", "alice"), ":", "acme:alice"),
        (("acme", "bob@example.com"), ":", "acme:bob@example.com"),
        (("a.b", "c_d-e"), "/", "a.b/c_d-e"),
        (("a:b", "c"), "/", "a:b/c"),
    ],
)
def test_ids_without_percent_or_the_separator_are_kept_as_they_are(
    parts: tuple[str, ...], sep: str, key: str
) -> None:
    assert join_key(*parts, sep=sep) == key


@pytest.mark.parametrize("key", ["a%", "a%3", "%41", "a%2F:b"])
def test_split_key_refuses_text_join_key_cannot_have_made(key: str) -> None:
    with pytest.raises(ValueError, match="stray '%'"):
        split_key(key)


@pytest.mark.parametrize("sep", ["", "::", "%", "2", "A", "a"])
def test_a_separator_that_could_break_an_escape_is_refused(sep: str) -> None:
    with pytest.raises(ValueError, match="separator"):
        join_key("a", "b", sep=sep)


def test_a_key_needs_a_part() -> None:
    with pytest.raises(ValueError, match="at least one part"):
        join_key()
