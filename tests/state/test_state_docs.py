"""The examples in the "State backends" section of the storage docs run as written."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).parents[2] / "docs" / "storage-backends.md"


def _state_section_examples() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("## State backends")
    following = text.find("\n## ", start + 1)
    section = text[start : following if following != -1 else len(text)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_the_state_backend_examples_run() -> None:
    examples = _state_section_examples()
    assert examples, "the State backends section lost its example"
    for code in examples:
        exec(compile(code, str(DOC), "exec"), {"__name__": "__doc_example__"})
