"""The examples in docs/sessions.md work as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

from sessions_support import ALICE, StackOpener

from promptline.sessions import dump_document

DOC = Path(__file__).parents[2] / "docs" / "sessions.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_the_lifecycle_example_runs() -> None:
    [example] = _blocks("python")
    exec(compile(example, str(DOC), "exec"), {"__name__": "docs_example"})


async def test_the_sample_document_imports_and_exports_byte_for_byte(
    sqlite_url: str, opener: StackOpener
) -> None:
    [sample] = _blocks("json")
    stack = opener(sqlite_url)
    session = await stack.manager.import_(json.loads(sample), ALICE)
    assert [m.text for m in session.history] == [
        "Where is the March invoice?",
        "It is in billing/2026-03.pdf.",
    ]
    exported = await stack.manager.export(session.id, ALICE)
    assert dump_document(exported).decode() + "\n" == sample
