"""``git_status`` and ``git_commit``: the git CLI on the repository at the workspace root, run
in the call's sandbox and never made to run a program the repository names.

A repository in the workspace is the agent's to write, ``.git/config`` included, and git
runs programs named there. So git runs twice guarded:

1. In the call's sandbox (``security.sandbox``; the ``process`` one when the call has none),
   under the same limits as ``shell_execute``: with ``bubblewrap`` or ``docker`` whatever git
   runs can write the workspace only.
2. Without any program of the repository's choosing, whatever the sandbox: no system or
   global configuration, no ``GIT_*`` variable but ours, the work tree pinned to the
   workspace (``core.worktree`` is void), and the settings below. Every program git may
   start for the commands run here (status, add, diff, commit, log, show, config) is covered:

   - hooks, all of them (``core.hooksPath`` points where none is found) and the fsmonitor;
   - the pager (never started without a terminal; ``--no-pager`` too) and the editor (the
     message is given; ``core.editor`` is ``false`` all the same);
   - external diff programs (``diff.external`` and the drivers' ``diff.*.command``) and
     text conversions (``diff.*.textconv``): ``--no-ext-diff --no-textconv``;
   - signing and verifying (``--no-gpg-sign``, ``commit.gpgSign`` and ``log.showSignature``
     off), so no ``gpg.*program`` or ``gpg.ssh.defaultKeyCommand`` runs;
   - every transport (``protocol.allow=never``; a repository that sets ``protocol.*``
     itself is refused, as ``protocol.<name>.allow`` would win), so neither
     ``core.sshCommand``, ``core.gitProxy``, ``remote.*.uploadpack``, credential helpers nor
     askpass run, even when a partial clone wants a missing object;
   - automatic maintenance after a commit;
   - clean, smudge and process filters, whose names are the repository's own, cannot be
     switched off by name: a repository whose configuration defines one is refused, as is a
     configuration that includes another file or defines config-based hooks (``hook.*``).
     The configuration is read as data (``git config --list``) before each tool call.
   - submodules: ``git status`` is told not to look into their work trees, but ``git add``
     runs ``git status`` in each one checked out, with the submodule's own configuration
     (the settings above are passed on to it): that configuration is checked the same way,
     submodules of submodules too.

Left out on purpose: programs only other commands start (merge drivers, difftool and
mergetool, aliases, help browsers, ``uploadpack.packObjectsHook``, which git reads from
trusted configuration only). A change to ``.git/config`` made while a tool call runs is
checked only by the next call; the sandbox contains that one.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from promptline.tools.base import ToolContext, ToolError
from promptline.tools.builtin.workspace import relative_name, resolve_in_workspace, workspace_root
from promptline.tools.function import tool

if TYPE_CHECKING:
    from promptline.security.sandbox import SandboxResult

__all__ = ["DEFAULT_AUTHOR", "GIT_SETTINGS", "git_commit", "git_status", "in_git_repository"]

DEFAULT_AUTHOR = ("PromptLine agent", "agent@promptline.invalid")
"""The commit identity when the repository configures none (global config is not read)."""

GIT_SETTINGS = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.pager=cat",
    "core.editor=false",
    "sequence.editor=false",
    "commit.gpgSign=false",
    "log.showSignature=false",
    "protocol.allow=never",
    "maintenance.auto=false",
    "gc.auto=0",
    "submodule.recurse=false",
    "diff.ignoreSubmodules=dirty",
    "status.submoduleSummary=false",
    "color.ui=false",
)
"""Given to every git command with ``-c``: they take precedence over the repository's."""

MAX_GIT_OUTPUT_CHARS = 100_000

MAX_SUBMODULE_DEPTH = 8
"""Submodules nested deeper are refused rather than checked."""

_PROGRAM_FILTER_KEYS = ("clean", "smudge", "process")


def in_git_repository(workspace: Path) -> bool:
    """True when the workspace is a git repository (its root holds ``.git``): the git tools
    are offered only there, as git does not look above the workspace."""
    return (workspace / ".git").exists()


