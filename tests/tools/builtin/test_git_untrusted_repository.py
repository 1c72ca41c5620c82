"""git_status and git_commit on a repository whose configuration names programs: none of
them runs (each would leave a marker outside the workspace), the tools either work or refuse
with a clear error; and in bubblewrap git cannot write outside the workspace."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from promptline.security.sandbox import BubblewrapSandbox, Sandbox, bwrap_problem
from promptline.tools.base import Tool, ToolContext, ToolError
from promptline.tools.builtin import git_commit, git_status

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

_ISOLATED = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}

HOOKS = (
    "pre-commit",
    "prepare-commit-msg",
    "commit-msg",
    "post-commit",
    "post-index-change",
    "reference-transaction",
    "pre-auto-gc",
)


def git(folder: Path, *args: str) -> str:
    """Run git in ``folder`` for the test's own setup and checks (no hooks of its own)."""
    done = subprocess.run(
        ["git", "-c", "core.hooksPath=/dev/null", *args],
        cwd=folder,
        env={**os.environ, **_ISOLATED},
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


async def call(
    tool: Tool,
    workspace: Path,
    *,
    sandbox: Sandbox | None = None,
    env: dict[str, str] | None = None,
    **arguments: Any,
) -> Any:
    """Run ``tool`` in ``workspace`` as the executor would, in ``sandbox``."""
    context = ToolContext(
        call_id="call_git",
        tool=tool.name,
        workspace=workspace,
        env=dict(env or {}),
        sandbox=sandbox,
    )
    return await tool.run(tool.validate(arguments), context)


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    """Where a program of the repository would leave its trace: outside the workspace."""
    return tmp_path / "outside" / "program-ran"


@pytest.fixture
def program(tmp_path: Path, marker: Path) -> Path:
    """An executable outside the workspace that creates `marker` and passes its input on."""
    path = tmp_path / "outside" / "program"
    path.write_text(f"#!/bin/sh\ntouch '{marker}'\ncat\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def repo(workspace: Path) -> Path:
    """The workspace as a repository with one commit of ``a.txt``."""
    git(workspace, "init", "-q", "-b", "main")
    git(workspace, "config", "user.name", "Tester")
    git(workspace, "config", "user.email", "t@example.com")
    (workspace / "a.txt").write_text("a\n")
    git(workspace, "add", "a.txt")
    git(workspace, "commit", "-q", "-m", "first")
    return workspace


def ran(marker: Path) -> bool:
    """Whether a program of the repository ran (it left ``marker``)."""
    return marker.exists()


async def status_and_commit(repo: Path, **options: Any) -> None:
    """Both tools, on a change: each must succeed."""
    (repo / "a.txt").write_text("changed\n")
    assert "M a.txt" in await call(git_status, repo, **options)
    answer = await call(git_commit, repo, message="change a", **options)
    assert answer.startswith("committed ")
    assert git(repo, "log", "-1", "--format=%s").strip() == "change a"


def install_hooks(folder: Path, marker: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in HOOKS:
        hook = folder / name
        hook.write_text(f"#!/bin/sh\ntouch '{marker}'\n")
        hook.chmod(0o755)


async def test_no_hook_of_the_repository_runs(repo: Path, marker: Path) -> None:
    install_hooks(repo / ".git" / "hooks", marker)

    await status_and_commit(repo)

    assert not ran(marker)


async def test_no_hook_of_a_configured_hooks_folder_runs(
    repo: Path, tmp_path: Path, marker: Path
) -> None:
    install_hooks(tmp_path / "outside" / "hooks", marker)
    git(repo, "config", "core.hooksPath", str(tmp_path / "outside" / "hooks"))

    await status_and_commit(repo)

    assert not ran(marker)


async def test_the_fsmonitor_of_the_repository_does_not_run(
    repo: Path, program: Path, marker: Path
) -> None:
    git(repo, "config", "core.fsmonitor", str(program))

    await status_and_commit(repo)

    assert not ran(marker)


@pytest.mark.parametrize("kind", ["clean", "smudge", "process"])
async def test_a_repository_with_a_filter_program_is_refused(
    repo: Path, program: Path, marker: Path, kind: str
) -> None:
    (repo / ".gitattributes").write_text("* filter=evil\n")
    git(repo, "config", f"filter.evil.{kind}", str(program))
    (repo / "a.txt").write_text("changed\n")

    for tool, arguments in ((git_status, {}), (git_commit, {"message": "m"})):
        with pytest.raises(ToolError, match=rf"sets filter\.evil\.{kind}: it defines a filter"):
            await call(tool, repo, **arguments)

    assert not ran(marker)
    assert git(repo, "log", "--format=%s") == "first\n"


@pytest.mark.parametrize("key", ["include.path", "includeIf.gitdir:/.path"])
async def test_a_configuration_that_includes_another_file_is_refused(
    repo: Path, tmp_path: Path, program: Path, marker: Path, key: str
) -> None:
    included = tmp_path / "outside" / "evil.config"
    included.write_text(f'[core]\n\tfsmonitor = {program}\n[filter "x"]\n\tclean = {program}\n')
    (repo / ".gitattributes").write_text("* filter=x\n")
    git(repo, "config", key, str(included))

    with pytest.raises(ToolError, match="includes another configuration file") as caught:
        await call(git_status, repo)

    assert "git config --unset" in (caught.value.hint or "")
    assert not ran(marker)


async def test_config_based_hooks_are_refused(repo: Path, program: Path, marker: Path) -> None:
    git(repo, "config", "hook.evil.command", str(program))
    git(repo, "config", "hook.evil.event", "pre-commit")

    with pytest.raises(ToolError, match=r"sets hook\.evil\.command: it defines a hook"):
        await call(git_commit, repo, message="m")

    assert not ran(marker)


async def test_a_repository_that_allows_a_transport_is_refused(repo: Path) -> None:
    # protocol.ext.allow would win over protocol.allow=never: a lazy fetch of a partial
    # clone from an ext:: remote runs any command.
    git(repo, "config", "protocol.ext.allow", "always")

    with pytest.raises(ToolError, match=r"sets protocol\.ext\.allow: it changes which"):
        await call(git_status, repo)


async def test_signing_programs_do_not_run(repo: Path, program: Path, marker: Path) -> None:
    git(repo, "config", "commit.gpgSign", "true")
    git(repo, "config", "gpg.program", str(program))
    git(repo, "config", "log.showSignature", "true")

    await status_and_commit(repo)

    assert not ran(marker)
    assert git(repo, "log", "-1", "--format=%G?").strip() == "N"  # not signed


async def test_pager_and_editor_programs_do_not_run(
    repo: Path, program: Path, marker: Path
) -> None:
    for key in ("core.pager", "pager.status", "pager.log", "pager.show", "core.editor"):
        git(repo, "config", key, str(program))

    await status_and_commit(repo)

    assert not ran(marker)


async def test_diff_programs_do_not_run(repo: Path, program: Path, marker: Path) -> None:
    (repo / ".gitattributes").write_text("* diff=evil\n")
    git(repo, "config", "diff.external", str(program))
    git(repo, "config", "diff.evil.command", str(program))
    git(repo, "config", "diff.evil.textconv", str(program))

    await status_and_commit(repo)

    assert not ran(marker)


def add_submodule(repo: Path, tmp_path: Path) -> Path:
    """A submodule ``lib`` checked out in ``repo``; its git folder."""
    library = tmp_path / "outside" / "library"
    library.mkdir()
    git(library, "init", "-q", "-b", "main")
    (library / "x.txt").write_text("x\n")
    git(library, "add", "x.txt")
    git(library, "-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-qm", "x")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(library), "lib")
    git(repo, "commit", "-qm", "add lib")
    return repo / ".git" / "modules" / "lib"


async def test_programs_of_a_submodule_do_not_run(
    repo: Path, tmp_path: Path, program: Path, marker: Path
) -> None:
    module = add_submodule(repo, tmp_path)
    git(module, "--git-dir", str(module), "config", "core.fsmonitor", str(program))
    install_hooks(module / "hooks", marker)
    (repo / "lib" / "x.txt").write_text("y\n")  # as long: git compares the contents

    await status_and_commit(repo)

    assert not ran(marker)


async def test_a_submodule_with_a_filter_program_is_refused(
    repo: Path, tmp_path: Path, program: Path, marker: Path
) -> None:
    module = add_submodule(repo, tmp_path)
    git(module, "--git-dir", str(module), "config", "filter.evil.clean", str(program))
    (repo / "lib" / ".gitattributes").write_text("* filter=evil\n")
    (repo / "lib" / "x.txt").write_text("y\n")

    for tool, arguments in ((git_status, {}), (git_commit, {"message": "m"})):
        with pytest.raises(ToolError, match=r"submodule lib: .* sets filter\.evil\.clean"):
            await call(tool, repo, **arguments)

    assert not ran(marker)


async def test_a_work_tree_outside_the_workspace_is_not_used(repo: Path, tmp_path: Path) -> None:
    git(repo, "config", "core.worktree", str(tmp_path / "outside"))

    await status_and_commit(repo)

    assert "secret.txt" not in git(repo, "ls-tree", "-r", "--name-only", "HEAD")


async def test_git_variables_of_the_call_are_not_passed_on(
    repo: Path, program: Path, marker: Path
) -> None:
    env = {
        "GIT_CONFIG_PARAMETERS": f"'core.fsmonitor'='{program}'",
        "GIT_EXTERNAL_DIFF": str(program),
        "GIT_PAGER": str(program),
    }

    await status_and_commit(repo, env=env)

    assert not ran(marker)


_BWRAP_PROBLEM = bwrap_problem()


@pytest.mark.skipif(_BWRAP_PROBLEM is not None, reason=f"no bubblewrap: {_BWRAP_PROBLEM}")
async def test_in_bubblewrap_git_works_in_the_workspace(repo: Path) -> None:
    await status_and_commit(repo, sandbox=BubblewrapSandbox())


@pytest.mark.skipif(_BWRAP_PROBLEM is not None, reason=f"no bubblewrap: {_BWRAP_PROBLEM}")
async def test_in_bubblewrap_git_cannot_write_outside_the_workspace(
    workspace: Path, tmp_path: Path
) -> None:
    # The workspace's .git is a file naming a repository outside it: run on the host, git
    # would commit there.
    outside = tmp_path / "outside" / "repo"
    outside.mkdir()
    git(outside, "init", "-q", "-b", "main")
    (outside / "x.txt").write_text("x\n")
    git(outside, "add", "x.txt")
    git(outside, "-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-qm", "x")
    (workspace / ".git").write_text(f"gitdir: {outside / '.git'}\n")
    (workspace / "new.txt").write_text("new\n")
    before = sorted(p.relative_to(outside) for p in (outside / ".git").rglob("*"))

    with pytest.raises(ToolError, match="not a git repository"):
        await call(git_commit, workspace, message="escape", sandbox=BubblewrapSandbox())

    assert git(outside, "log", "--format=%s") == "x\n"
    assert sorted(p.relative_to(outside) for p in (outside / ".git").rglob("*")) == before


async def test_the_refusal_quoted_in_the_docs_is_the_one_given(repo: Path) -> None:
    git(repo, "config", "filter.lfs.clean", "git-lfs clean -- %f")
    doc = Path(__file__).parents[3] / "docs" / "tools.md"
    quoted = " ".join(doc.read_text(encoding="utf-8").split())

    with pytest.raises(ToolError) as caught:
        await call(git_status, repo)

    assert caught.value.message in quoted
