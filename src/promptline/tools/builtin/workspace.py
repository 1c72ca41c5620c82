"""Workspace confinement: every path a built-in tool touches is resolved here, and a path that
would lead outside the workspace (absolute, climbing ``..``, or through a symlink) is refused;
a checked path is then opened one folder at a time, never through a symlink."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from promptline.tools.base import ToolError

__all__ = [
    "folder_in_workspace",
    "open_in_workspace",
    "relative_name",
    "resolve_in_workspace",
    "workspace_root",
]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def workspace_root(workspace: Path) -> Path:
    """The workspace folder with its own symlinks resolved, made on first use (a run that
    calls no file tool leaves no folder behind); `ToolError` when it cannot be made."""
    root = Path(os.path.realpath(workspace))
    if not root.is_dir():
        from promptline.storage.files import private_dir

        try:
            private_dir(root)
        except OSError as exc:
            raise ToolError(
                f"the workspace folder {str(workspace)!r} cannot be made: {exc.strerror or exc}",
                hint="check agent.workspace / agent.workspaces_dir and their permissions",
            ) from exc
    return root


def resolve_in_workspace(workspace: Path, path: str, *, follow_last: bool = True) -> Path:
    """The real location of ``path`` (relative to ``workspace``), refusing any way out.

    The rules, each named in the `ToolError` that enforces it: the path is relative (no
    absolute paths, no ``~``); ``..`` may not climb above the workspace; and no component may
    be a symlink that resolves outside it. With ``follow_last`` false, the last component is
    not followed (deleting a symlink removes the link, never its target) but still may not be
    ``.`` or ``..``.
    """
    root = workspace_root(workspace)
    if "\x00" in path:
        raise ToolError(f"path {path!r} contains a NUL character", hint="give a plain file path")
    text = path.strip() or "."
    if text.startswith("~"):
        raise ToolError(
            f"path {path!r} uses '~': paths are relative to the workspace",
            hint="give a path relative to the workspace root, such as 'src/app.py'",
        )
    if os.path.isabs(text) or PurePosixPath(text).is_absolute():
        raise ToolError(
            f"path {path!r} is absolute: tools may only use paths relative to the workspace",
            hint="give a path relative to the workspace root, such as 'src/app.py'",
        )
    lexical = os.path.normpath(text)
    if lexical == ".." or lexical.startswith(".." + os.sep):
        raise ToolError(
            f"path {path!r} leaves the workspace: '..' may not climb above the workspace root",
            hint="give a path inside the workspace",
        )
    if follow_last:
        resolved = Path(os.path.realpath(root / text))
        if not _inside(resolved, root):
            raise ToolError(
                f"path {path!r} leaves the workspace: {_escaping_link(root, text)!r} is a "
                "symlink that resolves outside it, and symlinks may not lead out",
                hint="use a path whose every part stays inside the workspace",
            )
        return resolved
    parent_text, _, name = lexical.rpartition(os.sep)
    if name in ("", ".", ".."):
        raise ToolError(
            f"path {path!r} names the workspace itself or a parent of it",
            hint="name a file or folder inside the workspace",
        )
    parent = resolve_in_workspace(workspace, parent_text or ".")
    return parent / name


def open_in_workspace(
    workspace: Path, target: Path, shown: str, flags: int, *, make_folders: bool = False
) -> int:
    """A file descriptor of ``target`` (a path `resolve_in_workspace` gave) opened with
    ``flags``, reached from the workspace root one folder at a time without following a
    symlink: a folder swapped for a symlink since the check cannot lead out (`ToolError`).
    ``make_folders`` makes the missing folders on the way."""
    with folder_in_workspace(workspace, target.parent, shown, make=make_folders) as folder:
        try:
            # Non-blocking: a named pipe with nobody at its other end would hold the call.
            fd = os.open(target.name, flags | _NOFOLLOW | _NONBLOCK, 0o644, dir_fd=folder)
        except OSError as exc:
            raise _open_error(exc, shown, folder, target.name) from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _not_a_file(shown)
    return fd


@contextlib.contextmanager
def folder_in_workspace(
    workspace: Path, folder: Path, shown: str, *, make: bool = False
) -> Iterator[int]:
    """A file descriptor of the workspace folder ``folder``, reached as `open_in_workspace`
    reaches a file (``make``: making the missing folders); closed on exit."""
    root = workspace_root(workspace)
    try:
        parts = folder.relative_to(root).parts
    except ValueError:
        raise _changed(shown) from None
    fd = os.open(root, os.O_RDONLY | _DIRECTORY)
    try:
        for part in parts:
            if make:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
            try:
                inner = os.open(part, os.O_RDONLY | _DIRECTORY | _NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                raise _open_error(exc, shown, fd, part) from exc
            os.close(fd)
            fd = inner
        yield fd
    finally:
        os.close(fd)


def _open_error(exc: OSError, shown: str, folder: int, name: str) -> ToolError:
    with contextlib.suppress(OSError):
        if stat.S_ISLNK(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode):
            return _changed(shown)
    if exc.errno == errno.ENXIO:  # a named pipe nobody reads
        return _not_a_file(shown)
    if exc.errno == errno.ENOTDIR:
        return ToolError(
            f"cannot open {shown!r}: a part of the path is a file",
            hint="choose a path whose folders are folders",
        )
    return ToolError(f"cannot open {shown!r}: {exc.strerror or exc}")


def _not_a_file(shown: str) -> ToolError:
    return ToolError(
        f"{shown!r} is not a regular file (a named pipe, a device or a socket)",
        hint="the file tools read and write regular files only",
    )


def _changed(shown: str) -> ToolError:
    return ToolError(
        f"path {shown!r} changed while in use: a part of it is now a symlink, and symlinks "
        "may not lead out of the workspace",
        hint="use a path whose every part is a real folder of the workspace",
    )


def relative_name(root: Path, path: Path) -> str:
    """``path`` as the model should see it: relative to the workspace, with ``/``."""
    try:
        return path.relative_to(root).as_posix() or "."
    except ValueError:
        return path.as_posix()


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def _escaping_link(root: Path, text: str) -> str:
    """The first component of ``text`` that is a symlink resolving outside ``root``."""
    current = root
    shown: list[str] = []
    for part in Path(text).parts:
        current = current / part
        shown.append(part)
        if current.is_symlink() and not _inside(Path(os.path.realpath(current)), root):
            return "/".join(shown)
        current = Path(os.path.realpath(current))
    return text