@tool(name="git_status", read_only=True, applies=in_git_repository)
async def git_status(*, context: ToolContext) -> str:
    """`git status --short --branch` of the workspace."""
    git = await _Git.open(context)
    result = await git.run("status", "--short", "--branch", "--ignore-submodules=dirty")
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
    git = await _Git.open(context)
    pathspec = ["--", *specs] if specs else []
    await git.run("add", "--all", *pathspec)
    staged = await git.run(
        "diff", "--cached", "--quiet", "--no-ext-diff", "--no-textconv", *pathspec, check=False
    )
    if staged.exit_code == 0:
        where = f" under {', '.join(specs)}" if specs else ""
        raise ToolError(
            f"nothing to commit{where}: no changes",
            hint="check with git_status what changed",
        )
    await git.run(
        "commit", "--quiet", "--no-edit", "--no-verify", "--no-gpg-sign", "-m", message,
        *pathspec, env=git.identity(),
    )  # fmt: skip
    summary = await git.run("log", "-1", "--no-show-signature", "--format=%h %s")
    stat = await git.run(
        "show", "--stat", "--no-ext-diff", "--no-textconv", "--no-show-signature",
        "--format=", "HEAD",
    )  # fmt: skip
    return f"committed {summary.output.strip()}\n{stat.output.rstrip()}"


@dataclasses.dataclass(frozen=True, slots=True)
class _Setting:
    """One entry of the repository's configuration, as ``git config --list`` shows it."""

    scope: str
    origin: str
    key: str
    value: str | None


class _Git:
    """Git commands for one tool call, in its sandbox, on a repository whose configuration
    was checked (`open`)."""

    def __init__(self, context: ToolContext, settings: list[_Setting]) -> None:
        self._context = context
        self._settings = settings

    @classmethod
    async def open(cls, context: ToolContext) -> _Git:
        """The commands of ``context``'s call, once the configuration of the repository and
        of each submodule it has checked out names no program git could run (`ToolError`
        otherwise)."""
        git = cls(context, [])
        root = workspace_root(context.workspace)
        git._settings = await git._check(root, {root})
        return git

    async def _check(self, tree: Path, seen: set[Path], depth: int = 0) -> list[_Setting]:
        """The configuration of the repository of work tree ``tree``, once it and that of
        each of its checked-out submodules are checked: git looks into those (``git add``
        runs ``git status`` in each) with their own configuration."""
        at = None if depth == 0 else tree
        listed = await self.run("config", "--list", "--show-scope", "--show-origin", "-z", at=at)
        settings = _parse_settings(listed.output)
        _refuse_programs(settings, "" if at is None else f"submodule {tree.name}: ")
        gitlinks = _GitlinkList()
        await self.run("ls-files", "--stage", "-z", at=at, on_output=gitlinks.feed)
        for path in gitlinks.paths():
            if "\ufffd" in path:
                raise ToolError(
                    f"the repository has a submodule whose path is not UTF-8 ({path!r})",
                    hint="rename it, or run git with shell_execute, in the sandbox",
                )
            submodule = tree / path
            if not _unchecked_checkout(submodule, seen):
                continue
            if depth >= MAX_SUBMODULE_DEPTH:
                raise ToolError(
                    f"the repository's submodules are nested more than {MAX_SUBMODULE_DEPTH} deep",
                    hint="run git with shell_execute, in the sandbox",
                )
            await self._check(submodule, seen, depth + 1)
        return settings

    def identity(self) -> dict[str, str]:
        """Author and committer for a repository that names none of its own."""
        found = {s.key for s in self._settings if s.scope != "command" and s.value}
        env: dict[str, str] = {}
        if "user.name" not in found:
            env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = DEFAULT_AUTHOR[0]
        if "user.email" not in found:
            env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = DEFAULT_AUTHOR[1]
        return env

    async def run(
        self,
        *args: str,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        at: Path | None = None,
        on_output: Callable[[str], None] | None = None,
    ) -> SandboxResult:
        """``git args`` in the workspace (or in the submodule checked out ``at``, as git
        itself runs there), in the call's sandbox; `ToolError` when it cannot run, runs out
        of time or (with ``check``) fails. With ``on_output`` the output goes there as it
        comes, unbounded, and the result keeps little of it."""
        from promptline.security.sandbox import ProcessSandbox, SandboxLimits, SandboxUnavailable

        context = self._context
        root = workspace_root(context.workspace)
        sandbox = context.sandbox or ProcessSandbox()
        variables = _environment(sandbox.environment(root, context.env), root)
        if at is not None:
            del variables["GIT_WORK_TREE"]
            variables["GIT_DIR"] = ".git"
        variables.update(env or {})
        if sandbox.kind != "docker" and shutil.which("git", path=variables["PATH"]) is None:
            raise _missing_git()
        limits = SandboxLimits.from_config(context.limits, _time_limit(context))
        if on_output is not None:
            limits = dataclasses.replace(limits, max_output_bytes=None)
        options = [part for setting in GIT_SETTINGS for part in ("-c", setting)]
        try:
            result = await sandbox.run(
                ["git", "--no-pager", *options, *args],
                workspace=root,
                cwd=root if at is None else at,
                env=variables,
                limits=limits,
                max_output_chars=MAX_GIT_OUTPUT_CHARS if on_output is None else 1000,
                on_output=on_output,
            )
        except SandboxUnavailable as exc:
            raise ToolError(
                str(exc),
                hint="promptline doctor says what it needs; or choose another security.sandbox",
            ) from exc
        except OSError as exc:
            raise ToolError(f"cannot start git: {exc.strerror or exc}") from exc
        if result.timed_out:
            raise ToolError(f"git {args[0]} did not finish in the call's time limit")
        if result.exit_code == 127 and "cannot start git" in result.output:
            raise _missing_git()
        if result.limit is not None:
            raise ToolError(
                f"git {args[0]} {result.limit.message} (sandbox {result.sandbox})",
                hint="raise security.resource_limits, or make the change smaller",
            )
        if check and result.exit_code != 0:
            raise _git_error(args[0], result.output)
        return result


