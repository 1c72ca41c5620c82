"""docs/durability.md stays true: its configuration loads, its Python example runs, and the
numbers and names it gives are the ones the code uses."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from promptline.config import load_settings
from promptline.runtime import agents_from_settings
from promptline.runtime.ingress import MAX_IDEMPOTENCY_KEY
from promptline.runtime.recovery import MAX_RESUME_ATTEMPTS, RECOVERY_WINDOW_DAYS

DOC = Path(__file__).parents[2] / "docs" / "durability.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_the_on_crash_example_configures_the_agents_it_names(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(blocks("yaml")[0], encoding="utf-8")

    agents = agents_from_settings(load_settings(path, environ={}))

    assert agents["assistant"].on_crash == "resume"
    assert agents["deployer"].on_crash == "interrupt"


def test_the_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [code] = blocks("python")
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(DOC), "exec"), {"__name__": "durability_doc_example"})

    first, last = out.getvalue().splitlines()
    assert re.fullmatch(r"run_K\w+ 0", first)
    assert last.startswith("completed ")


def test_the_limits_it_names_are_the_codes() -> None:
    text = " ".join(DOC.read_text(encoding="utf-8").split())
    assert f"the last {RECOVERY_WINDOW_DAYS} days" in text
    assert f"at most {['zero', 'one', 'two', 'three'][MAX_RESUME_ATTEMPTS]} times" in text
    assert f"up to {MAX_IDEMPOTENCY_KEY} characters" in text
