"""``codebase_search``: lines of the workspace's text files matching a literal or a regular
expression, as ``path:line:text``."""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

from pydantic import Field

from promptline.tools.base import ToolContext, ToolError
from promptline.tools.builtin.text_files import looks_binary
from promptline.tools.builtin.workspace import open_in_workspace, workspace_root
from promptline.tools.function import tool

__all__ = ["MAX_SEARCH_FILE_BYTES", "SKIPPED_FOLDERS", "codebase_search"]

MAX_SEARCH_FILE_BYTES = 2 * 1024 * 1024
"""Larger files are skipped: they are data or generated, rarely code worth reading."""

MAX_LINE_CHARS = 300
"""A matching line is shown up to this length (minified files have very long ones)."""

SKIPPED_FOLDERS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "node_modules",
        "__pycache__",
        ".venv",
        ".mypy_cache",
        ".tox",
        ".promptline",  # PromptLine's own files in a workspace (tool output logs)
    }
)
"""Folders never searched: version control data, installed dependencies and caches."""


@tool(name="codebase_search", read_only=True)
def codebase_search(
    query: str,
    glob: str | None = None,
    regex: bool = False,
    ignore_case: bool = False,
    max_results: Annotated[int, Field(ge=1, le=1000)] = 100,
    *,
    context: ToolContext,
) -> str:
    """Find lines matching `query` in the workspace's text files, as `path:line:text`
    (skips version control and dependency folders, binary files, files over 2 MiB).

    Args:
        query: The text, or a Python regular expression with regex=true.
        glob: Only files matching this, such as '*.py' or 'src/*.ts'.
        regex: query is a regular expression.
        ignore_case: Ignore case.
        max_results: Stop after this many lines.
    """
    if not query:
        raise ToolError("the query is empty", hint="give the text or pattern to look for")
    flags = re.IGNORECASE if ignore_case else 0
    try:
        pattern = re.compile(query if regex else re.escape(query), flags)
    except re.error as exc:
        raise ToolError(
            f"query is not a valid regular expression: {exc}",
            hint="fix the pattern, or pass regex=false to search for the text as it is",
        ) from exc
    root = workspace_root(context.workspace)
    matches: list[str] = []
    files_matched = 0
    skipped_large = 0
    for path, name in _files(root, glob):
        context.check_cancelled()
        try:
            data = _read_regular(context.workspace, path, name)
        except (OSError, ToolError):
            continue  # vanished, unreadable, or moved out of reach since the walk
        if data is None:
            skipped_large += 1
            continue
        if looks_binary(data):
            continue
        found_here = False
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            if pattern.search(line):
                matches.append(f"{name}:{number}:{line.rstrip()[:MAX_LINE_CHARS]}")
                found_here = True
                if len(matches) >= max_results:
                    break
        files_matched += found_here
        if len(matches) >= max_results:
            break
    notes: list[str] = []
    if len(matches) >= max_results:
        notes.append(
            f"[stopped at {max_results} matches: narrow the query or the glob to see the rest]"
        )
    if skipped_large:
        notes.append(f"[{skipped_large} files over {MAX_SEARCH_FILE_BYTES // 1048576} MiB skipped]")
    if not matches:
        where = f" in files matching {glob!r}" if glob else ""
        return "\n".join([f"no matches for {query!r}{where}", *notes])
    head = f"{len(matches)} matches in {files_matched} files:"
    return "\n".join([head, *matches, *notes])


def _files(root: Path, glob: str | None) -> Iterator[tuple[Path, str]]:
    """The regular files under ``root`` (no symlinks: one may lead outside the workspace),
    in name order, with their workspace-relative names, filtered by ``glob``."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_FOLDERS)
        base = Path(folder)
        for file in sorted(files):
            path = base / file
            if path.is_symlink() or not path.is_file():  # a named pipe would block a read
                continue
            name = path.relative_to(root).as_posix()
            if glob is None or _glob_matches(glob, name, file):
                yield path, name


def _read_regular(workspace: Path, path: Path, name: str) -> bytes | None:
    """The bytes of the regular file ``path`` (None when it is over the size limit), reached
    as the file tools reach one (no symlink followed, no blocking on a named pipe);
    `ToolError` when a folder on the way was swapped for a symlink since the walk."""
    fd = open_in_workspace(workspace, path, name, os.O_RDONLY)
    with os.fdopen(fd, "rb") as handle:
        if os.fstat(fd).st_size > MAX_SEARCH_FILE_BYTES:
            return None
        return handle.read()


def _glob_matches(glob: str, name: str, file: str) -> bool:
    """Without a '/' the glob is matched against the file name; with one, against the whole
    relative path, where '*' also crosses folders and a leading '**/' may match nothing."""
    if "/" not in glob:
        return fnmatch.fnmatchcase(file, glob)
    glob = glob.removeprefix("./")
    if glob.startswith("**/") and fnmatch.fnmatchcase(name, glob[3:]):
        return True
    return fnmatch.fnmatchcase(name, glob)
