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


# -- shell commands ----------------------------------------------------------------------------


def _section(heading: str) -> str:
    text = _text()
    start = text.index(heading)
    level = heading.split(" ")[0]
    ends = [text.find(f"\n{h} ", start + 1) for h in ("##", "###") if len(h) <= len(level)]
    ends = [e for e in ends if e != -1]
    return text[start : min(ends, default=len(text))]


def _shell_rows(section: str) -> list[tuple[str, str]]:
    """The (command, answer) rows of a section's table, `\\|` read as `|`."""
    rows = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        rows.append((cells[0].strip("`").replace("\\|", "|"), cells[1]))
    return rows


SPLITTING = _section("## Shell commands").split("### Floors")[0]
FLOORS = _section("### Floors")


def test_the_shell_tables_have_rows() -> None:
    assert len(_shell_rows(SPLITTING)) >= 12
    assert len(_shell_rows(FLOORS)) >= 8


@pytest.mark.parametrize(("command", "answer"), _shell_rows(SPLITTING), ids=lambda v: v)
def test_alice_s_shell_commands_get_what_the_table_says(
    command: str, answer: str, tmp_path: Path
) -> None:
    [yaml] = fenced("yaml", SPLITTING)
    policy = PermissionPolicy(_load(yaml, tmp_path))

    decision = policy.decide(
        "shell_execute", {"command": command}, user="alice", workspace=tmp_path
    )

    assert decision.mode == answer, decision.reason


@pytest.mark.parametrize(("command", "answer"), _shell_rows(FLOORS), ids=lambda v: v)
def test_the_floors_ask_under_a_plain_allow(command: str, answer: str, tmp_path: Path) -> None:
    [yaml] = fenced("yaml", FLOORS)
    policy = PermissionPolicy(_load(yaml, tmp_path))

    decision = policy.decide("shell_execute", {"command": command}, workspace=tmp_path)

    assert (answer, decision.mode) == ("ask", "ask")
    assert "needs approval" in decision.reason


def test_the_reason_shown_for_a_shell_command_is_the_real_one(tmp_path: Path) -> None:
    [yaml] = fenced("yaml", SPLITTING)
    shown = "`rm -f file` (part 2 of `ls ; rm -f file`) has no allow rule"
    decision = PermissionPolicy(_load(yaml, tmp_path)).decide(
        "shell_execute", {"command": "ls ; rm -f file"}, user="alice", workspace=tmp_path
    )

    assert f"`` {shown} ``" in " ".join(SPLITTING.split())
    assert decision.reason.startswith(shown + ": the user rule 'shell_execute'")


def test_the_sentences_about_matching_hold(tmp_path: Path) -> None:
    from promptline.security.exec_policy import INTERPRETERS, parse_command

    def decide(rule: dict[str, object], command: str) -> str:
        policy = PermissionPolicy(Settings.model_validate({"tools": {"shell_execute": rule}}))
        return policy.decide("shell_execute", {"command": command}, workspace=tmp_path).mode

    ls = {"mode": "allow", "when": {"command": ["ls *"]}}
    deny = {"mode": "deny", "when": {"command": ["rm -rf *", "* | sh"]}, "otherwise": "allow"}
    assert "`ls *` allows `ls -la`,\nand does not allow `ls; rm -rf ~`" in _text()
    assert (decide(ls, "ls -la"), decide(ls, "ls; rm -rf ~")) == ("allow", "ask")
    assert (decide(deny, "X=1 rm -rf build"), decide(deny, "cat x | sh")) == ("deny", "deny")
    assert decide({"mode": "allow", "when": {"command": ["ls *"]}}, "CI=1 ls -la") == "ask"
    xargs = {"mode": "allow", "when": {"command": ["ls", "cat *"]}}
    assert "`ls | xargs cat` is\nmatched as `ls` and `cat ...`, which `cat *` allows" in _text()
    assert [p.forms[-1] for p in parse_command("ls | xargs cat").parts] == ["ls", "cat ..."]
    assert decide(xargs, "ls | xargs cat") == "allow"
    [part] = parse_command("nohup timeout 5 cat big.log").parts
    assert part.forms == ("nohup timeout 5 cat big.log", "timeout 5 cat big.log", "cat big.log")
    named = ["python", "python3", "sh", "bash", "zsh", "dash", "ksh", "fish", "node", "deno"]
    named += ["bun", "perl", "ruby", "php", "lua", "osascript", "pwsh"]
    assert set(named) <= INTERPRETERS | {"python3"}
    for name in named:
        assert decide({"mode": "allow"}, f"cat x | {name}") == "ask", name


def test_the_reason_of_a_condition_on_another_tool_is_the_real_one(tmp_path: Path) -> None:
    policy = PermissionPolicy(
        Settings.model_validate(
            {"tools": {"file_write": {"mode": "allow", "when": {"path": ["notes/*"]}}}}
        )
    )

    decision = policy.decide("file_write", {"path": "src/a.py"})

    assert decision.condition == "path='src/a.py' matches none of its patterns ('notes/*')"
    assert "`path='src/a.py' matches\nnone of its patterns ('notes/*')`" in _text()
