"""git_status and git_commit on a real repository in the workspace; a workspace that is not
a repository (even inside one) is reported as such, and git runs no hooks."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from promptline.tools.base import ToolError
from promptline.tools.builtin import git_commit, git_status
from promptline.tools.builtin.git import DEFAULT_AUTHOR
from tools.support import call

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

_ISOLATED = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def git(folder: Path, *args: str) -> str:
    """Run git in ``folder`` for the test's own setup and checks."""
    done = subprocess.run(
        ["git", "-c", "user.name=Tester", "-c", "user.email=t@example.com", *args],
        cwd=folder,
        env={**os.environ, **_ISOLATED},
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


@pytest.fixture
def repo(workspace: Path) -> Path:
    """The workspace as a repository with one commit of ``a.txt``."""
    git(workspace, "init", "-q", "-b", "main")
    (workspace / "a.txt").write_text("a\n")
    git(workspace, "add", "a.txt")
    git(workspace, "commit", "-q", "-m", "first")
    return workspace


async def test_status_of_a_clean_repository(repo: Path) -> None:
    assert await call(git_status, repo) == ("## main\n(nothing changed: the working tree is clean)")
    assert git_status.read_only


async def test_status_lists_changed_and_untracked_files(repo: Path) -> None:
    (repo / "a.txt").write_text("changed\n")
    (repo / "new.txt").write_text("new\n")

    assert await call(git_status, repo) == "## main\n M a.txt\n?? new.txt"


async def test_a_workspace_that_is_not_a_repository_is_reported(workspace: Path) -> None:
    for tool, arguments in ((git_status, {}), (git_commit, {"message": "m"})):
        with pytest.raises(ToolError, match="the workspace is not a git repository") as caught:
            await call(tool, workspace, **arguments)
        assert "git init" in (caught.value.hint or "")


async def test_a_repository_around_the_workspace_is_not_used(
    tmp_path: Path, workspace: Path
) -> None:
    git(tmp_path, "init", "-q")  # the workspace lies inside this repository

    with pytest.raises(ToolError, match="not a git repository"):
        await call(git_status, workspace)


async def test_commit_records_every_change(repo: Path) -> None:
    (repo / "a.txt").unlink()
    (repo / "b.txt").write_text("b\n")
    (repo / "sub").mkdir()
    (repo / "sub" / "c.txt").write_text("c\n")

    answer = await call(git_commit, repo, message="Replace a with b and c\n\nDetails.")

    assert answer.startswith("committed ")
    assert "Replace a with b and c" in answer.splitlines()[0]
    assert "3 files changed" in answer
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "log", "-1", "--format=%B").strip() == "Replace a with b and c\n\nDetails."


async def test_commit_of_some_paths_leaves_the_others(repo: Path) -> None:
    (repo / "a.txt").write_text("changed\n")
    (repo / "keep.txt").write_text("not yet\n")
    (repo / "gone.txt").write_text("x")
    git(repo, "add", "gone.txt")
    git(repo, "commit", "-q", "-m", "add gone")
    (repo / "gone.txt").unlink()

    await call(git_commit, repo, message="Change a, remove gone", paths=["a.txt", "gone.txt"])

    assert git(repo, "show", "--name-status", "--format=", "HEAD").split() == [
        "M",
        "a.txt",
        "D",
        "gone.txt",
    ]
    assert git(repo, "status", "--porcelain") == "?? keep.txt\n"


async def test_commit_uses_a_default_identity_unless_the_repository_has_one(repo: Path) -> None:
    (repo / "x.txt").write_text("x")
    await call(git_commit, repo, message="by the agent")
    default = git(repo, "log", "-1", "--format=%an <%ae>").strip()

    git(repo, "config", "user.name", "Project Bot")
    git(repo, "config", "user.email", "bot@example.com")
    (repo / "y.txt").write_text("y")
    await call(git_commit, repo, message="by the project's identity")
    configured = git(repo, "log", "-1", "--format=%an <%ae>").strip()

    assert default == f"{DEFAULT_AUTHOR[0]} <{DEFAULT_AUTHOR[1]}>"
    assert configured == "Project Bot <bot@example.com>"


async def test_nothing_to_commit_is_an_error(repo: Path) -> None:
    with pytest.raises(ToolError, match="nothing to commit: no changes"):
        await call(git_commit, repo, message="empty")
    (repo / "other.txt").write_text("x")
    with pytest.raises(ToolError, match=r"nothing to commit under a\.txt"):
        await call(git_commit, repo, message="empty", paths=["a.txt"])


async def test_commit_refuses_an_empty_message_and_empty_paths(repo: Path) -> None:
    with pytest.raises(ToolError, match="the commit message is empty"):
        await call(git_commit, repo, message="  ")
    with pytest.raises(ToolError, match="paths is empty"):
        await call(git_commit, repo, message="m", paths=[])


@pytest.mark.parametrize(
    ("path", "rule"), [("../outside", r"'\.\.' may not climb"), ("/etc", "is absolute")]
)
async def test_commit_paths_must_be_inside_the_workspace(repo: Path, path: str, rule: str) -> None:
    with pytest.raises(ToolError, match=rule):
        await call(git_commit, repo, message="m", paths=[path])


async def test_hooks_of_the_repository_do_not_run(repo: Path) -> None:
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\ntouch hook-ran\nexit 1\n")
    hook.chmod(0o755)
    (repo / "b.txt").write_text("b")

    await call(git_commit, repo, message="no hooks")

    assert not (repo / "hook-ran").exists()
    assert git(repo, "log", "-1", "--format=%s").strip() == "no hooks"


async def test_a_missing_git_is_reported(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))

    with pytest.raises(ToolError, match="git is not installed on the server"):
        await call(git_status, repo)
