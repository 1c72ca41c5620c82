"""File names for state keys: safe on every common file system, and reversible."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promptline.state.filenames import HASH_MARK, MAX_ENCODED, decode_name, encode_name

SAFE_NAME = re.compile(r"(?:[a-z0-9_.~-]|%[0-9A-F]{2})+")
valid_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=600)


@pytest.mark.parametrize(
    "text",
    ["..", ".", "../x", "/etc/passwd", "a/../../b", "\\windows", "nul\x00", "C:", ".hidden"],
)
def test_path_syntax_never_survives_encoding(text: str) -> None:
    name = encode_name(text)
    assert "/" not in name
    assert "\\" not in name
    assert "\x00" not in name
    assert ":" not in name
    assert not name.startswith(".")
    assert name not in (".", "..")
    assert decode_name(name) == (text.encode(), False)


def test_names_differing_only_by_case_or_normalisation_stay_distinct_on_folding_systems() -> None:
    # macOS folds case and Unicode normalisation; the encoded names must not collide there.
    names = [encode_name(t) for t in ["Key", "key", "KEY", "é", "e\u0301"]]
    assert len({n.lower() for n in names}) == len(names)


def test_readable_keys_stay_readable() -> None:
    assert encode_name("user.name") == "user.name"
    assert encode_name("run_1-step") == "run_1-step"


def test_long_text_gets_a_hashed_name_within_file_system_limits() -> None:
    key = "日本" * 256
    name = encode_name(key)
    assert HASH_MARK in name
    assert len(name.encode()) <= MAX_ENCODED
    shown, hashed = decode_name(name)
    assert hashed
    assert key.encode().startswith(shown)
    assert encode_name("日本" * 255 + "日") != encode_name("日本" * 255 + "本")


@pytest.mark.parametrize("name", ["", "UPPER", "a/b", "..x", ".lock", "%zz", "a b"])
def test_foreign_names_are_not_decoded(name: str) -> None:
    with pytest.raises(ValueError, match="name"):
        decode_name(name)


@given(valid_text)
def test_every_text_encodes_to_a_safe_name_that_decodes_back(text: str) -> None:
    name = encode_name(text)
    assert SAFE_NAME.fullmatch(name)
    assert not name.startswith(".")
    assert len(name) <= MAX_ENCODED
    shown, hashed = decode_name(name)
    if hashed:
        assert text.encode().startswith(shown)
    else:
        assert shown == text.encode()


@given(valid_text, valid_text)
def test_different_texts_get_different_names(a: str, b: str) -> None:
    if a != b:
        assert encode_name(a) != encode_name(b)
