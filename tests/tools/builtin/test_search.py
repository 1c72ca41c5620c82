"""codebase_search: matching lines as path:line:text, literal or regex, filtered by glob;
version control, binary, huge and symlinked files are skipped; results are bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptline.tools.base import ToolError
from promptline.tools.builtin import codebase_search
from promptline.tools.builtin.search import MAX_SEARCH_FILE_BYTES
from tools.support import call


@pytest.fixture
def code(workspace: Path) -> Path:
    (workspace / "src" / "pkg").mkdir(parents=True)
    (workspace / "src" / "app.py").write_text("import os\n\ndef main():\n    return run(1)\n")
    (workspace / "src" / "pkg" / "util.py").write_text("def run(n):\n    return n + 1\n")
    (workspace / "README.md").write_text("Call run() to start.\n")
    return workspace


async def test_matches_are_listed_as_path_line_text(code: Path) -> None:
    answer = await call(codebase_search, code, query="run(")

    assert answer.splitlines() == [
        "3 matches in 3 files:",
        "README.md:1:Call run() to start.",
        "src/app.py:4:    return run(1)",
        "src/pkg/util.py:1:def run(n):",
    ]
    assert codebase_search.read_only


async def test_a_literal_query_is_not_a_regex_unless_asked(code: Path) -> None:
    literal = await call(codebase_search, code, query="run(.)")
    regex = await call(codebase_search, code, query=r"run\(\d\)", regex=True)

    assert literal == "no matches for 'run(.)'"
    assert regex.splitlines()[1:] == ["src/app.py:4:    return run(1)"]


async def test_case_can_be_ignored(code: Path) -> None:
    answer = await call(codebase_search, code, query="CALL", ignore_case=True)

    assert answer.splitlines()[1:] == ["README.md:1:Call run() to start."]


@pytest.mark.parametrize(
    ("glob", "files"),
    [
        ("*.py", ["src/app.py", "src/pkg/util.py"]),
        ("src/pkg/*", ["src/pkg/util.py"]),
        ("src/*.py", ["src/app.py", "src/pkg/util.py"]),
        ("**/*.md", ["README.md"]),
        ("*.rs", []),
    ],
)
async def test_a_glob_limits_the_files_searched(code: Path, glob: str, files: list[str]) -> None:
    answer = await call(codebase_search, code, query="run", glob=glob)

    found = sorted({line.split(":")[0] for line in answer.splitlines()[1:]})
    assert found == files


async def test_results_are_bounded(workspace: Path) -> None:
    (workspace / "many.txt").write_text("hit\n" * 50)

    answer = await call(codebase_search, workspace, query="hit", max_results=5)

    lines = answer.splitlines()
    assert lines[0] == "5 matches in 1 files:"
    assert len(lines) == 7
    assert lines[-1].startswith("[stopped at 5 matches")


async def test_vcs_dependency_binary_and_huge_files_are_skipped(workspace: Path) -> None:
    (workspace / ".git").mkdir()
    (workspace / ".git" / "config").write_text("needle\n")
    (workspace / "node_modules").mkdir()
    (workspace / "node_modules" / "lib.js").write_text("needle\n")
    (workspace / "blob.bin").write_bytes(b"needle\x00\x01")
    (workspace / "big.txt").write_text("needle\n" + "x" * MAX_SEARCH_FILE_BYTES)
    (workspace / "ok.txt").write_text("needle\n")

    answer = await call(codebase_search, workspace, query="needle")

    assert answer.splitlines() == [
        "1 matches in 1 files:",
        "ok.txt:1:needle",
        "[1 files over 2 MiB skipped]",
    ]


async def test_symlinks_are_not_followed_out_of_the_workspace(workspace: Path) -> None:
    (workspace / "outside-file.txt").symlink_to(workspace.parent / "outside" / "secret.txt")
    (workspace / "outside-dir").symlink_to(workspace.parent / "outside")

    assert await call(codebase_search, workspace, query="secret") == "no matches for 'secret'"


async def test_long_lines_are_cut(workspace: Path) -> None:
    (workspace / "min.js").write_text("needle" + "x" * 10_000 + "\n")

    answer = await call(codebase_search, workspace, query="needle")

    assert len(answer.splitlines()[1]) == len("min.js:1:") + 300


async def test_a_bad_regex_or_an_empty_query_is_explained(workspace: Path) -> None:
    with pytest.raises(ToolError, match="not a valid regular expression") as caught:
        await call(codebase_search, workspace, query="(", regex=True)
    assert "regex=false" in (caught.value.hint or "")
    with pytest.raises(ToolError, match="the query is empty"):
        await call(codebase_search, workspace, query="")
