"""An error's details go on the wire as JSON: values JSON does not know become their text."""

from __future__ import annotations

from pathlib import Path

from promptline.core.errors import NotFoundError


def test_json_details_keep_json_values_and_the_hint() -> None:
    error = NotFoundError("no run", hint="list runs", run_id="run_1", attempts=2)

    assert error.json_details() == {"run_id": "run_1", "attempts": 2, "hint": "list runs"}


def test_a_value_json_does_not_know_turns_the_details_into_text() -> None:
    error = NotFoundError("no file", path=Path("/tmp/x"), attempts=2)

    assert error.json_details() == {"path": "/tmp/x", "attempts": "2"}
