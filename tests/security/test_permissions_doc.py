"""docs/permissions.md stays true: its YAML loads, its worked example decides as its table
says, its refusal text is the real one, and its Python example runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from promptline.config import Settings, load_settings
from promptline.security.policy import PermissionPolicy
from promptline.tools.builtin import builtin_tools

DOC = Path(__file__).parents[2] / "docs" / "permissions.md"


def _text() -> str:
    return DOC.read_text(encoding="utf-8")


def fenced(language: str, text: str | None = None) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text or _text(), flags=re.S)


def _load(yaml: str, tmp_path: Path) -> Settings:
    path = tmp_path / "config.yaml"
    path.write_text(yaml, encoding="utf-8")
    return load_settings(path, environ={})


def _worked_example() -> str:
    text = _text()
    start = text.index("### Worked example")
    return text[start : text.index("\n## ", start)]


def test_doc_has_yaml_examples() -> None:
    assert len(fenced("yaml")) >= 5


@pytest.mark.parametrize("index", range(len(fenced("yaml"))))
def test_each_yaml_example_loads(index: int, tmp_path: Path) -> None:
    settings = _load(fenced("yaml")[index], tmp_path)

    PermissionPolicy(settings)  # and the policy takes it


def _rows() -> list[list[str]]:
    table = [
        line
        for line in _worked_example().splitlines()
        if line.startswith("| `") and line.count("|") == 7
    ]
    return [[cell.strip().strip("`") for cell in line.strip("|").split("|")] for line in table]


def test_the_worked_example_table_has_rows() -> None:
    assert len(_rows()) >= 8


@pytest.mark.parametrize("row", _rows(), ids=lambda r: "-".join(c or "_" for c in r[:4]))
def test_the_worked_example_decides_as_its_table_says(row: list[str], tmp_path: Path) -> None:
    tool, agent, user, session, answer, level = row
    [yaml] = fenced("yaml", _worked_example())
    policy = PermissionPolicy(_load(yaml, tmp_path))
    rules = dict([session.split(": ")]) if session else {}

    read_only = tool in {t.name for t in builtin_tools() if t.read_only}

    decision = policy.decide(
        tool, read_only=read_only, agent=agent or None, user=user or None, session_rules=rules
    )

    assert (decision.mode, decision.level) == (answer, level)


def test_the_refusal_shown_is_the_one_the_model_reads(tmp_path: Path) -> None:
    [yaml] = fenced("yaml", _worked_example())
    decision = PermissionPolicy(_load(yaml, tmp_path)).decide("file_delete", user="alice")
    [shown] = fenced("text")

    assert shown.strip() == f"permission denied for file_delete: {decision.reason}"


def test_the_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = next(block for block in fenced("python") if "asyncio.run(main())" in block)
    monkeypatch.chdir(tmp_path)

    exec(compile(code, str(DOC), "exec"), {"__name__": "permissions_doc_example"})

    assert (tmp_path / "permissions-example.db").exists()
