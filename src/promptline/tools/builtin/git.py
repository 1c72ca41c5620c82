"""``git_status`` and ``git_commit``: the git CLI on the repository at the workspace root.

Git runs with the minimal environment of every tool process, without the user's global or
system configuration, without hooks and without an fsmonitor, and does not look for a
repository above the workspace: an agent cannot make it run code of its choosing or commit
to a repository it should not see.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from promptline.tools.base import ToolContext, ToolError
from promptline.tools.builtin.workspace import relative_name, resolve_in_workspace, workspace_root
from promptline.tools.function import tool

if TYPE_CHECKING:
    from promptline.security.sandbox.run import ProcessResult

__all__ = ["DEFAULT_AUTHOR", "git_commit", "git_status", "in_git_repository"]

DEFAULT_AUTHOR = ("PromptLine agent", "agent@promptline.invalid")
"""The commit identity when the repository configures none (global config is not read)."""

_SAFETY = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "color.ui=false")


def in_git_repository(workspace: Path) -> bool:
    """True when the workspace is a git repository (its root holds ``.git``): the git tools
    are offered only there, as git does not look above the workspace."""
    return (workspace / ".git").exists()


@tool(name="git_status", read_only=True, applies=in_git_repository)
async def git_status(*, context: ToolContext) -> str:
    """`git status --short --branch` of the workspace."""
    result = await _git(context, "status", "--short", "--branch")
    text = result.output.rstrip("\n")
    if "\n" not in text:
        text += "\n(nothing changed: the working tree is clean)"
    return text


@tool(name="git_commit", applies=in_git_repository)
async def git_commit(message: str, paths: list[str] | None = None, *, context: ToolContext) -> str:
    """Commit every change of the workspace (new, changed and deleted files), or those under
    `paths`.

    Args:
        message: The commit message.
        paths: Files or folders to commit; default: all.
    """
    if not message.strip():
        raise ToolError("the commit message is empty", hint="say what the change does")
    root = workspace_root(context.workspace)
    specs: list[str] = []
    for path in paths or []:
        # Not following the last part: a symlink is committed as a link, as git sees it.
        specs.append(relative_name(root, resolve_in_workspace(root, path, follow_last=False)))
    if paths is not None and not specs:
        raise ToolError("paths is empty", hint="leave paths out to commit every change")
    pathspec = ["--", *specs] if specs else []
    await _git(context, "add", "--all", *pathspec)
    staged = await _git(context, "diff", "--cached", "--quiet", *pathspec, check=False)
    if staged.exit_code == 0:
        where = f" under {', '.join(specs)}" if specs else ""
        raise ToolError(
            f"nothing to commit{where}: no changes",
            hint="check with git_status what changed",
        )
    author = await _identity(context)
    await _git(context, "commit", "--quiet", "--no-edit", "-m", message, *pathspec, env=author)
    summary = await _git(context, "log", "-1", "--format=%h %s")
    stat = await _git(context, "show", "--stat", "--format=", "HEAD")
    return f"committed {summary.output.strip()}\n{stat.output.rstrip()}"


async def _identity(context: ToolContext) -> dict[str, str]:
    """Author and committer for a repository that names none of its own."""
    name = await _git(context, "config", "--get", "user.name", check=False)
    email = await _git(context, "config", "--get", "user.email", check=False)
    env: dict[str, str] = {}
    if not name.output.strip():
        env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = DEFAULT_AUTHOR[0]
    if not email.output.strip():
        env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = DEFAULT_AUTHOR[1]
    return env


async def _git(
    context: ToolContext,
    *args: str,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> ProcessResult:
    from promptline.security.sandbox import ProcessSandbox
    from promptline.security.sandbox.run import run_process

    root = workspace_root(context.workspace)
    variables = ProcessSandbox().environment(root, context.env)
    variables.update(
        {
            "GIT_CEILING_DIRECTORIES": str(root.parent),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_LITERAL_PATHSPECS": "1",
            "GIT_OPTIONAL_LOCKS": "0",
            "GIT_PAGER": "cat",
        }
    )
    variables.update(env or {})
    try:
        result = await run_process(
            ["git", *_SAFETY, *args], cwd=root, env=variables, time_limit=context.timeout
        )
    except FileNotFoundError as exc:
        raise ToolError(
            "git is not installed on the server",
            hint="install git, or leave the git tools out of this agent",
        ) from exc
    if result.timed_out:
        raise ToolError(f"git {args[0]} did not finish in the call's time limit")
    if check and result.exit_code != 0:
        raise _git_error(args[0], result.output)
    return result


def _git_error(command: str, output: str) -> ToolError:
    if "not a git repository" in output:
        return ToolError(
            "the workspace is not a git repository",
            hint="create one with shell_execute 'git init', or use a workspace that is one",
        )
    if "dubious ownership" in output:
        return ToolError(
            "git refuses the repository: it belongs to another user than the server's",
            hint="give the server's user ownership of the workspace",
        )
    detail = output.strip() or "no message"
    return ToolError(f"git {command} failed: {detail}")