def _environment(base: Mapping[str, str], root: Path) -> dict[str, str]:
    """The sandbox's environment without any ``GIT_*`` variable, then git's own: no system
    or global configuration, the work tree pinned, no prompt, no pager, no editor."""
    env = {name: value for name, value in base.items() if not name.startswith("GIT_")}
    env.update(
        {
            "GIT_WORK_TREE": str(root),
            "GIT_CEILING_DIRECTORIES": str(root.parent),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_ATTR_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_LITERAL_PATHSPECS": "1",
            "GIT_OPTIONAL_LOCKS": "0",
            "GIT_PAGER": "cat",
            "GIT_EDITOR": "false",
        }
    )
    return env


def _parse_settings(output: str) -> list[_Setting]:
    """The entries of ``git config --list --show-scope --show-origin -z``: scope, origin and
    ``key\\nvalue`` (just ``key`` for a bare boolean), each ended by a NUL."""
    fields = output.split("\0")
    settings: list[_Setting] = []
    for at in range(0, len(fields) - 2, 3):
        scope, origin, entry = fields[at : at + 3]
        key, newline, value = entry.partition("\n")
        settings.append(_Setting(scope, origin, key.lower(), value if newline else None))
    return settings


def _unchecked_checkout(submodule: Path, seen: set[Path]) -> bool:
    """Whether ``submodule`` is checked out (git looks into it only then) and not yet in
    ``seen``, the real paths of the work trees checked; it is added there."""
    real = Path(os.path.realpath(submodule))
    if not os.path.lexists(submodule / ".git") or real in seen:
        return False
    seen.add(real)
    return True


class _GitlinkList:
    """The paths of the submodules (mode 160000) in ``git ls-files --stage -z`` output, read
    as it comes: only a partial entry is held."""

    def __init__(self) -> None:
        self._pending = ""
        self._found: list[str] = []

    def feed(self, text: str) -> None:
        *entries, self._pending = (self._pending + text).split("\0")
        for entry in entries:
            if entry.startswith("160000 "):
                self._found.append(entry.partition("\t")[2])

    def paths(self) -> list[str]:
        return list(self._found)


def _refuse_programs(settings: list[_Setting], where: str = "") -> None:
    """`ToolError` for the first setting of the repository that would make git run a program
    `GIT_SETTINGS` cannot switch off, read configuration from another file, or allow a
    transport `GIT_SETTINGS` forbids."""
    for setting in settings:
        if setting.scope == "command":
            continue  # ours
        section, _, rest = setting.key.partition(".")
        name = rest.rpartition(".")[2]
        why: str | None = None
        if section == "filter" and name in _PROGRAM_FILTER_KEYS and setting.value:
            why = "defines a filter program, which git would run on the files it reads"
        elif section in ("include", "includeif") and name == "path":
            why = "includes another configuration file, which the git tools do not read"
        elif section == "hook":
            why = "defines a hook, a program git would run"
        elif section == "protocol":
            why = "changes which transports git may use (they run ssh and remote helpers)"
        if why is None:
            continue
        origin = setting.origin.removeprefix("file:")
        raise ToolError(
            f"{where}the repository's configuration ({origin}) sets {setting.key}: it {why}; "
            "the git tools refuse to work on it",
            hint=(
                f"if you do not trust it, remove it (git config --unset {setting.key}); if you "
                "do, run git with shell_execute, in the sandbox"
            ),
        )


def _time_limit(context: ToolContext) -> float | None:
    """The tightest of ``timeout_secs`` and the call's own limit."""
    configured = context.limits.get("timeout_secs")
    candidates = [float(v) for v in (configured, context.timeout) if v is not None and v > 0]
    limit = min(candidates, default=None)
    return limit if limit is None or math.isfinite(limit) else None


def _missing_git() -> ToolError:
    return ToolError(
        "git is not installed on the server",
        hint="install git, or leave the git tools out of this agent",
    )


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
