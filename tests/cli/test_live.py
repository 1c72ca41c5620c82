"""The pieces of the live run view that need no run: approval answers, the thinking filter
and how a call's arguments are shown."""

from __future__ import annotations

import pytest

from promptline.cli.live import Decision, ThinkingFilter, format_arguments, parse_answer


@pytest.mark.parametrize(
    ("typed", "decision"),
    [
        ("y", Decision(True)),
        (" YES ", Decision(True)),
        ("a", Decision(True, "always")),
        ("always", Decision(True, "always")),
        ("s", Decision(True, "session")),
        ("session", Decision(True, "session")),
    ],
)
def test_approval_answers_map_to_a_grant_scope(typed: str, decision: Decision) -> None:
    assert parse_answer(typed) == decision


@pytest.mark.parametrize("typed", ["n", "no", "N"])
def test_no_refuses(typed: str) -> None:
    answer = parse_answer(typed)
    assert answer is not None
    assert not answer.approve


@pytest.mark.parametrize("typed", ["", "maybe", "ya"])
def test_anything_else_is_not_an_answer(typed: str) -> None:
    assert parse_answer(typed) is None


def stream(chunks: list[str]) -> str:
    thinking = ThinkingFilter()
    return "".join(thinking.feed(c) for c in chunks) + thinking.end()


def test_text_without_thinking_passes_unchanged() -> None:
    assert stream(["Hello ", "<b>world</b>", " <"]) == "Hello <b>world</b> <"


def test_thinking_is_hidden_even_when_its_tags_are_split_across_chunks() -> None:
    chunks = ["<thin", "king>let me ", "see</th", "inking>\n\n", "The answer", " is 5."]
    assert stream(chunks) == "The answer is 5."


def test_thinking_that_never_closes_hides_the_rest() -> None:
    assert stream(["Sure. <thinking>step one", " step two"]) == "Sure. "


def test_the_filter_says_while_it_is_inside_a_thinking_block() -> None:
    thinking = ThinkingFilter()
    thinking.feed("<thinking>hmm")
    assert thinking.thinking
    thinking.feed("</thinking>ok")
    assert not thinking.thinking


def test_arguments_are_shown_as_json_values_on_one_line() -> None:
    shown = format_arguments({"a": 2, "path": "x.txt", "flags": [1, True]})
    assert shown == 'a=2, path="x.txt", flags=[1,true]'
    assert len(format_arguments({"text": "x" * 500}, width=50)) == 50
