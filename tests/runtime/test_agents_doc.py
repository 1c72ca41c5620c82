"""docs/agents.md stays true: its config loads, its agents build, its Python example runs."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from promptline.config import Settings, load_settings
from promptline.runtime import Agent, agents_from_settings
from promptline.runtime.lifecycle import TRANSITIONS
from promptline.runtime.prompt import render_system_prompt

DOC = Path(__file__).parents[2] / "docs" / "agents.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_config_example_loads_and_its_template_renders(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(blocks("yaml")[0], encoding="utf-8")

    agents = agents_from_settings(load_settings(path, environ={}))

    coder = agents["coder"]
    assert coder.mode == "plan"
    assert "assistant" in agents
    prompt = render_system_prompt(coder, context={"project": "promptline"}, mode="act")
    assert "a careful senior engineer" in prompt
    assert "The project is promptline." in prompt


def test_lifecycle_table_matches_the_state_machine() -> None:
    rows = re.findall(r"^\| `(\w+)`(?:, `(\w+)`)? \| (.+) \|$", DOC.read_text(), flags=re.M)
    documented = {}
    for first, second, targets in rows:
        if first not in TRANSITIONS:
            continue
        allowed = frozenset(re.findall(r"`(\w+)`", targets))
        for state in filter(None, (first, second)):
            documented[state] = allowed
    assert documented == dict(TRANSITIONS)


def test_python_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for code in blocks("python"):
            exec(compile(code, str(DOC), "exec"), {"__name__": "agents_doc_example"})
    assert "completed The result is 5.0. 1" in out.getvalue()


def test_the_defaults_table_is_what_an_agent_built_in_code_and_one_from_no_config_get() -> None:
    section = DOC.read_text(encoding="utf-8").split("### Defaults", 1)[1].split("\n## ", 1)[0]
    documented = dict(re.findall(r"^\| `?(\w[\w ]*?)`? \| `?([\w]+)`?", section, flags=re.M))
    in_code = Agent(name="assistant")
    configured = agents_from_settings(Settings())["assistant"]

    for agent in (in_code, configured):
        assert agent.mode == documented["mode"] == "act"
        assert agent.use_chain_of_thought is (documented["chain of thought"] == "on") is False
        assert agent.stream is (documented["streaming"] == "on") is True
        assert str(agent.max_iterations) == documented["max_iterations"]
        assert agent.queue_mode == documented["queue_mode"]
        assert agent.on_crash == documented["on_crash"]
