"""docs/tools.md stays true: it covers every built-in tool and argument, its YAML loads, its
Python examples run (in order, sharing names, as a reader would run them), and the limits it
quotes are the code's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest

from promptline.config import load_settings
from promptline.tools import Tool
from promptline.tools.builtin import BUILTIN_TOOL_NAMES, builtin_tools
from promptline.tools.builtin.output_file import MAX_OUTPUT_FILE_BYTES, OUTPUT_FOLDER
from promptline.tools.executor import (
    MAX_PROGRESS_OUTPUT_CHARS,
    MAX_PROGRESS_TOTAL_CHARS,
    MAX_STOPPED_OUTPUT_CHARS,
    PROGRESS_INTERVAL_SECS,
    Outcome,
)

DOC = Path(__file__).parents[2] / "docs" / "tools.md"


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def fenced(doc: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", doc, flags=re.S | re.M)


def table_rows(doc: str) -> dict[str, str]:
    """The rows of the built-in tools table, by tool name."""
    return dict(re.findall(r"^\| `([a-z_]+)` \| (?:yes|no) \|(.*)$", doc, flags=re.M))


def test_every_builtin_tool_has_a_row_and_a_section(doc: str) -> None:
    rows = table_rows(doc)
    headings = re.findall(r"^### (.*)$", doc, flags=re.M)

    assert list(rows) == list(BUILTIN_TOOL_NAMES)
    for name in BUILTIN_TOOL_NAMES:
        assert any(f"`{name}`" in heading for heading in headings), name


@pytest.mark.parametrize("tool", builtin_tools(), ids=lambda t: t.name)
def test_the_table_names_every_argument_and_the_flags(doc: str, tool: Tool) -> None:
    row = re.search(rf"^\| `{tool.name}` \| (yes|no) \| (yes|no) \|(.*)$", doc, flags=re.M)

    assert row is not None
    assert (row[1] == "yes", row[2] == "yes") == (tool.read_only, tool.destructive)
    for argument in tool.parameters["properties"]:
        assert f"`{argument}`" in row[3], argument


def test_every_outcome_is_explained(doc: str) -> None:
    rows = re.findall(r"^\| `([a-z_]+)` \| .* \| (?:true|false) \|$", doc, flags=re.M)

    assert set(rows) == set(get_args(Outcome))


def test_the_yaml_example_is_valid_configuration(doc: str, tmp_path: Path) -> None:
    [example] = fenced(doc, "yaml")
    path = tmp_path / "config.yaml"
    path.write_text(example, encoding="utf-8")

    limits = load_settings(path, environ={}).security.resource_limits

    assert limits.model_dump() == {
        "cpu_percent": 80,
        "memory_mb": 512,
        "timeout_secs": 300,
        "max_processes": 64,
        "max_open_files": 1024,
        "max_file_size_mb": 1024,
        "max_output_mb": 64,
    }
    assert limits == type(limits)()  # the example shows the defaults


def test_the_python_examples_run(doc: str) -> None:
    examples = fenced(doc, "python")
    namespace: dict[str, object] = {"__name__": "tools_doc_example"}

    for number, code in enumerate(examples, 1):
        exec(compile(code, f"{DOC}: python example {number}", "exec"), namespace)

    assert len(examples) >= 4
    assert "word_count" in namespace


def test_the_progress_and_output_limits_are_the_ones_the_code_uses(doc: str) -> None:
    limits = {
        "PROGRESS_INTERVAL_SECS": f"({PROGRESS_INTERVAL_SECS:g} s)",
        "MAX_PROGRESS_OUTPUT_CHARS": f"{MAX_PROGRESS_OUTPUT_CHARS:,} characters",
        "MAX_PROGRESS_TOTAL_CHARS": f"{MAX_PROGRESS_TOTAL_CHARS:,} characters",
        "MAX_STOPPED_OUTPUT_CHARS": f"{MAX_STOPPED_OUTPUT_CHARS:,} characters",
    }

    for name, value in limits.items():
        assert value in doc, name
        assert f"`{name}`" in doc, name
    assert f"at most {MAX_OUTPUT_FILE_BYTES // 1048576} MiB" in doc
    assert f"{OUTPUT_FOLDER}/<call id>.log" in doc
