"""docs/events.md stays true: it names every event type and field, and its example runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from promptline.core.events import EVENT_CLASSES, EventEnvelope

DOC = Path(__file__).parents[2] / "docs" / "events.md"


def _section(text: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    start = text.index(heading + "\n")
    rest = text[start + len(heading) :]
    following = re.search(rf"^#{{1,{len(level)}}} ", rest, flags=re.MULTILINE)
    return rest[: following.start()] if following else rest


def _table_fields(section: str) -> set[str]:
    return set(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE))


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def test_envelope_table_lists_every_envelope_field(doc: str) -> None:
    fields = _table_fields(_section(doc, "## The envelope"))
    assert set(EventEnvelope.model_fields) | {"type", "data"} <= fields


@pytest.mark.parametrize("event_type", sorted(EVENT_CLASSES))
def test_catalogue_lists_every_field_of_each_event_type(doc: str, event_type: str) -> None:
    data_model = EVENT_CLASSES[event_type].model_fields["data"].annotation
    assert data_model is not None
    section = _section(doc, f"### `{event_type}`")
    assert _table_fields(section) == set(data_model.model_fields)


def test_catalogue_has_no_type_that_does_not_exist(doc: str) -> None:
    catalogue = _section(doc, "## The catalogue")
    documented = set(re.findall(r"^### `([a-z_]+)`", catalogue, flags=re.MULTILINE))
    assert documented == set(EVENT_CLASSES)


def test_example_runs(doc: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [code] = re.findall(r"^## Example\n.*?```python\n(.*?)```", doc, flags=re.DOTALL | re.M)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(DOC), "exec"), {"__name__": "events_doc_example"})
    assert (tmp_path / "example-events.db").exists()
