"""Files replaced whole: a reader sees the old contents or the new, never a half-written file,
and the new contents are on disk before the name points at them. And private files and folders:
what PromptLine keeps (under its home above all) is readable by its owner only."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

__all__ = [
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "fsync_dir",
    "make_private",
    "open_private",
    "private_dir",
    "private_file",
    "write_atomically",
]

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """The folder ``path``, made (with every missing parent) readable by its owner only.

    Only the folders made here get mode 0700: one that exists is left as it is, since it may
    be a folder the user chose and shares (a project given as the workspace). A umask is not
    relied on: it is the caller's, and may be 022.
    """
    if os.path.isdir(path):
        return path
    missing: list[Path] = []
    folder = path
    while not os.path.lexists(folder) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for made in reversed(missing):
        try:
            os.mkdir(made, PRIVATE_DIR_MODE)
        except FileExistsError:
            continue  # made by another process meanwhile: its maker chose the mode
        # mkdir's mode passes through the umask, which may take the owner's bits too.
        os.chmod(made, PRIVATE_DIR_MODE)
    if not os.path.isdir(path):
        raise NotADirectoryError(f"{path} is not a folder")
    return path


def open_private(path: Path, flags: int) -> int:
    """``os.open(path, flags | O_CREAT)`` for a file only its owner may read and write: a new
    file is made with mode 0600, and one that exists readable by others (made by an older
    version, or by hand) loses the group's and others' bits. Its folder is made with
    `private_dir`."""
    private_dir(path.parent)
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE_MODE)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode) and mode & 0o077:
            with contextlib.suppress(PermissionError):  # another user's file: not ours to change
                os.fchmod(fd, stat.S_IMODE(mode) & 0o700)
    except BaseException:
        os.close(fd)
        raise
    return fd


def private_file(path: Path) -> Path:
    """``path`` as an existing file only its owner may read: made empty (mode 0600) when
    missing, so a program that opens it next (SQLite) keeps that mode; narrowed as by
    `open_private` when it exists."""
    os.close(open_private(path, os.O_RDONLY))
    return path


def make_private(path: Path) -> None:
    """Take the group's and others' bits off an existing file or folder (a 0644 file becomes
    0600, a 0755 folder 0700; what its owner may do is kept); nothing when ``path`` does not
    exist or belongs to another user."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if mode & 0o077:
        with contextlib.suppress(PermissionError):
            os.chmod(path, stat.S_IMODE(mode) & 0o700)


def write_atomically(path: Path, data: bytes, *, mode: int = PRIVATE_FILE_MODE) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it, fsynced and renamed over
    ``path``; the folder is made if missing (`private_dir`) and fsynced after the rename.

    The temporary file is created private (0600) and given ``mode`` before anything is written
    into it, so a secret is never readable by others, even for an instant. Every file written
    this way is PromptLine's own, so the default mode is private.
    """
    directory = path.parent
    private_dir(directory)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    fsync_dir(directory)


def fsync_dir(directory: Path) -> None:
    """Make a rename or removal in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
